"""The web client's job page in Debian's Chromium (Playwright), against a live server: progress while
a job is QUEUED or EXECUTING, results previewed at once, downloads, links and SAMP, the provenance
graph, and a PENDING job's parameters edited in the page (issue 15, points 3, 4, 5 and part of 6).

Each test fails on a console error or an uncaught exception, on a request to any host but the
server's (the SAMP hub is stubbed in the page), and on any 5xx.  Screenshots at desktop (1366x900)
and phone (390x844) widths go to ``$OPUS_ARTIFACTS_DIR/screenshots`` (``job-*.png``).
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
import requests
from browser import DESKTOP, PHONE, checked_page, shoot as shoot_both, sign_in, watched_context
from browser import browser  # noqa: F401  (a fixture)
from conftest import LiveServer, make_settings
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from opus.auth.admin import UserAdmin
from opus.server import pages
from opus.settings import REPO_ROOT
from opus.storage.userstore import UserStore

HUB = "http://localhost:21012/"

#: A job whose results are of every kind the page previews; it prints a line a second while it runs.
SHOWCASE_PY = r'''
import json, struct, sys, time, zlib
pause = float(sys.argv[1])
start, n = time.time(), 0
while time.time() - start < pause:
    print(f"step {n}", flush=True)
    print(f"note {n}", file=sys.stderr, flush=True)
    n += 1
    time.sleep(0.5)
open("table.csv", "w").write("name,ra,dec\nbeta,10.5,-3\nalpha,2,40\ngamma,100,7\n")
open("tabs.tsv", "w").write("x\ty\n3\t1\n1\t2\n")
open("cat.vot", "w").write('<?xml version="1.0"?><VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
    '<RESOURCE><TABLE name="stars"><FIELD name="id" datatype="int"/><FIELD name="mag" datatype="double" unit="mag"/>'
    '<DATA><TABLEDATA><TR><TD>1</TD><TD>12.5</TD></TR><TR><TD>2</TD><TD>9.25</TD></TR></TABLEDATA></DATA></TABLE>'
    '</RESOURCE></VOTABLE>')
json.dump({"b": [1, 2], "a": {"c": "d"}}, open("meta.json", "w"))
w = h = 64
raw = b"".join(b"\0" + bytes(v for x in range(w) for v in (x * 4, y * 4, 128)) for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open("picture.png", "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2",
         "NAXIS1  =                    4", "NAXIS2  =                    4", "OBJECT  = 'M31     '           / target", "END"]
open("count_map.fits", "wb").write("".join(c.ljust(80) for c in cards).ljust(2880).encode() + bytes(2880 * 3))
'''
SHOWCASE = {
    "name": "showcase", "description": "Results of every kind the job page previews.", "version": "1.0",
    "type": "test", "executionDuration": 120, "quote": 60,
    "parameters": {"pause": {"type": "float", "default": "0", "min": 0, "max": 100, "unit": "s",
                             "description": "Seconds to run, printing a line each 0.5 s"}},
    "generated": {
        "table": {"file": "table.csv", "content_type": "text/csv", "description": "A CSV table"},
        "tabs": {"file": "tabs.tsv", "content_type": "text/tab-separated-values", "description": "A TSV table"},
        "votable": {"file": "cat.vot", "content_type": "application/x-votable+xml", "description": "A VOTable"},
        "meta": {"file": "meta.json", "content_type": "application/json", "description": "Some JSON"},
        "picture": {"file": "picture.png", "content_type": "image/png", "description": "An image"},
        "count_map": {"file": "count_map.fits", "content_type": "application/fits", "role": "DL4 image",
                      "description": "A FITS image (four blocks)"}},
    "script": "exec \"$OPUS_PYTHON\" - \"$pause\" <<'PY'\n" + SHOWCASE_PY + "PY\n",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The OPUS server (sign-in required, two job slots), alice and bob, and the showcase definition."""
    tmp = tmp_path_factory.mktemp("webjob")
    jdl = tmp / "jdl"
    shutil.copytree(REPO_ROOT / "jdl", jdl)
    (jdl / "showcase.json").write_text(json.dumps(SHOWCASE))
    server = LiveServer(make_settings(tmp, JDL_DIR=str(jdl), ALLOW_ANONYMOUS=False, MAX_RUNNING_JOBS=2))
    assert any(r.rule.endswith("/progress") for r in server.app.routes)
    assert HUB.rstrip("/") in pages.PAGE_HEADERS["Content-Security-Policy"]
    admin = UserAdmin(UserStore(server.services.store.engine))
    server.tokens = {name: admin.add(name)[1] for name in ("alice", "bob")}
    yield server
    server.stop()


