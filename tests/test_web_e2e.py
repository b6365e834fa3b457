"""The web client end to end: Debian's Chromium driven by Playwright against a live server.

Every page is screenshot at desktop and phone widths into ``$OPUS_ARTIFACTS_DIR/screenshots``
(default ``test-artifacts/screenshots``).  Each test fails on a console error or an uncaught
exception in a page, on any request to a host other than the servers of the test (requests are
intercepted), and on any 5xx answer.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests
from browser import Watch, checked_context, checked_page, fill_sign_in, shoot, sign_in, watched_context
from browser import browser  # noqa: F401  (a fixture)
from conftest import LiveServer, make_settings

from opus.auth.admin import UserAdmin
from opus.storage.userstore import UserStore


class SitePage(BaseHTTPRequestHandler):
    """Another site (another port) embedding uws.js from OPUS, as CompOSE did."""

    opus = ""

    def do_GET(self):
        if self.path == "/app.js":
            body, ctype = APP_JS, "text/javascript"
        else:
            body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Other site</title>'
                    f'<script src="{self.opus}/web/static/uws.js" defer></script><script src="/app.js" defer></script>'
                    f'</head><body data-opus="{self.opus}"><h1>Another site</h1><pre id="out">…</pre></body></html>')
            ctype = "text/html; charset=utf-8"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


APP_JS = """
(async () => {
  const out = document.getElementById("out");
  try {
    const client = new UWS.Client({base: document.body.dataset.opus});
    const who = await client.session();
    const job = await client.createJob("dummy", {text: "from another site"}, {run: true});
    out.textContent = JSON.stringify({user: who.user, jobId: job.jobId});
  } catch (err) { out.textContent = "error " + err.status + ": " + err.message; }
  out.dataset.done = "1";
})();
"""


def _site(opus_url: str) -> ThreadingHTTPServer:
    handler = type("Handler", (SitePage,), {"opus": opus_url})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return httpd


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The OPUS server (sign-in required), its users, and two other sites: one allowed by
    CORS_ORIGINS, one not."""
    allowed = _site("")
    stranger = _site("")
    server = LiveServer(make_settings(tmp_path_factory.mktemp("web"), ALLOW_ANONYMOUS=False, MAX_RUNNING_JOBS=4,
                                      CORS_ORIGINS=(f"http://127.0.0.1:{allowed.server_port}",)))
    for site in (allowed, stranger):
        site.RequestHandlerClass.opus = server.url
    admin = UserAdmin(UserStore(server.services.store.engine))
    server.tokens = {name: admin.add(name, admin=(name == "root"), editor=True)[1] for name in ("root", "alice")}
    server.sites = {"allowed": f"http://127.0.0.1:{allowed.server_port}",
                    "stranger": f"http://127.0.0.1:{stranger.server_port}"}
    yield server
    server.stop()
    for site in (allowed, stranger):
        site.shutdown()


@pytest.fixture(scope="module")
def session(world, browser):
    """A browser context signed in as alice (through the sign-in form)."""
    context = watched_context(browser, world.url, *world.sites.values())
    page = context.new_page()
    # Not signed in: the page answers 401 with the sign-in form (the browser logs that 401).
    with context.watch.allowing(r"status of 401"):
        page.goto(f"{world.url}/web/")
        assert page.locator("#signin-form").is_visible()
        shoot(page, "signin")
        fill_sign_in(page, "alice", world.tokens["alice"])
        page.wait_for_selector(".definition")
    assert page.url == f"{world.url}/web/"
    assert page.locator("#opus-user").inner_text() == "alice"
    page.close()
    yield context
    context.close()


@pytest.fixture
def page(session):
    with checked_page(session) as page:
        yield page


