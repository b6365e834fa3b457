"""The job list, the home page and the site's identity (issue 15, points 7 and 9), in Debian's Chromium.

* Job list: the filters (definition, phase, run id, creation dates, page size, page) live in the
  URL: a filtered list can be bookmarked and the back button restores the previous filters; on a
  phone every action stays whole and usable; several jobs are selected, then aborted or deleted
  after a confirmation, each through the API; each job shows its destruction time; a job is
  labelled by its run id when it has one.
* Identity: SITE_TITLE, SITE_LOGO (a file OPUS serves safely, or a URL) and SITE_HOME_TEXT (plain
  paragraphs, escaped); the home page says what the service offers and how to start, and links the
  API's documents; light and dark themes (prefers-color-scheme, and a toggle remembered in
  localStorage); no numeric input spans a whole row.

Browser tests run at desktop (1366x900) and phone (390x844) widths, fail on a console error, an
uncaught exception, a 5xx or a request to another host (``browser.Watch``), and save
screenshots under ``$OPUS_ARTIFACTS_DIR/screenshots`` (default ``test-artifacts/screenshots``).
"""

from __future__ import annotations

import threading
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from browser import DESKTOP, PHONE, VIEWPORTS, axe_violations, checked_context, shoot_as_is, watched_context
from browser import browser  # noqa: F401  (a fixture)
from conftest import ApiServer, make_settings
from helpers import wait_for

from opus.errors import ConfigurationError
from opus.settings import Settings
from test_web_form import FakeLiveServer

LOGO = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 40"><rect width="40" height="40" rx="8" '
        'fill="#f0b429"/><script>alert(1)</script></svg>')
HOME_TEXT = ("The Example Observatory reduces its <b>survey</b> data here.\n\n"
             "Questions: help@example.org\n   \n\n")