@pytest.fixture(scope="module")
def session(world, browser):  # noqa: F811
    """A context signed in as alice (through the sign-in form), with the clipboard allowed."""
    context = watched_context(browser, world.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=world.url)
    page = context.new_page()
    sign_in(page, world.url, "alice", world.tokens["alice"])
    page.close()
    yield context
    context.close()


@pytest.fixture
def page(session):
    with checked_page(session) as page:
        yield page


def shoot(page, name: str) -> None:
    """Screenshots of the page as it is, at desktop and at phone width (job-<name>-*.png)."""
    shoot_both(page, f"job-{name}", settle_ms=250)  # the graph refits after a resize (debounced 150 ms)


def rest(world, method: str, path: str, user: str = "alice", **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {world.tokens[user]}", **kwargs.pop("headers", {})}
    return requests.request(method, world.url + path, headers=headers, allow_redirects=False, timeout=30, **kwargs)


def create(world, jobname: str, **data) -> str:
    r = rest(world, "POST", f"/rest/{jobname}", data=data)
    assert r.status_code == 303, r.text
    return urlsplit(r.headers["Location"]).path  # /rest/<jobname>/<id>


def wait_phase_api(world, path: str, phase: str) -> dict:
    job = {"phase": phase}
    for _ in range(60):
        job = rest(world, "GET", path, params={"WAIT": "5", "PHASE": phase},
                  headers={"Accept": "application/json"}).json()
        if job["phase"] != phase:
            return job
    raise AssertionError(f"{path} stayed {phase}")


def finished_showcase(world) -> str:
    if not hasattr(world, "showcase"):
        path = create(world, "showcase", pause="0", PHASE="RUN")
        for phase in ("QUEUED", "EXECUTING"):
            job = wait_phase_api(world, path, phase)
        assert job["phase"] == "COMPLETED", job
        world.showcase = path
    return world.showcase


def page_of(world, path: str) -> str:
    return world.url + path.replace("/rest/", "/web/jobs/", 1)


# ---- 3. progress -----------------------------------------------------------------------------------
def test_executing_job_shows_time_against_limit_and_quote_and_a_live_tail(world, page):
    running = create(world, "showcase", pause="60", PHASE="RUN")
    try:
        page.goto(page_of(world, running))
        page.wait_for_selector('#job-phase[data-phase="EXECUTING"]')
        progress = page.locator("#job-progress")
        assert progress.is_visible()
        page.wait_for_selector("#tail-stdout:has-text('step 1')")
        first = page.locator("#tail-stdout").inner_text()
        page.wait_for_function("() => document.getElementById('tail-stdout').textContent.includes('step 4')")
        assert page.locator("#tail-stdout").inner_text().startswith(first.splitlines()[0])  # it grew, in place
        assert "note 2" in page.locator("#tail-stderr").inner_text()
        text = page.locator("#progress-elapsed").inner_text()
        assert re.search(r"Running for 0:\d\d of at most 2:00", text), text
        assert "expected to end by" in text
        assert int(page.locator("#job-progress .progress").get_attribute("aria-valuenow")) < 100
        shoot(page, "executing")
        # The tail the page reads is bounded: a Range request for the end of the file only.
        r = rest(world, "GET", running + "/stdout", headers={"Range": "bytes=-7"})
        assert r.status_code == 206 and len(r.content) == 7
        # Authorised as the job is: bob sees neither its progress nor its output.
        assert rest(world, "GET", running + "/progress", user="bob").status_code == 403
        assert rest(world, "GET", running + "/stdout", user="bob", headers={"Range": "bytes=-7"}).status_code == 403
        page.click("#job-abort")
        page.wait_for_selector('#job-phase[data-phase="ABORTED"]')
        assert progress.is_hidden()
    finally:
        rest(world, "POST", running + "/phase", data={"PHASE": "ABORT"})


def test_queued_job_shows_its_place_in_the_queue(world, page):
    busy = [create(world, "sleep", seconds="60", PHASE="RUN") for _ in range(2)]  # both slots
    try:
        for path in busy:
            wait_phase_api(world, path, "QUEUED")
        first = create(world, "dummy", PHASE="RUN")
        second = create(world, "dummy", PHASE="RUN")
        assert rest(world, "GET", second + "/progress").json()["queuePosition"] == 2
        page.goto(page_of(world, second))
        page.wait_for_selector('#job-phase[data-phase="QUEUED"]')
        page.wait_for_selector("#progress-where:has-text('Position 2 in the queue')")
        assert "Waiting to start" in page.locator("#progress-elapsed").inner_text()
        shoot(page, "queued")
        rest(world, "POST", first + "/phase", data={"PHASE": "ABORT"})
        page.wait_for_selector("#progress-where:has-text('Next in the queue')")
        rest(world, "POST", busy[0] + "/phase", data={"PHASE": "ABORT"})
        page.wait_for_selector('#job-phase[data-phase="COMPLETED"]')
        assert page.locator("#job-progress").is_hidden()
    finally:
        for path in busy:
            rest(world, "POST", path + "/phase", data={"PHASE": "ABORT"})


# ---- 4. results ---------------------------------------------------------------------------------------
def test_results_are_previewed_at_once(world, page):
    path = finished_showcase(world)
    ranges = []
    page.on("request", lambda r: r.url.endswith("/results/count_map") and ranges.append(r.headers.get("range")))
    page.goto(page_of(world, path))
    page.wait_for_selector('#job-phase[data-phase="COMPLETED"]')
    # An image, without a click.
    page.wait_for_function("() => document.querySelector('[data-result=picture] .result-preview img')?.naturalWidth === 64")
    # CSV as a table sorted by a click on a column (numbers as numbers), then the other way.
    table = page.locator("[data-result=table] table")
    table.wait_for()
    column = lambda: table.locator("tbody tr td:first-child").all_inner_texts()  # noqa: E731
    assert column() == ["beta", "alpha", "gamma"]
    table.get_by_role("button", name="Sort by ra").click()
    assert column() == ["alpha", "beta", "gamma"]  # 2 < 10.5 < 100, not "10.5" < "100" < "2"
    table.get_by_role("button", name="Sort by ra").click()
    assert column() == ["gamma", "beta", "alpha"]
    assert page.locator("[data-result=tabs] table tbody tr").count() == 2
    votable = page.locator("[data-result=votable] table")
    assert votable.locator("thead").inner_text().split() == ["id", "mag", "(mag)"]
    assert votable.locator("tbody tr").first.inner_text().split() == ["1", "12.5"]
    # FITS: the primary header, read from the first blocks only.
    cards = page.locator("[data-result=count_map] .fits-cards")
    cards.wait_for()
    assert "OBJECT  = 'M31     '" in cards.inner_text() and cards.inner_text().rstrip().endswith("END")
    assert ranges and all(r == "bytes=0-34559" for r in ranges), ranges
    # JSON, pretty-printed.
    assert '{\n  "b": [\n    1,' in page.locator("[data-result=meta] pre").inner_text()
    shoot(page, "results")


def test_downloads_are_named_and_links_copied(world, page):
    path = finished_showcase(world)
    page.goto(page_of(world, path))
    item = page.locator("[data-result=count_map]")
    item.locator("a.download").wait_for()
    with page.expect_download() as download:
        item.locator("a.download").click()
    assert download.value.suggested_filename == "count_map.fits"
    with page.expect_download() as download:
        page.locator("[data-result=table] a.download").click()
    assert download.value.suggested_filename == "table.csv"
    item.get_by_role("button", name="Copy link").click()
    page.wait_for_selector("[data-result=count_map] .copy-link:has-text('Copied')")
    href = rest(world, "GET", path, headers={"Accept": "application/json"}).json()["results"]
    expected = next(r["href"] for r in href if r["id"] == "count_map")
    assert page.evaluate("navigator.clipboard.readText()") == expected


def test_send_a_result_over_samp(world, page):
    """The Web Profile's calls, in order, to a hub stubbed in the page (no real hub, no outside request)."""
    path = finished_showcase(world)
    calls = []

    def hub(route):
        request = route.request
        cors = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "Content-Type"}
        if request.method == "OPTIONS":
            return route.fulfill(status=204, headers=cors)
        call = ET.fromstring(request.post_data)
        method = call.findtext("methodName")
        calls.append((method, call, request.url))
        value = ("<struct><member><name>samp.private-key</name><value><string>k-1</string></value></member>"
                 "<member><name>samp.self-id</name><value><string>c1</string></value></member></struct>"
                 if method == "samp.webhub.register" else "<string></string>")
        route.fulfill(status=200, headers={**cors, "Content-Type": "text/xml"},
                      body=f"<?xml version='1.0'?><methodResponse><params><param><value>{value}</value></param>"
                           "</params></methodResponse>")

    page.route(HUB + "**", hub)
    page.goto(page_of(world, path))
    send = page.locator("[data-result=votable] .samp-send")
    send.wait_for()
    assert send.inner_text() == "Send to TOPCAT/Aladin"
    assert page.locator("[data-result=table] .samp-send").count() == 0  # no SAMP message loads a CSV
    assert not calls  # nothing is sent to the hub before a click
    send.click()
    page.wait_for_selector("text=votable sent over SAMP.")
    assert [m for m, _c, _u in calls] == ["samp.webhub.register", "samp.webhub.declareMetadata",
                                          "samp.webhub.notifyAll", "samp.webhub.unregister"]
    assert all(u == HUB for _m, _c, u in calls)
    notify = calls[2][1]
    params = notify.findall("params/param/value")
    assert params[0].findtext("string") == "k-1"
    members = {m.findtext("name"): m.find("value") for m in params[1].iter("member")}
    assert members["samp.mtype"].findtext("string") == "table.load.votable"
    url = next(m.find("value/string").text for m in members["samp.params"].iter("member") if m.findtext("name") == "url")
    assert url.startswith(f"{world.url}/share/") and url.endswith("/cat.vot")  # a share link
    assert requests.get(url).status_code == 200  # that works without the owner's credentials
    # A FITS image goes to an image viewer (Aladin).
    page.locator("[data-result=count_map] .samp-send").click()
    page.wait_for_selector("text=count_map sent over SAMP.")
    assert "image.load.fits" in ET.tostring(calls[6][1], encoding="unicode")