def api(world, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {world.tokens['alice']}", **kwargs.pop("headers", {})}
    return requests.request(method, world.url + path, headers=headers, allow_redirects=False, timeout=30, **kwargs)


def test_definitions_page_lists_what_the_user_may_run(world, page):
    page.goto(f"{world.url}/web/")
    cards = page.locator(".definition")
    cards.first.wait_for()
    names = {cards.nth(i).get_attribute("data-name") for i in range(cards.count())}
    assert {"dummy", "sleep", "gammapy_maps"} <= names
    assert "Write a given text" in page.locator('.definition[data-name="dummy"]').inner_text()
    shoot(page, "definitions")


def test_create_and_run_then_completed_live_with_preview_and_provenance(world, page):
    page.goto(f"{world.url}/web/new/dummy")
    page.wait_for_selector("#job-form[data-ready]")
    shoot(page, "form")
    page.fill('[data-field="text"] input', "Hello from the browser")
    page.click("#control-block summary")
    page.fill('[data-field="RUNID"] input', "e2e-run")
    page.click("#create-run")
    page.wait_for_url(re.compile(r"/web/jobs/dummy/[0-9a-f]{16}$"))
    page.evaluate("window.notReloaded = true")
    page.wait_for_selector('#job-phase[data-phase="COMPLETED"]')
    assert page.evaluate("window.notReloaded") is True  # the phase changed in place, through WAIT
    assert "e2e-run" in page.locator("#job-properties").inner_text()
    page.click('[data-result="output"] .preview-button')
    assert page.locator("#preview-body pre").inner_text().strip() == "Hello from the browser"
    graph = page.locator("#provenance-graph")  # Graphviz's drawing, in the closed "Drawing for print" section
    graph.wait_for(state="attached")
    page.wait_for_function("() => document.getElementById('provenance-graph').naturalWidth > 100")
    links = page.locator("#provenance-links a")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    for fmt in ("svg", "png", "json", "xml", "provn", "votable"):
        assert any(h.endswith(f"/provenance?format={fmt}") for h in hrefs), fmt
    assert any("/provsap?ID=" in h for h in hrefs)
    store = page.locator('[data-result="output"] a', has_text="Store").get_attribute("href")
    assert store.startswith("/store/")
    page.locator("#stdout-block summary").click()
    shoot(page, "job")
    # "Run again" prefills the form with this job's values.
    page.click("#job-again")
    page.wait_for_selector("#job-form[data-ready]")
    assert page.locator('[data-field="text"] input').input_value() == "Hello from the browser"
    assert page.locator('[data-field="RUNID"] input').input_value() == "e2e-run"


def test_abort_a_sleeping_job(world, page):
    page.goto(f"{world.url}/web/new/sleep")
    page.wait_for_selector("#job-form[data-ready]")
    page.fill('[data-field="seconds"] input', "60")
    page.click("#create-run")
    page.wait_for_selector('#job-phase[data-phase="EXECUTING"]')
    page.click("#job-abort")
    page.wait_for_selector('#job-phase[data-phase="ABORTED"]')
    assert page.locator("#job-abort").is_hidden()


def test_server_errors_are_shown_next_to_their_field(world, page):
    page.goto(f"{world.url}/web/new/sleep")
    page.wait_for_selector("#job-form[data-ready]")
    page.context.watch.allowed = re.compile(r"status of 400")
    page.fill('[data-field="seconds"] input', "999999")
    page.click("#create")
    field = page.locator('[data-field="seconds"]')
    field.locator(".is-invalid").wait_for()
    assert "above the maximum" in field.locator(".invalid-feedback").inner_text()
    shoot(page, "form-error")
    page.context.watch.allowed = re.compile(r"(?!)")


def test_job_list_follows_jobs_live_and_acts_on_them(world, page):
    r = api(world, "POST", "/rest/sleep", data={"seconds": "1.5", "PHASE": "RUN", "RUNID": "listed"})
    job_id = r.headers["Location"].rsplit("/", 1)[1]
    pending = api(world, "POST", "/rest/dummy", data={"RUNID": "waiting"}).headers["Location"].rsplit("/", 1)[1]
    page.goto(f"{world.url}/web/jobs/sleep")
    page.wait_for_selector(f'tr[data-job-id="{job_id}"]')
    page.wait_for_selector(f'tr[data-job-id="{job_id}"][data-phase="COMPLETED"]')  # no reload: WAIT
    assert "listed" in page.locator(f'tr[data-job-id="{job_id}"]').inner_text()
    shoot(page, "jobs")
    page.goto(f"{world.url}/web/jobs")
    row = page.locator(f'tr[data-job-id="{pending}"]')
    row.wait_for()
    assert row.get_attribute("data-phase") == "PENDING"
    row.get_by_role("button", name="Start").click()
    page.wait_for_selector(f'tr[data-job-id="{pending}"][data-phase="COMPLETED"]')
    page.locator(f'tr[data-job-id="{pending}"]').get_by_role("button", name="Delete").click()
    page.locator(f'tr[data-job-id="{pending}"]').get_by_role("button", name="Confirm delete").click()
    page.wait_for_selector(f'tr[data-job-id="{pending}"]', state="detached")
    assert api(world, "GET", f"/rest/dummy/{pending}").status_code == 404
    page.select_option("#filter-phase", "COMPLETED")
    page.wait_for_selector(f'tr[data-job-id="{job_id}"]')
    shoot(page, "all-jobs")


def test_paging_through_many_jobs(world, page):
    for i in range(23):
        api(world, "POST", "/rest/fail", data={"RUNID": f"page-{i:02d}"})
    page.goto(f"{world.url}/web/jobs/fail")
    page.select_option("#filter-size", "10")
    page.wait_for_selector("#jobs-body tr[data-job-id] >> nth=9")
    first = page.locator("#jobs-body tr").first.inner_text()
    assert "page-22" in first
    page.click("#page-older")
    page.wait_for_selector("#page-info:has-text('Page 2')")
    assert "page-12" in page.locator("#jobs-body tr").first.inner_text()
    page.click("#page-older")
    page.wait_for_selector("#page-info:has-text('Page 3')")
    assert page.locator("#jobs-body tr").count() == 3 and page.locator("#page-older").is_disabled()


def test_uws_js_from_another_site_listed_in_cors_origins(world, page):
    page.goto(world.sites["allowed"] + "/")
    page.wait_for_selector("#out[data-done]")
    result = page.locator("#out").inner_text()
    assert result.startswith('{"user":"alice"'), result
    job_id = re.search(r'"jobId":"([0-9a-f]{16})"', result).group(1)
    assert api(world, "GET", f"/rest/dummy/{job_id}/owner").text == "alice"
    # A site that is not listed cannot use the session: the browser blocks the answer.
    page.context.watch.allowed = re.compile(r"CORS policy|Failed to load resource|ERR_FAILED")
    page.goto(world.sites["stranger"] + "/")
    page.wait_for_selector("#out[data-done]")
    assert page.locator("#out").inner_text().startswith("error 0")
    page.context.watch.allowed = re.compile(r"(?!)")


def test_outside_requests_are_caught(world, session):
    """The guard works (tests/browser.py's Watch): a page asking for another host is blocked and
    reported, and a console error, an uncaught exception and a 5xx answer are each reported."""
    watch = Watch({urlsplit(world.url).netloc})
    context = session.browser.new_context()
    context.route("**/*", watch.guard)
    context.route("**/broken", lambda route: route.fulfill(status=500, body="broken"))
    context.on("page", watch.attach)
    page = context.new_page()
    watch.hosts.add(urlsplit(world.sites["allowed"]).netloc)
    page.goto(world.sites["allowed"] + "/")  # a page without OPUS's CSP, which would stop the fetch first
    page.evaluate("fetch('http://example.invalid/x').catch(() => null)")
    # Each waits for its event, which reaches the watch first (its handler was attached first).
    with page.expect_response("**/broken"):
        page.evaluate("fetch('/broken').catch(() => null)")
    with page.expect_console_message():
        page.evaluate("console.error('a probe')")
    with page.expect_event("pageerror"):
        page.evaluate("setTimeout(() => { throw new Error('uncaught probe'); })")
    context.close()
    assert watch.outside == ["http://example.invalid/x"]
    assert any(e.startswith("console: a probe") for e in watch.errors), watch.errors
    assert any(e.startswith("page error: ") and "uncaught probe" in e for e in watch.errors), watch.errors
    assert any(e.startswith("HTTP 500: ") and e.endswith("/broken") for e in watch.errors), watch.errors



def test_an_admin_creates_a_user_who_then_signs_in(world, browser):
    with checked_context(browser, world.url) as context:
        page = context.new_page()
        sign_in(page, world.url, "root", world.tokens["root"])
        page.goto(f"{world.url}/web/admin")
        page.wait_for_selector("#admin[data-ready]")
        assert page.locator("#jobs-by-phase").is_visible()
        page.fill("#new-name", "carol")
        page.fill("#new-jobdefs", "dummy")
        page.fill("#new-quota", "3")
        page.click("#add-user button[type=submit]")
        token = page.locator('code.user-token[data-user="carol"]').inner_text()
        page.wait_for_selector('tr[data-user="carol"]')
        shoot(page, "admin")
        with checked_context(browser, world.url) as carol:
            carol_page = carol.new_page()
            sign_in(carol_page, world.url, "carol", token)
            names = carol_page.locator(".definition").evaluate_all("(cards) => cards.map((c) => c.dataset.name)")
            assert names == ["dummy"]
            assert carol_page.locator("#opus-user").inner_text() == "carol"
        # Disabling her ends her session at once.
        page.locator('tr[data-user="carol"]').get_by_role("button", name="Disable").click()
        page.wait_for_selector('tr[data-user="carol"] .badge:has-text("disabled")')


def test_an_admin_validates_the_proposal_version_the_page_showed(world, browser):
    """The admin page sends the digest it showed: a proposal changed since is refused, not made live."""
    def definition(script: str, version: str) -> dict:
        return {"name": "webreviewed", "version": version, "script": script}

    assert api(world, "POST", "/jdl", json=definition("echo first\n", "1")).status_code == 201
    with checked_context(browser, world.url) as context:
        page = context.new_page()
        sign_in(page, world.url, "root", world.tokens["root"])
        page.goto(f"{world.url}/web/admin")
        page.wait_for_selector("#admin[data-ready]")
        item = page.locator('[data-proposal="webreviewed"]')
        shown = item.locator(".proposal-digest").get_attribute("data-digest")
        assert re.fullmatch(r"[0-9a-f]{64}", shown)
        # alice changes her proposal after the page listed it: Validate must not make the new one live
        assert api(world, "POST", "/jdl", json=definition("echo second\n", "2")).status_code == 201
        context.watch.allowed = re.compile(r"status of 409")
        item.get_by_role("button", name="Validate").click()
        page.wait_for_selector("text=changed since this list was shown")
        assert api(world, "GET", "/jdl/webreviewed").status_code == 404
        page.wait_for_selector(f'[data-proposal="webreviewed"] .proposal-digest:not([data-digest="{shown}"])')
        page.locator('[data-proposal="webreviewed"]').get_by_role("button", name="Validate").click()
        page.wait_for_selector("text=webreviewed is live.")
        live = api(world, "GET", "/jdl/webreviewed", params={"format": "json"}).json()
        assert live["script"] == "echo second\n" and live["version"] == "2"


def test_editor_round_trip_import_change_export(world, page):
    from opus.jobdef.formats import read_definition, write_definition
    original = read_definition(api(world, "GET", "/jdl/dummy", params={"format": "votable"}).content, "votable")
    original.name = "roundtrip"
    original.version = "7"
    vot = write_definition(original, "votable")
    page.goto(f"{world.url}/web/editor")
    page.wait_for_selector("#editor[data-ready]")
    page.set_input_files("#import-file", files=[{"name": "roundtrip.vot", "mimeType": "application/x-votable+xml",
                                                 "buffer": vot}])
    page.wait_for_selector("text=Editing the proposal definition roundtrip")
    page.wait_for_selector("#editor[data-ready] .CodeMirror")
    text_default = page.locator('#rows-parameters > .editor-item:has([data-key="name"][value="text"]) [data-key="default"]')
    assert text_default.input_value() == "Hello, world!"
    text_default.fill("Changed in the editor")
    shoot(page, "editor")
    page.click("#propose")
    page.wait_for_selector("#proposed")
    exported = page.locator('a[data-format="votable"]').get_attribute("href")
    assert exported == "/jdl/proposals/roundtrip?format=votable"
    changed = read_definition(api(world, "GET", exported).content, "votable")
    assert changed.parameters["text"].default == "Changed in the editor"
    changed.parameters["text"].default = original.parameters["text"].default
    assert changed.to_dict() == original.to_dict()  # nothing else moved through VOTable -> form -> JSON -> VOTable


def test_upload_an_input_and_preview_a_fits_result_through_its_png(world, page):
    pytest.importorskip("astropy")
    from test_countmap import DEC0, RA0, synthetic_events

    page.goto(f"{world.url}/web/new/gammapy_maps")
    page.wait_for_selector("#job-form[data-ready]")
    page.set_input_files('[data-field="events"] input[type=file]', files=[
        {"name": "events.fits", "mimeType": "application/fits", "buffer": synthetic_events(n=500)}])
    # RA and Dec are prominent (shown at once); the map's size sits behind "Show more".
    assert page.locator('[data-field="RA"] input').is_visible()
    assert not page.locator('[data-field="nxpix"] input').is_visible()
    page.click("#toggle-optional")
    for name, value in (("RA", RA0), ("Dec", DEC0), ("nxpix", 40), ("nypix", 40), ("binsz", 0.05)):
        page.fill(f'[data-field="{name}"] input', str(value))
    page.click("#create-run")
    page.wait_for_selector('#job-phase[data-phase="COMPLETED"]', timeout=60_000)
    page.click('[data-result="count_map"] .preview-button')
    image = page.locator("#preview-body img")
    image.wait_for()
    assert image.get_attribute("src").endswith("/results/count_preview")
    page.wait_for_function("() => document.querySelector('#preview-body img').naturalWidth > 100")
    events = page.locator("#job-parameters a")
    assert events.count() == 1  # the uploaded file, served back at .../parameters/events
