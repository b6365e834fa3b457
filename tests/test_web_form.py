"""The web client's job form (issue 15, points 1, 2 and 6), driven in Debian's Chromium by Playwright.

* Every shipped definition (``jdl/``) and every definition in ``tests/data`` that the server accepts
  opens in its form and is submitted with its defaults; the request that reached the server carries
  exactly the values the form showed.
* Bad values of every type are refused in the page, all at once, next to their fields, and nothing is
  sent; an emptied field is an error, never silently the default.
* Fields come in the definition's order, the first ones shown; SLURM resources appear when the server
  runs SLURM; "Run again" keeps an uploaded input by its /store URL.

Each test runs at desktop (1366x900) and phone (390x844) widths where the layout matters, fails on a
console error, an uncaught exception, a 5xx or a request to another host (``browser.Watch``), and
saves screenshots under ``$OPUS_ARTIFACTS_DIR/screenshots`` (default ``test-artifacts/screenshots``).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import threading
from pathlib import Path
from wsgiref.simple_server import make_server

import bottle
import pytest
import requests
from browser import DESKTOP, PHONE, VIEWPORTS, shoot_as_is, watched_context
from browser import browser  # noqa: F401  (a fixture)
from conftest import LiveServer, _Quiet, _Server, build_with_fake_manager, make_settings
from helpers import wait_final

from opus.jobdef.formats import read_definition
from opus.server import create_app
from opus.settings import REPO_ROOT
from opus.storage import create_engine_for, upgrade_schema

JOB_PAGE = re.compile(r"/web/jobs/[^/?#]+/[0-9a-f]{16}$")
DATA = Path(__file__).resolve().parent / "data"
SHIPPED = sorted(p.stem for p in (REPO_ROOT / "jdl").glob("*.json"))

#: A definition made for these tests: options, multiplicity, a required parameter with no default,
#: an optional one first (the form keeps this order, it does not put required fields first).
CHECKS = {
    "name": "formchecks", "description": "Options, multiplicity and required values (web form tests).",
    "parameters": {
        "note": {"type": "string", "description": "An optional note"},
        "mode": {"type": "string", "options": ["fast", "slow"], "required": True},
        "bands": {"type": "int", "multiplicity": "1..3", "min": 1, "max": 10, "default": "1 2"},
        "label": {"type": "string", "required": True},
    },
    "script": "echo \"$mode $bands $label\"\n",
}


def _data_definitions() -> dict[str, object]:
    """The definitions of tests/data that OPUS reads, as data_<file stem>: {name: JobDefinition}."""
    found = {}
    for path in sorted(DATA.iterdir()):
        fmt = {".vot": "votable", ".json": "json", ".wadl": "wadl"}.get(path.suffix)
        if fmt is None:
            continue
        try:
            definition = read_definition(path.read_bytes(), fmt)
        except Exception:  # noqa: BLE001 - not a definition OPUS accepts: not a form to test
            continue
        definition.name = "data_" + path.stem
        found[definition.name] = definition
    return found


DATA_DEFINITIONS = _data_definitions()
EVERY_DEFINITION = SHIPPED + sorted(DATA_DEFINITIONS)


class Recorder:
    """WSGI middleware keeping every job-creation request (POST /rest/<name>) as it reached the server."""

    CREATE = re.compile(r"^/rest/[^/]+/?$")

    def __init__(self, app):
        self.app = app
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "POST" and self.CREATE.match(environ.get("PATH_INFO", "")):
            size = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(size)
            environ["wsgi.input"] = io.BytesIO(body)
            copy = dict(environ, **{"wsgi.input": io.BytesIO(body)})
            parsed = bottle.BaseRequest(copy)
            fields = [(k, v) for k, v in parsed.forms.allitems()]
            files = [(k, f.raw_filename, f.file.read()) for k, f in parsed.files.allitems()]
            with self.lock:
                self.requests.append({"path": environ["PATH_INFO"], "fields": fields, "files": files})
        return self.app(environ, start_response)

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def last(self) -> dict:
        with self.lock:
            return self.requests[-1]


class FakeLiveServer(LiveServer):
    """A live server whose jobs never run (tests/fakes.FakeManager): MANAGER may name SLURM without a
    cluster.  It records the creation requests too."""

    def __init__(self, settings):
        upgrade_schema(create_engine_for(settings.database_url))
        self.httpd = make_server("127.0.0.1", 0, lambda e, s: self.app(e, s), server_class=_Server,
                                 handler_class=_Quiet)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.settings = self.configure(settings)
        self.services = build_with_fake_manager(self.settings)
        self.recorder = self.app = Recorder(create_app(self.settings, self.services))
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()
        self.http = requests.Session()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A live server (local manager, anonymous use) with the shipped definitions, tests/data's and CHECKS."""
    tmp = tmp_path_factory.mktemp("webform")
    jdl = tmp / "jdl"
    shutil.copytree(REPO_ROOT / "jdl", jdl)
    for name, definition in DATA_DEFINITIONS.items():
        (jdl / f"{name}.json").write_text(json.dumps(definition.to_dict()))
    (jdl / "formchecks.json").write_text(json.dumps(CHECKS))
    server = LiveServer(make_settings(tmp, JDL_DIR=str(jdl), ALLOW_ANONYMOUS=True))
    server.recorder = Recorder(server.app)
    server.app = server.recorder
    yield server
    server.stop()