# ---- 5. provenance ----------------------------------------------------------------------------------
def _labels(page) -> dict[str, str]:
    return page.evaluate("Object.fromEntries(OPUS.provgraph.cy.nodes().map((n) => [n.id(), n.data('label')]))")


def test_provenance_graph_in_the_page(world, page):
    path = finished_showcase(world)
    job_id = path.rsplit("/", 1)[1]
    page.goto(page_of(world, path))
    graph = page.locator("#provenance[data-nodes]")
    graph.wait_for()
    labels = _labels(page)
    assert "table\ntable.csv" in labels.values() and "count_map\ncount_map.fits" in labels.values()
    assert f"showcase\njob {job_id[:8]}…" in labels.values() and "pause = 0" in labels.values()
    assert "alice" in labels.values() and "showcase v1.0" in labels.values()
    assert not any(re.fullmatch(r"[0-9a-f]{16}|opus_\w+:.*", label) for label in labels.values()), labels
    # Layered left to right: parameter -> activity -> results.
    x = page.evaluate("Object.fromEntries(OPUS.provgraph.cy.nodes().map((n) => [n.data('label'), n.position('x')]))")
    activity = x[f"showcase\njob {job_id[:8]}…"]
    assert x["pause = 0"] < activity < x["table\ntable.csv"]
    # Details on click.  The result previews above the graph load on their own and move it down, and
    # Cytoscape reads its container's place again only a moment after the page scrolled: click where
    # the node is now, until Cytoscape has taken the click (selected it).
    page.wait_for_load_state("networkidle")
    graph.scroll_into_view_if_needed()
    where = ("(label) => { const cy = OPUS.provgraph.cy, box = cy.container().getBoundingClientRect();"
             " const p = cy.nodes().filter((n) => n.data('label') === label)[0].renderedPosition();"
             " return [box.x + p.x, box.y + p.y]; }")
    selected = "(label) => OPUS.provgraph.cy.$(':selected').some((n) => n.data('label') === label)"
    for _ in range(20):
        node = page.evaluate(where, "table\ntable.csv")
        page.mouse.click(node[0], node[1])
        try:
            page.wait_for_function(selected, arg="table\ntable.csv", timeout=500)
            break
        except PlaywrightTimeout:
            continue
    box = graph.bounding_box()
    details = page.locator("#prov-details")
    details.locator("text=voprov:sha256").wait_for()
    assert "table.csv" in details.inner_text()
    # Zoom with the wheel, pan with a drag on the background.
    zoom = page.evaluate("OPUS.provgraph.cy.zoom()")
    page.wait_for_timeout(400)  # Cytoscape ignores the wheel for 250 ms after the page scrolled
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.wheel(0, -400)
    page.wait_for_function("(z) => OPUS.provgraph.cy.zoom() > z", arg=zoom)
    pan = page.evaluate("OPUS.provgraph.cy.pan().x")
    page.mouse.down()
    page.mouse.move(box["x"] + 120, box["y"] + 40, steps=5)
    page.mouse.up()
    assert page.evaluate("OPUS.provgraph.cy.pan().x") > pan
    shoot(page, "provenance")
    # The downloads stay, and are readable: names, no attribute boxes, wider than tall.
    svg = rest(world, "GET", path + "/provenance", params={"format": "svg"})
    assert svg.status_code == 200 and b"table.csv" in svg.content and b"pause = 0" in svg.content
    assert b"sha256" not in svg.content
    root = ET.fromstring(svg.content)
    assert float(root.get("width").rstrip("pt")) > float(root.get("height").rstrip("pt"))
    hrefs = page.locator("#provenance-links a").evaluate_all("(links) => links.map((a) => a.getAttribute('href'))")
    assert any(h.endswith("/provenance?format=png") for h in hrefs)