class Calls:
    """WSGI middleware counting the state-changing job requests (abort, delete) that reach the server."""

    def __init__(self, app):
        self.app = app
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if (method == "DELETE" and path.startswith("/rest/")) or (method == "POST" and path.endswith("/phase")):
            with self.lock:
                self.seen.append((method, path))
        return self.app(environ, start_response)

    def of(self, method: str, ids: set[str]) -> list[str]:
        with self.lock:
            return [p for m, p in self.seen if m == method and any(i in p for i in ids)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A live server (anonymous use, jobs run by the fake manager) with a site title, logo and home text."""
    tmp = tmp_path_factory.mktemp("weblist")
    logo = tmp / "logo.svg"
    logo.write_text(LOGO)
    server = FakeLiveServer(make_settings(tmp, ALLOW_ANONYMOUS=True, MAX_RUNNING_JOBS=8, SITE_TITLE="Example Observatory",
                                          SITE_LOGO=str(logo), SITE_HOME_TEXT=HOME_TEXT))
    server.calls = Calls(server.app)
    server.app = server.calls
    yield server
    server.stop()


def _context(browser, server_url: str, viewport: dict, **options):
    return watched_context(browser, server_url, viewport=viewport, **options)


@pytest.fixture(params=sorted(VIEWPORTS))
def page(request, world, browser):  # noqa: F811
    """A page at each width, failing the test on a console error, a 5xx or an outside request."""
    with checked_context(browser, world.url, viewport=VIEWPORTS[request.param]) as context:
        page = context.new_page()
        page.width_name = request.param
        yield page


def shoot(page, name: str) -> None:
    shoot_as_is(page, name, page.width_name)


def assert_accessible(page, name: str) -> None:
    """No serious or critical axe-core violation (WCAG 2.x A and AA, best practices) on the page as it is."""
    found = [f"{v['id']}: {', '.join(v['nodes'])}" for v in axe_violations(page)]
    assert not found, f"{name}: {found}"


def create(world, name: str, run_id: str, run: bool = False, **params) -> str:
    data = {"RUNID": run_id, **params, **({"PHASE": "RUN"} if run else {})}
    r = world.http.post(f"{world.url}/rest/{name}", data=data, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    return r.headers["Location"].rsplit("/", 1)[1]


def job(world, name: str, job_id: str):
    return world.http.get(f"{world.url}/rest/{name}/{job_id}", headers={"Accept": "application/json"}, timeout=30)


def shown(page) -> list[str]:
    return page.eval_on_selector_all("#jobs-body tr[data-job-id]", "rows => rows.map(r => r.dataset.jobId)")


def wait_rows(page, ids: list[str]) -> None:
    """The list shows exactly ``ids`` (newest first)."""
    page.wait_for_function("ids => JSON.stringify(Array.from(document.querySelectorAll('#jobs-body tr[data-job-id]'))"
                           ".map(r => r.dataset.jobId)) === JSON.stringify(ids)", arg=ids)


def query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


# ---- the job list -------------------------------------------------------------------------------------
def test_filters_live_in_the_url_and_the_back_button_restores_them(world, page):
    tag = uuid.uuid4().hex[:8]
    alpha = [create(world, "dummy", f"{tag}-alpha-{i}") for i in range(2)]
    beta = create(world, "dummy", f"{tag}-beta")
    other = create(world, "fail", f"{tag}-alpha-fail")
    # A bookmarked list: its filters come from the URL.
    page.goto(f"{world.url}/web/jobs?definition=dummy&phase=PENDING&runid={tag}-alpha")
    wait_rows(page, alpha[::-1])
    assert page.locator("#filter-jobname").input_value() == "dummy"
    assert page.locator("#filter-phase").input_value() == "PENDING"
    assert page.locator("#filter-runid").input_value() == f"{tag}-alpha"
    # A job is labelled by its run id (its id beside it).
    first = page.locator(f'tr[data-job-id="{alpha[1]}"] .job-label')
    assert first.inner_text() == f"{tag}-alpha-1"
    assert first.get_attribute("href").endswith(f"/web/jobs/dummy/{alpha[1]}")
    shoot(page, "jobs-filtered")
    assert_accessible(page, "job list")
    # Changing a filter changes the URL (a new history entry) and the list.
    page.fill("#filter-runid", f"{tag}-beta")
    page.press("#filter-runid", "Enter")
    wait_rows(page, [beta])
    assert query(page)["runid"] == [f"{tag}-beta"] and query(page)["definition"] == ["dummy"]
    page.select_option("#filter-jobname", "")
    page.fill("#filter-runid", f"{tag}-alpha")
    page.press("#filter-runid", "Enter")
    wait_rows(page, [other] + alpha[::-1])
    assert "definition" not in query(page)
    # Back: the previous filters, in the form and in the list; forward again.
    page.go_back()
    page.go_back()
    wait_rows(page, [beta])
    assert page.locator("#filter-runid").input_value() == f"{tag}-beta"
    assert page.locator("#filter-jobname").input_value() == "dummy"
    page.go_back()
    wait_rows(page, alpha[::-1])
    page.go_forward()
    wait_rows(page, [beta])
    # Dates: "created before" a past instant shows nothing; the input shows it in local time.
    page.goto(f"{world.url}/web/jobs?runid={tag}&before=2001-02-03T04:05:00Z")
    page.wait_for_selector("#jobs-body td:has-text('No job matches these filters')")
    assert page.locator("#filter-before").input_value().startswith("2001-02-0")
    page.goto(f"{world.url}/web/jobs?runid={tag}&after=2001-02-03T04:05:00Z&size=10")
    wait_rows(page, [other, beta] + alpha[::-1])
    assert page.locator("#filter-size").input_value() == "10"


def test_page_number_in_the_url(world, page):
    tag = uuid.uuid4().hex[:8]
    ids = [create(world, "fail", f"{tag}-{i:02d}") for i in range(12)]
    page.goto(f"{world.url}/web/jobs/fail?runid={tag}&size=10")
    wait_rows(page, ids[::-1][:10])
    page.click("#page-older")
    wait_rows(page, ids[::-1][10:])
    assert query(page)["page"] == ["2"]
    page.reload()
    wait_rows(page, ids[::-1][10:])
    page.go_back()
    wait_rows(page, ids[::-1][:10])


def test_several_jobs_aborted_then_deleted_after_a_confirmation(world, page):
    tag = uuid.uuid4().hex[:8]
    running = [create(world, "sleep", f"{tag}-run-{i}", run=True, seconds="600") for i in range(2)]
    pending = create(world, "dummy", f"{tag}-pending")
    done = create(world, "fail", f"{tag}-done", run=True)
    wait_for(lambda: job(world, "fail", done).json()["phase"] == "ERROR", what="the fail job to end")
    ids = set(running) | {pending, done}
    page.goto(f"{world.url}/web/jobs?runid={tag}")
    page.wait_for_selector(f'tr[data-job-id="{done}"]')
    for job_id in running:
        page.wait_for_selector(f'tr[data-job-id="{job_id}"][data-phase="EXECUTING"]')
    assert page.locator("#bulk-bar").is_hidden()
    page.check("#select-all")
    assert page.locator("#bulk-count").inner_text() == "4 jobs selected"
    # Abort: only the unfinished ones, after a confirmation that names them.
    page.click("#bulk-abort")
    dialog = page.locator("#bulk-confirm")
    dialog.wait_for(state="visible")
    assert dialog.locator("#bulk-confirm-list li").count() == 3
    assert "already finished" in dialog.inner_text()
    page.wait_for_function("() => getComputedStyle(document.getElementById('bulk-confirm')).opacity === '1'")
    shoot(page, "jobs-bulk-confirm")
    assert_accessible(page, "the confirmation")
    dialog.get_by_role("button", name="Cancel").first.click()
    dialog.wait_for(state="hidden")
    assert world.calls.of("POST", ids) == []  # cancelled: nothing sent
    page.click("#bulk-abort")
    dialog.wait_for(state="visible")
    page.click("#bulk-confirm-go")
    for job_id in running + [pending]:
        page.wait_for_selector(f'tr[data-job-id="{job_id}"][data-phase="ABORTED"]')
    assert sorted(world.calls.of("POST", ids)) == sorted(
        f"/rest/{n}/{i}/phase" for n, i in [("sleep", running[0]), ("sleep", running[1]), ("dummy", pending)])
    assert page.locator("#alerts").inner_text().count("Aborted 3 of 3") == 1
    # Delete: every selected job, one DELETE each.
    page.check(f'tr[data-job-id="{done}"] .select-cell input')
    page.check(f'tr[data-job-id="{pending}"] .select-cell input')
    assert page.locator("#bulk-count").inner_text() == "2 jobs selected"
    page.click("#bulk-delete")
    dialog.wait_for(state="visible")
    assert dialog.locator("#bulk-confirm-list li").count() == 2
    page.click("#bulk-confirm-go")
    page.wait_for_selector(f'tr[data-job-id="{done}"]', state="detached")
    page.wait_for_selector(f'tr[data-job-id="{pending}"]', state="detached")
    assert job(world, "fail", done).status_code == 404 and job(world, "dummy", pending).status_code == 404
    assert sorted(world.calls.of("DELETE", ids)) == sorted([f"/rest/fail/{done}", f"/rest/dummy/{pending}"])
    assert shown(page) == running[::-1]


def test_each_job_shows_its_destruction_time(world, page):
    tag = uuid.uuid4().hex[:8]
    job_id = create(world, "dummy", tag)
    destruction = job(world, "dummy", job_id).json()["destruction"]
    page.goto(f"{world.url}/web/jobs/dummy?runid={tag}")
    cell = page.locator(f'tr[data-job-id="{job_id}"] td.destruction time')
    cell.wait_for()
    assert cell.get_attribute("datetime") == destruction and cell.is_visible()
    if page.width_name == "desktop":
        assert page.locator("#jobs-table th", has_text="Destruction").is_visible()


def test_on_a_phone_every_action_is_whole_and_usable(world, browser):
    tag = uuid.uuid4().hex[:8]
    pending = create(world, "dummy", f"{tag}-a-rather-long-run-identifier-for-a-phone")
    context = _context(browser, world.url, PHONE)
    page = context.new_page()
    page.width_name = "phone"
    page.goto(f"{world.url}/web/jobs?runid={tag}")
    row = page.locator(f'tr[data-job-id="{pending}"]')
    row.wait_for()
    buttons = row.locator(".actions-cell button")
    assert [buttons.nth(i).inner_text() for i in range(buttons.count())] == ["Start", "Abort", "Delete"]
    for i in range(buttons.count()):
        box = buttons.nth(i).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (i, box)
        assert buttons.nth(i).evaluate("b => b.scrollWidth <= b.clientWidth"), "a clipped label"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    shoot(page, "jobs")
    row.get_by_role("button", name="Abort").click()
    page.wait_for_selector(f'tr[data-job-id="{pending}"][data-phase="ABORTED"]')
    context.close()
    context.watch.check()


# ---- the home page and the site's identity ----------------------------------------------------------------
def test_home_page_says_what_the_service_offers(world, page):
    page.goto(f"{world.url}/web/")
    page.locator(".definition").first.wait_for()
    assert page.title() == "Home · Example Observatory"
    assert page.locator("#site-title").inner_text() == "Example Observatory"
    # The operator's text: its paragraphs, shown as written (escaped, never HTML).
    paragraphs = page.locator("#home-text p")
    assert [paragraphs.nth(i).inner_text() for i in range(paragraphs.count())] == [
        "The Example Observatory reduces its <b>survey</b> data here.", "Questions: help@example.org"]
    assert page.locator("#home-text b").count() == 0
    # The logo, served by OPUS; its script never runs (an <img>, and a sandboxing CSP if opened).
    page.wait_for_function("() => document.getElementById('site-logo').naturalWidth > 0")
    # What it offers: the definitions with their descriptions; how to start; the API's documents.
    card = page.locator('.definition[data-name="dummy"]')
    assert "Write a given text" in card.inner_text()
    assert card.get_by_role("link", name="New job").get_attribute("href").endswith("/web/new/dummy")
    assert "How to start" in page.locator("#start-title").inner_text()
    hrefs = page.eval_on_selector_all("#api-links a", "links => links.map(a => a.getAttribute('href'))")
    assert {"/openapi.json", "/jdl", "/capabilities", "/availability"} <= set(hrefs)
    for href in ("/openapi.json", "/capabilities"):
        assert world.http.get(world.url + href, timeout=30).status_code == 200
    assert f"{world.url}/rest/DEFINITION" in page.locator("pre.api-example").inner_text()
    shoot(page, "home")
    assert_accessible(page, "home")


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_themes_follow_the_system_and_the_toggle_is_remembered(world, browser, scheme):
    context = _context(browser, world.url, DESKTOP, color_scheme=scheme)
    page = context.new_page()
    page.width_name = f"desktop-{scheme}"
    theme = lambda: page.evaluate("document.documentElement.getAttribute('data-bs-theme')")
    background = lambda: page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.goto(f"{world.url}/web/jobs")
    assert theme() == scheme
    first = background()
    shoot(page, "theme-auto")
    other = "light" if scheme == "dark" else "dark"
    # The toggle cycles: as the system -> light -> dark; the choice survives a reload and other pages.
    clicks = 1 if other == "light" else 2
    for _ in range(clicks):
        page.click("#theme-toggle")
    assert theme() == other and background() != first
    page.goto(f"{world.url}/web/")
    assert theme() == other
    assert page.evaluate("localStorage.getItem('opus-theme')") == other
    page.locator(".definition").first.wait_for()
    shoot(page, f"theme-{other}")
    assert_accessible(page, f"home, {other} theme")
    context.close()
    context.watch.check()


def test_no_numeric_input_spans_a_row(world, page):
    page.goto(f"{world.url}/web/editor")
    page.wait_for_selector('input[type="number"]')
    widths = page.eval_on_selector_all('input[type="number"]', "xs => xs.map(x => x.getBoundingClientRect().width)")
    rem = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    assert widths and max(widths) <= 12 * rem + 1, widths


# ---- without a browser -----------------------------------------------------------------------------------------------
def test_the_logo_file_is_served_as_an_image_that_runs_nothing(world):
    r = world.http.get(f"{world.url}/web/static/site-logo", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/svg+xml"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in r.headers["Content-Security-Policy"] and "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert r.text == LOGO
    page = world.http.get(f"{world.url}/web/", timeout=30)
    assert 'src="/web/static/site-logo"' in page.text and "img-src 'self' data: blob:" in page.headers["Content-Security-Policy"]


def test_a_logo_url_is_allowed_by_the_pages_policy_and_nothing_else(tmp_path):
    server = ApiServer(make_settings(tmp_path, ALLOW_ANONYMOUS=True, SITE_LOGO="https://cdn.example.org/a/logo.png",
                                     SITE_TITLE='A <"quoted"> site'))
    try:
        r = server.http.get(f"{server.url}/web/", timeout=30)
        assert r.status_code == 200
        assert 'src="https://cdn.example.org/a/logo.png"' in r.text
        assert "img-src 'self' https://cdn.example.org data: blob:" in r.headers["Content-Security-Policy"]
        assert "A &lt;&quot;quoted&quot;&gt; site" in r.text and '<"quoted">' not in r.text
        assert server.http.get(f"{server.url}/web/static/site-logo", timeout=30).status_code == 404
    finally:
        server.stop()


def test_without_a_logo_there_is_no_logo_route(api):
    r = api.http.get(f"{api.url}/web/static/site-logo", timeout=30)
    assert r.status_code == 404
    assert 'id="site-logo"' not in api.http.get(f"{api.url}/web/", timeout=30).text


def test_a_missing_logo_file_shows_no_logo(tmp_path):
    server = ApiServer(make_settings(tmp_path, ALLOW_ANONYMOUS=True, SITE_LOGO=str(tmp_path / "gone.png")))
    try:
        assert 'id="site-logo"' not in server.http.get(f"{server.url}/web/", timeout=30).text
        assert server.http.get(f"{server.url}/web/static/site-logo", timeout=30).status_code == 404
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["logo.png", "/etc/passwd", "/srv/logo.exe", "javascript:alert(1)",
                                   "https://a.example/x\"onerror=1", "ftp://a.example/logo.png"])
def test_a_bad_logo_setting_is_refused_at_start(value):
    with pytest.raises(ConfigurationError, match="SITE_LOGO"):
        Settings().with_overrides(SITE_LOGO=value)


def test_home_text_paragraphs():
    from opus.server.pages import home_paragraphs
    assert home_paragraphs(HOME_TEXT) == ["The Example Observatory reduces its <b>survey</b> data here.",
                                          "Questions: help@example.org"]
    assert home_paragraphs("") == [] and home_paragraphs("one\r\nline\r\n\r\ntwo") == ["one\r\nline".replace("\r\n", "\n"), "two"]