def _context(browser, server_url: str, viewport: dict):
    context = watched_context(browser, server_url, viewport=viewport)
    # The job page a creation leads to is another page's business (tests/test_web_job.py): a stub here.
    context.route(JOB_PAGE, lambda route: route.fulfill(status=200, content_type="text/html; charset=utf-8",
                                                          body="<!doctype html><title>Job</title><p>created</p>"))
    return context


@pytest.fixture(params=sorted(VIEWPORTS))
def page(request, world, browser):
    """A page at each width, failing the test on a console error, a 5xx or an outside request."""
    context = _context(browser, world.url, VIEWPORTS[request.param])
    page = context.new_page()
    page.width_name = request.param
    yield page
    context.close()
    context.watch.check()


@pytest.fixture
def desktop(world, browser):
    context = _context(browser, world.url, DESKTOP)
    page = context.new_page()
    page.width_name = "desktop"
    yield page
    context.close()
    context.watch.check()


def shoot(page, name: str) -> None:
    shoot_as_is(page, name, page.width_name)


def open_form(page, url: str, jobname: str, query: str = "") -> None:
    page.goto(f"{url}/web/new/{jobname}{query}")
    page.wait_for_selector("#job-form[data-ready]")
    assert page.locator("#alerts .alert-danger").count() == 0, page.locator("#alerts").inner_text()


#: What the form shows for each parameter field: {name: value as displayed}.
SHOWN = """() => Object.fromEntries([...document.querySelectorAll('#main-fields [data-field], #more-fields [data-field]')]
  .filter((w) => !w.querySelector('input[type=radio]'))
  .map((w) => { const i = w.querySelector('input, select, textarea');
                return [w.dataset.field, i.type === 'checkbox' ? String(i.checked) : i.value]; }))"""
DUPLICATE_IDS = "() => { const ids = [...document.querySelectorAll('[id]')].map((n) => n.id); return ids.filter((id, i) => ids.indexOf(id) !== i); }"
ORDER = "() => [...document.querySelectorAll('#main-fields [data-field], #more-fields [data-field]')].map((w) => w.dataset.field)"


def created(page, world) -> str:
    page.wait_for_url(JOB_PAGE)
    return page.url.rsplit("/", 1)[1]