def test_provsap_view_across_jobs_with_depth(world, page):
    first = finished_showcase(world)
    results = rest(world, "GET", first, headers={"Accept": "application/json"}).json()["results"]
    store = next(r["store"] for r in results if r["id"] == "table")
    second = create(world, "copy", infile=store, PHASE="RUN")
    for phase in ("QUEUED", "EXECUTING"):
        job = wait_phase_api(world, second, phase)
    assert job["phase"] == "COMPLETED", job
    third = create(world, "copy", infile=next(r["store"] for r in job["results"] if r["id"] == "copy"), PHASE="RUN")
    for phase in ("QUEUED", "EXECUTING"):
        job = wait_phase_api(world, third, phase)
    assert job["phase"] == "COMPLETED", job

    def activities():
        return sorted(v.split("\n")[0] for v in page.evaluate(
            "OPUS.provgraph.cy.nodes('[kind = \"activity\"]').map((n) => n.data('label'))"))

    def redrawn(select: str, value: str):
        # A handle, not a value: serialising the Cytoscape instance to Python (cyclic, large) took
        # minutes and could crash the renderer.
        before = page.evaluate_handle("OPUS.provgraph.cy")
        page.select_option(select, value)
        page.wait_for_function("(old) => OPUS.provgraph.cy !== old && !document.getElementById('provenance')"
                               ".hasAttribute('aria-busy')", arg=before)
        before.dispose()

    page.goto(page_of(world, third))
    page.wait_for_selector("#provenance[data-nodes]")
    assert activities() == ["copy"]
    redrawn("#prov-view", "BACK")
    assert activities() == ["copy"]  # one step back: the entity it used
    redrawn("#prov-depth", "2")
    assert activities() == ["copy", "copy"]  # two: the job that made that entity
    redrawn("#prov-depth", "ALL")
    assert activities() == ["copy", "copy", "showcase"]
    shoot(page, "provsap")
    page.goto(page_of(world, first))
    page.wait_for_selector("#provenance[data-nodes]")
    redrawn("#prov-view", "FORTH")
    redrawn("#prov-depth", "ALL")
    assert activities() == ["copy", "copy", "showcase"]


