"""Accessibility of the web client (issue 15, point 10): axe-core on every page, keyboard-only use.

axe-core comes from npm through package-lock.json (a development dependency: node_modules/axe-core,
never served by /web/lib).  It is evaluated in the page through the DevTools protocol, which the
pages' CSP does not govern, so the pages are tested with their real CSP.

* Every page (sign-in, home, all jobs, a job list, the form of every shipped definition, a job page
  finished and running, the editor, the admin page), at desktop and phone widths and in the dark
  theme, has no serious or critical violation.
* The form and the job page can be used with the keyboard alone: a test tabs to a field, types,
  tabs to "Create and run" and presses Enter, then reaches the job page's actions by Tab.

Like every browser test (tests/browser.py): Debian's Chromium, fails on a console error, an uncaught exception, a 5xx
or a request to another host; screenshots under ``$OPUS_ARTIFACTS_DIR/screenshots``.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest
import requests
from browser import DESKTOP, PHONE, axe_violations, launch, require_axe, shoot, signed_in_context, watched_context
from conftest import LiveServer, make_settings, run_job
from helpers import wait_phase

from opus.auth.admin import UserAdmin
from opus.settings import REPO_ROOT
from opus.storage.userstore import UserStore

SHIPPED = sorted(p.stem for p in (REPO_ROOT / "jdl").glob("*.json"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A server requiring sign-in, an admin (root) and a user (alice), and one completed job."""
    server = LiveServer(make_settings(tmp_path_factory.mktemp("a11y"), ALLOW_ANONYMOUS=False))
    admin = UserAdmin(UserStore(server.services.store.engine))
    server.tokens = {name: admin.add(name, admin=(name == "root"))[1] for name in ("root", "alice")}
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {server.tokens['root']}"
    server.job_url = run_job(http, server.url, "dummy", data={"text": "accessible"})
    # A job that runs while the pages are checked: its page shows the live progress and tails.
    r = http.post(f"{server.url}/rest/sleep", data={"seconds": "600", "PHASE": "RUN"}, allow_redirects=False)
    assert r.status_code == 303, r.text
    server.running_url = r.headers["Location"]
    wait_phase(http, server.running_url, "EXECUTING")
    yield server
    http.post(server.running_url + "/phase", data={"PHASE": "ABORT"})
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """browser.py's, failing first when axe-core is missing."""
    require_axe()
    with launch() as chromium:
        yield chromium


def _signed_in(world, browser, name: str, viewport: dict, scheme: str = "light"):
    return signed_in_context(browser, world.url, name, world.tokens[name], viewport=viewport, color_scheme=scheme)


#: The dark theme: opus.css gives outline buttons and secondary links AA contrast there.
DARK = "desktop-dark"


@pytest.fixture(scope="module", params=["desktop", "phone", DARK])
def admin_context(request, world, browser):
    """A context signed in as the admin (every page is open to it), at desktop or phone width, in
    the light theme or (the system preferring it, the pages' default "auto" theme) the dark one."""
    viewport = PHONE if request.param == "phone" else DESKTOP
    context = _signed_in(world, browser, "root", viewport, "dark" if request.param.endswith("dark") else "light")
    context.width = request.param
    yield context
    context.close()


def _pages(world) -> list[tuple[str, str, str]]:
    """(name, path, selector that says the page is drawn) for every page of the client."""
    job_path = urlsplit(world.job_url).path.replace("/rest/", "/web/jobs/", 1)
    running_path = urlsplit(world.running_url).path.replace("/rest/", "/web/jobs/", 1)
    return ([("home", "/web/", ".definition"), ("jobs", "/web/jobs", "#jobs-body tr, table tbody tr"),
             ("joblist", "/web/jobs/dummy", "table tbody tr"),
             ("job", job_path, '#job-phase[data-phase="COMPLETED"]'),
             ("job-running", running_path, '#job-phase[data-phase="EXECUTING"]'),
             ("job-again", f"/web/new/dummy?from={job_path.rsplit('/', 1)[1]}", "#job-form[data-ready]"),
             ("editor", "/web/editor?name=dummy", "#editor[data-ready] .CodeMirror"),
             ("editor-new", "/web/editor", "#editor[data-ready] .CodeMirror"),
             ("admin", "/web/admin", "#admin[data-ready]"),
             ("shared", "/web/shared", "#shared:not([aria-busy])")]
            + [(f"form-{name}", f"/web/new/{name}", "#job-form[data-ready]") for name in SHIPPED])