def job_json(world, jobname: str, job_id: str) -> dict:
    r = requests.get(f"{world.url}/rest/{jobname}/{job_id}", headers={"Accept": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def definition_json(world, name: str) -> dict:
    return requests.get(f"{world.url}/jdl/{name}", params={"format": "json"}, timeout=30).json()


def test_tests_data_definitions_are_served(world):
    """The forms below cover the original's definitions: test_activity_2 and the slide's gammapy_maps."""
    assert {"data_test_activity_2", "data_gammapy_maps_slide"} <= set(DATA_DEFINITIONS)
    names = {d["name"] for d in requests.get(f"{world.url}/jdl", timeout=30).json()["jobDefinitions"]}
    assert set(EVERY_DEFINITION) <= names


@pytest.mark.parametrize("jobname", EVERY_DEFINITION)
def test_every_definition_opens_and_submits_its_defaults(world, page, jobname):
    """Issue 15.1: the form of a definition whose input has a default crashed.  Each form opens without
    an error, shows the definition's defaults, and the request carries exactly what it showed."""
    definition = definition_json(world, jobname)
    open_form(page, world.url, jobname)
    shoot(page, f"form-{jobname}")
    assert page.evaluate(DUPLICATE_IDS) == []
    shown = page.evaluate(SHOWN)
    assert list(shown) == list(definition.get("parameters") or {})  # every parameter, in the definition's order
    for name, desc in (definition.get("parameters") or {}).items():
        if desc.get("default") is not None:
            assert shown[name] == desc["default"], name
    uploads = {}
    for name, desc in (definition.get("used") or {}).items():
        field = page.locator(f'[data-field="{name}"]')
        if desc.get("default") is not None:  # the default is what is used, and the form says so
            assert field.locator("input[type=radio][value=default]").is_checked()
            assert desc["default"] in field.inner_text()
        elif desc.get("required", True):
            uploads[name] = f"content of {name}".encode()
            field.locator("input[type=file]").set_input_files(
                files=[{"name": f"{name}.dat", "mimeType": "application/octet-stream", "buffer": uploads[name]}])
    before = world.recorder.count()
    page.click("#create")
    job_id = created(page, world)
    assert world.recorder.count() == before + 1
    sent = world.recorder.last()
    assert sent["path"] == f"/rest/{jobname}"
    assert dict(sent["fields"]) == shown and len(sent["fields"]) == len(shown)  # as shown, each once
    assert {name: data for name, _, data in sent["files"]} == uploads
    job = job_json(world, jobname, job_id)
    assert job["phase"] == "PENDING"
    values = {p["id"]: p["value"] for p in job["parameters"] if not p.get("byReference")}
    assert values == shown


def _fill(page, name: str, value: str) -> None:
    page.locator(f'[data-field="{name}"] input, [data-field="{name}"] select').first.fill(value)


def _errors(page) -> dict[str, str]:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('[data-field].opus-invalid')]
      .map((w) => [w.dataset.field, w.querySelector('.invalid-feedback').textContent]))""")


def test_bad_values_of_every_type_are_shown_at_once_and_nothing_is_sent(world, page):
    """Issue 15.2: "abc" in a number field, an emptied field... every error at once, next to its field,
    and no request; once corrected, the request carries the corrected values."""
    open_form(page, world.url, "types")
    page.click("#toggle-optional")
    assert page.locator('[data-field="p_boolean"] input[role=switch]').count() == 1  # a switch: never a bad value
    bad = {"p_string": "", "p_int": "abc", "p_long": "9223372036854775808", "p_float": "1,5",
           "p_double": "", "p_anyURI": "not a uri", "p_dateTime": "2030-02-30T00:00:00Z"}
    for name, value in bad.items():
        _fill(page, name, value)
    page.click("#control-block summary")
    _fill(page, "EXECUTIONDURATION", "-5")
    _fill(page, "DESTRUCTION", "tomorrow")
    before = world.recorder.count()
    page.click("#create-run")
    page.wait_for_selector("#form-general:not(.d-none)")
    errors = _errors(page)
    assert set(errors) == set(bad) | {"EXECUTIONDURATION", "DESTRUCTION"}
    assert "not an integer" in errors["p_int"]
    assert "does not fit a 64-bit long" in errors["p_long"]
    assert "not a number" in errors["p_float"]
    assert "Empty" in errors["p_double"] and "2.5" in errors["p_double"]  # never silently the default
    assert "Empty" in errors["p_string"]
    assert "not a URI" in errors["p_anyURI"]
    assert "not a valid date" in errors["p_dateTime"]
    assert "below the minimum 0" in errors["EXECUTIONDURATION"]
    assert "not an ISO 8601 instant" in errors["DESTRUCTION"]
    assert page.locator("#form-general li").count() == len(errors)
    assert page.locator('[data-field="p_int"] input').get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.name") == "p_string"  # the first error has the focus
    shoot(page, "form-bad-values")
    assert world.recorder.count() == before  # nothing was sent
    good = {"p_string": "", "p_int": "-7", "p_long": "9223372036854775807", "p_float": "1.5e3",
            "p_double": "0.25", "p_anyURI": "https://example.org/a%20b", "p_dateTime": "2031-02-28T12:00:00+01:00"}
    good["p_string"] = "fixed"
    for name, value in good.items():
        _fill(page, name, value)
    _fill(page, "EXECUTIONDURATION", "20")
    _fill(page, "DESTRUCTION", "2031-01-01T00:00:00Z")
    assert _errors(page) == {}  # checked again as the user types
    page.click("#create")
    job_id = created(page, world)
    sent = dict(world.recorder.last()["fields"])
    assert sent == {**good, "p_boolean": "true", "EXECUTIONDURATION": "20", "DESTRUCTION": "2031-01-01T00:00:00Z"}
    values = {p["id"]: p["value"] for p in job_json(world, "types", job_id)["parameters"]}
    assert {k: values[k] for k in good} == good


def test_options_multiplicity_and_required_values(world, desktop):
    page = desktop
    open_form(page, world.url, "formchecks")
    assert page.evaluate(ORDER) == ["note", "mode", "bands", "label"]  # the definition's order
    before = world.recorder.count()
    _fill(page, "bands", "1 2 3 4")
    page.click("#create")
    page.wait_for_selector("#form-general:not(.d-none)")
    errors = _errors(page)
    assert set(errors) == {"mode", "bands", "label"}
    assert "Required" in errors["mode"] and "Required" in errors["label"]
    assert "4 value(s) given" in errors["bands"]
    page.locator("#form-general a", has_text="label").press("Enter")  # the list leads to each field
    assert page.evaluate("document.activeElement.name") == "label"
    _fill(page, "bands", "1 20")
    page.wait_for_function("() => document.querySelector('[data-field=bands] .invalid-feedback').textContent.includes('above the maximum 10')")
    page.select_option('[data-field="mode"] select', "slow")
    _fill(page, "label", "  two  words ")
    _fill(page, "bands", " 3   4 ")
    assert world.recorder.count() == before
    page.click("#create")
    created(page, world)
    # Strings exactly as typed; an optional field left empty (no default) is not sent.
    assert world.recorder.last()["fields"] == [("mode", "slow"), ("bands", "3   4"), ("label", "  two  words ")]


def test_definition_order_and_the_first_fields_are_visible(world, page):
    """Issue 15.6: RA and Dec of gammapy_maps are not hidden; fields keep the definition's order."""
    open_form(page, world.url, "gammapy_maps")
    assert page.evaluate(ORDER) == ["events", "RA", "Dec", "nxpix", "nypix", "binsz"]
    for name in ("events", "RA", "Dec"):
        assert page.locator(f'[data-field="{name}"]').is_visible(), name
    assert page.locator("#slurm-fields").is_hidden()  # the local manager: no SLURM section
    shoot(page, "form-gammapy_maps-visible")
    open_form(page, world.url, "types")
    names = list(definition_json(world, "types")["parameters"])
    assert page.evaluate(ORDER) == ["p_file"] + names
    visible = [n for n in ["p_file"] + names if page.locator(f'[data-field="{n}"]').is_visible()]
    assert visible == ["p_file"] + names[:3]  # the first few; the rest one click away
    page.click("#toggle-optional")
    assert page.locator('[data-field="p_dateTime"]').is_visible()