# ---- 6 (part). a PENDING job's parameters --------------------------------------------------------------
def test_pending_job_parameters_are_edited_in_the_page(world, page):
    path = create(world, "sleep", seconds="5")
    posts = []
    page.on("request", lambda r: r.method == "POST" and r.url.endswith("/parameters") and posts.append(r.post_data))
    page.goto(page_of(world, path))
    page.wait_for_selector('#job-phase[data-phase="PENDING"]')
    page.click("#params-edit")
    field = page.locator('[data-param="seconds"]')
    for bad, message in (("abc", "a number is needed"), ("999999", "above the maximum 86400"),
                         ("", "a value is needed")):
        field.locator("input").fill(bad)
        page.click("#params-save")
        assert field.locator(".invalid-feedback").inner_text().startswith(message)
        assert field.locator("input").evaluate("(i) => i.classList.contains('is-invalid')")
    assert posts == []  # nothing the user did not mean reached the server
    shoot(page, "edit-parameters")
    field.locator("input").fill("7")
    page.click("#params-save")
    page.wait_for_selector('#job-parameters tr[data-param="seconds"] td:has-text("7")')
    assert posts == ["seconds=7"]
    assert rest(world, "GET", path + "/parameters/seconds").text == "7"
    assert page.locator("#params-edit").is_visible()
    page.click("#job-run")
    page.wait_for_selector('#job-phase[data-phase="QUEUED"], #job-phase[data-phase="EXECUTING"]')
    assert page.locator("#params-edit").is_hidden()
    rest(world, "POST", path + "/phase", data={"PHASE": "ABORT"})