def test_axe_core_is_a_test_tool_never_served(world):
    """axe-core is a development dependency of the lock file: /web/lib serves only the pages' libraries."""
    assert requests.get(f"{world.url}/web/lib/axe-core/axe.min.js", timeout=30).status_code in (400, 404)
    assert requests.get(f"{world.url}/web/lib/bootstrap/dist/css/bootstrap.min.css", timeout=30).status_code == 200


def _report(name: str, violations: list[dict]) -> str:
    return f"{name}: " + json.dumps(violations, indent=1)


def test_every_page_has_no_serious_axe_violation(world, admin_context):
    failures = []
    for name, path, ready in _pages(world):
        page = admin_context.new_page()
        page.goto(world.url + path)
        page.wait_for_selector(ready)
        if name not in ("job-running", "jobs"):  # live tails and WAITs never leave the network idle
            page.wait_for_load_state("networkidle")
        else:
            page.wait_for_selector("#job-progress:not(.d-none), #jobs-table tbody tr:nth-child(2)")
        found = axe_violations(page)
        if found:
            failures.append(_report(name, found))
        if admin_context.width != "phone":  # shoot() takes both widths
            shoot(page, f"a11y-{name}{'-dark' if admin_context.width.endswith('dark') else ''}")
        page.close()
    admin_context.watch.check()
    assert not failures, "\n".join(failures)


def test_sign_in_page_has_no_serious_axe_violation(world, browser):
    for viewport in (DESKTOP, PHONE):
        context = watched_context(browser, world.url, viewport=viewport)
        context.watch.allowed = re.compile(r"status of 401")
        page = context.new_page()
        page.goto(f"{world.url}/web/")  # anonymous: 401 with the sign-in form
        page.wait_for_selector("#signin-form")
        found = axe_violations(page)
        page.goto(f"{world.url}/web/signin")
        page.wait_for_selector("#signin-form")
        found += axe_violations(page)
        context.watch.check()
        context.close()
        assert not found, _report("signin", found)


def _tab_to(page, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching ``selector`` has the focus (fails after ``limit`` presses)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} never got the focus by Tab")


def test_keyboard_only_form_then_job_page(world, browser):
    """Tab to the field, type, Tab to "Create and run", Enter; then the job page by Tab and Enter."""
    context = _signed_in(world, browser, "alice", DESKTOP)
    page = context.new_page()
    page.goto(f"{world.url}/web/new/dummy")
    page.wait_for_selector("#job-form[data-ready]")
    _tab_to(page, '[data-field="text"] input, [data-field="text"] textarea')
    page.keyboard.press("Control+A")
    page.keyboard.type("typed with the keyboard")
    _tab_to(page, "#create-run")
    page.keyboard.press("Enter")
    page.wait_for_selector('#job-phase[data-phase="COMPLETED"]', timeout=60_000)
    assert re.search(r"/web/jobs/dummy/[0-9a-f]{16}$", page.url)
    # The parameters table shows what was typed; the results can be reached and opened by the keyboard.
    assert "typed with the keyboard" in page.locator("#job-parameters").inner_text()
    _tab_to(page, "#job-results a, #job-results button")
    _tab_to(page, "#job-again")
    page.keyboard.press("Enter")
    page.wait_for_selector("#job-form[data-ready]")
    assert "from=" in page.url
    # A running job is aborted from its page by the keyboard.
    page.goto(f"{world.url}/web/new/sleep")
    page.wait_for_selector("#job-form[data-ready]")
    _tab_to(page, '[data-field="seconds"] input')
    page.keyboard.press("Control+A")
    page.keyboard.type("300")
    _tab_to(page, "#create-run")
    page.keyboard.press("Enter")
    page.wait_for_selector('#job-phase[data-phase="EXECUTING"], #job-phase[data-phase="QUEUED"]')
    _tab_to(page, "#job-abort")
    page.keyboard.press("Enter")
    page.wait_for_selector('#job-phase[data-phase="ABORTED"]')
    context.watch.check()
    context.close()