def test_slurm_fields_appear_when_the_server_runs_slurm(tmp_path, browser):
    """With MANAGER = "slurm" the form has a visible SLURM section; its values reach the server, checked."""
    server = FakeLiveServer(make_settings(tmp_path, ALLOW_ANONYMOUS=True, MANAGER="slurm",
                                          SLURM_PARTITIONS=("debug", "long")))
    context = _context(browser, server.url, DESKTOP)
    try:
        page = context.new_page()
        page.width_name = "desktop"
        open_form(page, server.url, "sleep")
        section = page.locator("#slurm-fields")
        assert section.is_visible()
        assert section.locator('[data-field="slurm_partition"] select option').all_inner_texts()[1:] == ["debug", "long"]
        _fill(page, "slurm_mem", "lots")
        _fill(page, "slurm_cpus_per_task", "0")
        page.click("#create")
        page.wait_for_selector("#form-general:not(.d-none)")
        assert set(_errors(page)) == {"slurm_mem", "slurm_cpus_per_task"}
        shoot(page, "form-slurm")
        page.set_viewport_size(PHONE)
        page.width_name = "phone"
        shoot(page, "form-slurm")
        page.select_option('[data-field="slurm_partition"] select', "long")
        _fill(page, "slurm_mem", "4G")
        _fill(page, "slurm_cpus_per_task", "2")
        page.click("#create")
        job_id = created(page, server)
        sent = dict(server.recorder.last()["fields"])
        assert {k: v for k, v in sent.items() if k.startswith("slurm_")} == {
            "slurm_partition": "long", "slurm_cpus_per_task": "2", "slurm_mem": "4G"}
        values = {p["id"]: p["value"] for p in job_json(server, "sleep", job_id)["parameters"]}
        assert values["slurm_mem"] == "4G" and values["slurm_partition"] == "long"
    finally:
        context.close()
        server.stop()
    context.watch.check()