def test_progress_route_in_process(api):
    """…/progress without a browser: the owner's, 404 for an unknown job, the fields for a PENDING job."""
    from opus.server import progress_routes
    if not any(r.rule.endswith("/progress") for r in api.app.routes):
        progress_routes.routes.install(api.app)
    job = api.create("dummy")
    r = api.http.get(job + "/progress")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert r.json()["phase"] == "PENDING" and r.json()["queuePosition"] is None
    assert api.http.get(job.rsplit("/", 1)[0] + "/0123456789abcdef/progress").status_code == 404



def test_job_page_on_a_phone(world, page):
    """At 390 px: every result action fits on the screen, and the graph is layered top to bottom."""
    path = finished_showcase(world)
    page.set_viewport_size(PHONE)
    page.goto(page_of(world, path))
    page.wait_for_selector("#provenance[data-nodes]")
    rights = page.locator(".result-actions .btn").evaluate_all(
        "(buttons) => buttons.map((b) => b.getBoundingClientRect().right)")
    assert rights and max(rights) <= PHONE["width"], rights
    y = page.evaluate("Object.fromEntries(OPUS.provgraph.cy.nodes().map((n) => [n.data('label'), n.position('y')]))")
    activity = next(v for k, v in y.items() if k.startswith("showcase\njob"))
    assert y["pause = 0"] < activity < y["table\ntable.csv"]
    page.set_viewport_size(DESKTOP)