def test_run_again_keeps_an_uploaded_input_by_its_store_url(world, desktop):
    """Issue 15.6: "Run again" of a job whose input was uploaded gives that file again, by its /store URL."""
    page = desktop
    open_form(page, world.url, "copy")
    page.set_input_files('[data-field="infile"] input[type=file]',
                         files=[{"name": "in.txt", "mimeType": "text/plain", "buffer": b"kept in the store\n"}])
    page.click("#create-run")
    first = created(page, world)
    assert wait_final(requests.Session(), f"{world.url}/rest/copy/{first}", 60) == "COMPLETED"
    open_form(page, world.url, "copy", f"?from={first}")
    field = page.locator('[data-field="infile"]')
    ref = field.locator("input[type=text]")
    assert ref.is_visible()
    store = ref.input_value()
    assert re.fullmatch(re.escape(world.url) + r"/store/[0-9a-f]{16}/in\.txt", store), store
    assert "from the result store" in field.inner_text()
    shoot(page, "form-run-again")
    page.click("#create-run")
    second = created(page, world)
    assert dict(world.recorder.last()["fields"])["infile"] == store
    assert wait_final(requests.Session(), f"{world.url}/rest/copy/{second}", 60) == "COMPLETED"
    copied = requests.get(f"{world.url}/rest/copy/{second}/results/copy", timeout=30)
    assert copied.content == b"kept in the store\n"


def test_the_servers_refusal_is_shown_next_to_its_field(world, desktop):
    """What only the server knows (here: it fetches no URL, INPUT_URL_HOSTS is empty) comes back as a
    400 naming the input, shown next to it; the form stays filled."""
    page = desktop
    open_form(page, world.url, "copy")
    field = page.locator('[data-field="infile"]')
    field.get_by_role("radio", name="URL or identifier").check()
    field.locator("input[type=text]").fill("https://data.example.org/events.fits")
    page.context.watch.allowed = re.compile(r"status of 400")
    page.click("#create")
    field.locator(".is-invalid").wait_for()
    assert "fetches no URLs" in field.locator(".invalid-feedback").inner_text()
    assert world.recorder.last()["fields"] == [("infile", "https://data.example.org/events.fits")]
    assert page.url.endswith("/web/new/copy")
    page.context.watch.allowed = re.compile(r"(?!)")


def test_fields_the_definition_marks_prominent_are_the_ones_shown(world, desktop):
    """A definition may mark inputs and parameters "prominent": those (and the required ones) are shown,
    the others are behind "Show more", whatever their place."""
    page = desktop

    def mark(route):
        definition = route.fetch().json()
        definition["parameters"]["p_dateTime"]["prominent"] = True
        definition["used"]["p_file"]["prominent"] = True
        route.fulfill(json=definition)

    page.route(re.compile(r"/jdl/types\?format=json$"), mark)
    open_form(page, world.url, "types")
    shown = [n for n in page.evaluate(ORDER) if page.locator(f'[data-field="{n}"]').is_visible()]
    assert shown == ["p_file", "p_dateTime"]
    toggle = page.locator("#toggle-optional")
    assert toggle.inner_text() == "Show 7 more parameters (at their defaults)"
    toggle.click()
    _fill(page, "p_int", "5")
    toggle.click()
    assert toggle.inner_text() == "Show 7 more parameters (1 changed)"
