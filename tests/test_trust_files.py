"""Files are served so that they cannot attack the browser (issue 11, finding 3).

A result, an upload, stdout/stderr or a /store file may hold anything a job or a stranger wrote.
Each is served with the type its job definition (or OPUS's own extension table) gives, never the
one a job's report, a client or a remote server claims; with ``nosniff`` and a sandboxing CSP; and
as an attachment unless its type is on a short inline list.  Every test here attacks through HTTP.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit

import pytest
import requests
from conftest import LiveServer, make_settings, run_job, signed_in_sessions
from helpers import wait_phase
from securityhelpers import stop_jobs

from opus.auth.identity import job_token, server_secret
EVIL = b"<html><body><script>fetch('/admin/users',{method:'POST'})</script></body></html>\n"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")
CSP = "sandbox; default-src 'none'"

#: A definition whose results try every way to reach the browser as a page.
HOSTILE = {
    "name": "hostile", "version": "1.0", "description": "Results that are web pages.", "executionDuration": 60,
    "generated": {
        "page": {"file": "page.html", "content_type": "text/html", "description": "declared text/html"},
        "vector": {"file": "vector.svg", "content_type": "image/svg+xml", "description": "declared SVG"},
        "pages": {"file": "*.htm*", "content_type": "text/html", "description": "a glob declared text/html"},
        "picture": {"file": "picture.png", "content_type": "image/png", "description": "a real image"},
        "data": {"file": "data.json", "content_type": "application/json", "description": "JSON"},
        "notes": {"file": "notes.txt", "content_type": "text/plain", "description": "plain text"},
    },
    "script": ("evil=\"<html><body><script>fetch('/admin/users',{method:'POST'})</script></body></html>\"\n"
               "printf '%s\\n' \"$evil\" > page.html\n"
               "printf '%s\\n' \"$evil\" > evil.html\n"
               "printf '<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>' > vector.svg\n"
               "printf '\\211PNG\\r\\n\\032\\n\\000\\000\\000\\rIHDR\\000\\000\\000\\001\\000\\000\\000\\001"
               "\\010\\006\\000\\000\\000' > picture.png\n"
               "printf '{\"a\": \"<script>alert(1)</script>\"}' > data.json\n"
               "printf '%s\\n' \"$evil\" > notes.txt\n"
               "printf '%s\\n' \"$evil\"\n"
               "printf '%s\\n' \"$evil\" >&2\n"),
}

#: A job that runs long enough to receive a forged report while it is EXECUTING.
SLOW = {
    "name": "slowpage", "version": "1.0", "description": "Sleeps; its reports are forged.", "executionDuration": 60,
    "generated": {
        "report": {"file": "report.txt", "content_type": "text/plain", "description": "plain text"},
        "extra": {"file": "extra_*", "description": "a glob with no declared type"},
    },
    "script": "sleep 30\n",
}


def hostile_headers(r: requests.Response) -> None:
    """What every served file carries, whatever its type."""
    assert r.status_code in (200, 206), (r.status_code, r.text[:200])
    assert r.headers.get("X-Content-Type-Options") == "nosniff", r.headers
    assert r.headers.get("Content-Security-Policy") == CSP, r.headers


def assert_attachment(r: requests.Response, filename: str) -> None:
    hostile_headers(r)
    ctype = r.headers["Content-Type"].lower()
    assert "html" not in ctype and "javascript" not in ctype, ctype
    assert r.headers.get("Content-Disposition") == f'attachment; filename="{filename}"', r.headers


def assert_inline(r: requests.Response, ctype: str, filename: str) -> None:
    hostile_headers(r)
    assert r.headers["Content-Type"].split(";")[0].strip() == ctype, r.headers
    assert r.headers.get("Content-Disposition") == f'inline; filename="{filename}"', r.headers


@pytest.fixture
def srv(tmp_path):
    settings = make_settings(tmp_path, MAX_RUNNING_JOBS=4, INPUT_URL_HOSTS=("127.0.0.1",))
    jdl = tmp_path / "jdl-copy"
    for definition in (HOSTILE, SLOW):
        (jdl / f"{definition['name']}.json").write_text(json.dumps(definition))
    server = LiveServer(settings)
    server_secret(server.settings)
    server.as_ = signed_in_sessions(server)
    yield server
    server.stop()


def results_of(http, url: str) -> dict[str, dict]:
    return {r["id"]: r for r in http.get(url + "/results", headers={"Accept": "application/json"}).json()}


# ---- results ---------------------------------------------------------------------------------------------------
def test_results_declared_or_named_as_html_never_reach_an_admins_browser_as_a_page(srv):
    url = run_job(srv.as_["alice"], srv.url, "hostile")
    admin = srv.as_["root"]  # the victim: an admin opening alice's results
    results = results_of(admin, url)
    assert {"page", "vector", "evil.html", "picture", "data", "notes"} <= set(results)
    for rid, fname in (("page", "page.html"), ("vector", "vector.svg"), ("evil.html", "evil.html")):
        r = admin.get(results[rid]["href"])
        assert_attachment(r, fname)
        assert r.content.startswith(b"<")
        assert_attachment(admin.get(results[rid]["store"]), fname)
        assert_attachment(admin.get(f"{srv.url}/store", params={"ID": results[rid]["entity"]}), fname)
    # the glob's match has the type of OPUS's extension table, not the text/html the glob declares
    assert results["evil.html"]["mimeType"] == "application/octet-stream"
    assert admin.get(results["evil.html"]["href"]).headers["Content-Type"] == "application/octet-stream"
    # a definition's own text/html is kept as a description, but never served as such
    assert admin.get(results["page"]["href"]).headers["Content-Type"] == "application/octet-stream"
    # HEAD and ranges keep the headers
    r = admin.head(results["page"]["href"])
    assert r.status_code == 200 and r.headers["Content-Disposition"].startswith("attachment")
    r = admin.get(results["page"]["href"], headers={"Range": "bytes=0-5"})
    assert r.status_code == 206 and r.content == EVIL[:6]
    assert_attachment(r, "page.html")


def test_images_json_and_plain_text_are_inline_and_named(srv):
    url = run_job(srv.as_["alice"], srv.url, "hostile")
    alice = srv.as_["alice"]
    results = results_of(alice, url)
    r = alice.get(results["picture"]["href"])
    assert_inline(r, "image/png", "picture.png")
    assert r.content == PNG
    assert_inline(alice.get(results["picture"]["store"]), "image/png", "picture.png")
    r = alice.get(results["data"]["href"])
    assert_inline(r, "application/json", "data.json")
    r = alice.get(results["notes"]["href"])
    assert_inline(r, "text/plain", "notes.txt")
    assert "charset=" in r.headers["Content-Type"].lower()
    # the store keeps its Digest
    r = alice.get(results["notes"]["store"])
    assert r.headers["Digest"] == "sha-256=" + hashlib.sha256(EVIL).hexdigest()


def test_stdout_and_stderr_are_plain_text_that_cannot_run(srv):
    url = run_job(srv.as_["alice"], srv.url, "hostile")
    for name in ("stdout", "stderr"):
        r = srv.as_["root"].get(f"{url}/{name}")
        assert r.content == EVIL
        assert_inline(r, "text/plain", f"{name}.log")
        assert "charset=" in r.headers["Content-Type"].lower()


def test_a_forged_report_cannot_choose_the_content_type(srv):
    alice = srv.as_["alice"]
    url = alice.post(f"{srv.url}/rest/slowpage", data={"PHASE": "RUN"}, allow_redirects=False).headers["Location"]
    try:
        wait_phase(alice, url, "EXECUTING")
        job_id = url.rsplit("/", 1)[1]
        # what a compromised wrapper could have put in the result area before reporting
        results_dir = srv.settings.jobs_dir / job_id / "results"
        results_dir.mkdir(exist_ok=True)
        for name in ("report.txt", "extra_page.html", "undeclared.html"):
            (results_dir / name).write_bytes(EVIL)
        claimed = [{"result_id": "report", "file_name": "report.txt", "content_type": "text/html"},
                   {"result_id": "extra_page.html", "file_name": "extra_page.html", "content_type": "text/html"},
                   {"result_id": "undeclared", "file_name": "undeclared.html", "content_type": "text/html"}]
        for item in claimed:
            item.update(size=len(EVIL), sha256=hashlib.sha256(EVIL).hexdigest())
        r = requests.post(f"{srv.url}/handler/job_event", json={
            "job_id": job_id, "token": job_token(srv.settings, job_id), "phase": "COMPLETED", "results": claimed})
        assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
        results = results_of(alice, url)
        # recorded from the definition (named result) or the extension table, never the report
        assert results["report"]["mimeType"] == "text/plain"
        assert results["extra_page.html"]["mimeType"] == "application/octet-stream"
        assert results["undeclared"]["mimeType"] == "application/octet-stream"
        assert "text/html" not in alice.get(url).text
        admin = srv.as_["root"]
        assert_inline(admin.get(results["report"]["href"]), "text/plain", "report.txt")
        for rid, fname in (("extra_page.html", "extra_page.html"), ("undeclared", "undeclared.html")):
            assert_attachment(admin.get(results[rid]["href"]), fname)
            assert_attachment(admin.get(results[rid]["store"]), fname)
    finally:
        stop_jobs(srv, [url])


def test_old_records_with_a_hostile_type_are_served_safely(srv):
    """A result recorded before this fix with the report's text/html is not served as HTML."""
    url = run_job(srv.as_["alice"], srv.url, "dummy", {"text": EVIL.decode().strip()})
    job_id = url.rsplit("/", 1)[1]
    from sqlalchemy import update

    from opus.storage.tables import entities, results
    with srv.services.store.engine.begin() as conn:
        conn.execute(update(results).where(results.c.job_id == job_id).values(content_type="text/html"))
        conn.execute(update(entities).where(entities.c.generated_by == job_id).values(content_type="text/html"))
    res = results_of(srv.as_["root"], url)["output"]
    # the definition says text/plain: that is what is served
    assert_inline(srv.as_["root"].get(res["href"]), "text/plain", "output.txt")
    assert_attachment(srv.as_["root"].get(res["store"]), "output.txt")


# ---- uploads and fetched inputs ---------------------------------------------------------------------------------
def test_an_upload_sent_as_html_is_served_as_an_attachment(srv):
    alice = srv.as_["alice"]
    url = run_job(alice, srv.url, "copy", files={"infile": ("x.html", EVIL, "text/html")})
    admin = srv.as_["root"]
    r = admin.get(f"{url}/parameters/infile")
    assert r.content == EVIL
    assert_attachment(r, "x.html")
    assert r.headers["Content-Type"] == "application/octet-stream"
    # its entity in the store: typed by OPUS's extension table, not by the client
    job_id = url.rsplit("/", 1)[1]
    (_job, _role, entity_id), = srv.services.entities.used_by([job_id])
    meta = admin.get(f"{srv.url}/store/{entity_id}").json()
    assert meta["contentType"] == "application/octet-stream"
    assert_attachment(admin.get(meta["href"]), "x.html")
    assert_attachment(admin.get(results_of(admin, url)["copy"]["href"]), "copy.dat")


def test_an_upload_with_a_non_ascii_name_gets_an_rfc_6266_filename(srv):
    alice = srv.as_["alice"]
    r = alice.post(f"{srv.url}/rest/copy", files={"infile": ("données.png", PNG, "text/html")}, allow_redirects=False)
    url = r.headers["Location"]
    r = alice.get(f"{url}/parameters/infile")
    hostile_headers(r)
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["Content-Disposition"] == (
        "inline; filename=\"donn_es.png\"; filename*=UTF-8''donn%C3%A9es.png")


class _HtmlServer(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(EVIL)))
        self.end_headers()
        self.wfile.write(EVIL)

    def log_message(self, *args):
        pass


def test_a_fetched_input_does_not_keep_the_remote_servers_type(srv):
    remote = HTTPServer(("127.0.0.1", 0), _HtmlServer)
    threading.Thread(target=remote.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        alice = srv.as_["alice"]
        page = f"http://127.0.0.1:{remote.server_port}/page.html"
        url = run_job(alice, srv.url, "copy", {"infile": page})
        (_job, _role, entity_id), = srv.services.entities.used_by([url.rsplit("/", 1)[1]])
        meta = srv.as_["root"].get(f"{srv.url}/store/{entity_id}").json()
        assert meta["source"] == page and meta["contentType"] == "application/octet-stream"
        assert_attachment(srv.as_["root"].get(meta["href"]), "page.html")
    finally:
        remote.shutdown()
        remote.server_close()


# ---- a separate origin for files -----------------------------------------------------------------------------
def test_results_base_url_points_file_links_to_another_origin(tmp_path):
    other = "https://results.example.org/opus"
    server = LiveServer(make_settings(tmp_path, RESULTS_BASE_URL=other + "/"))
    try:
        http = signed_in_sessions(server, (("alice", {}),))["alice"]
        url = run_job(http, server.url, "copy", files={"infile": ("in.txt", b"hello\n")})
        job_path = urlsplit(url).path
        xml = http.get(url).text
        assert f'xlink:href="{other}{job_path}/results/copy"' in xml
        assert f">{other}{job_path}/parameters/infile<" in xml
        doc = http.get(url, headers={"Accept": "application/json"}).json()
        copy = next(r for r in doc["results"] if r["id"] == "copy")
        assert copy["href"] == f"{other}{job_path}/results/copy"
        assert copy["store"].startswith(f"{other}/store/{copy['entity']}/")
        assert doc["href"] == url  # the job itself stays on the main origin
        meta = http.get(f"{server.url}/store/{copy['entity']}").json()
        assert meta["href"] == f"{other}/store/{copy['entity']}/copy.dat"
        assert meta["generatedBy"]["href"] == url
        # the other origin serves the same routes (here: the same server, reached by path)
        for link in (copy["href"], copy["store"], f"{other}{job_path}/parameters/infile"):
            r = http.get(server.url + link[len(other):])
            assert r.status_code == 200 and r.content == b"hello\n"
        # a store link as the API shows it (on the files origin) chains into a new job, unfetched
        chained = run_job(http, server.url, "copy", data={"infile": copy["store"]})
        assert http.get(chained + "/results/copy").content == b"hello\n"
    finally:
        server.stop()


def test_results_base_url_must_be_an_http_url(tmp_path):
    from opus.errors import ConfigurationError
    with pytest.raises(ConfigurationError, match="RESULTS_BASE_URL"):
        make_settings(tmp_path, RESULTS_BASE_URL="results.example.org")


# ---- the rules themselves ----------------------------------------------------------------------------------------
def test_the_extension_table_is_small_and_never_names_active_content():
    from opus.jobdef.content_types import type_by_extension
    assert type_by_extension("a.FITS") == "application/fits"
    assert type_by_extension("a.png") == "image/png"
    assert type_by_extension("a.txt") == "text/plain"
    for name in ("a.html", "a.htm", "a.svg", "a.xhtml", "a.js", "a.mjs", "noext", "a.", ".png.html", ""):
        assert type_by_extension(name) == "application/octet-stream", name


def test_served_types_drop_markup_scripts_and_malformed_values():
    from opus.jobdef.content_types import served_type
    for hostile in ("text/html", "TEXT/HTML; charset=utf-8", "application/xhtml+xml", "text/javascript",
                    "application/x-javascript", "text/x-server-parsed-html", "text/plain\r\nX-A: b",
                    "nonsense", "", None, "text/plain, text/html"):
        assert served_type(hostile) == "application/octet-stream", hostile
    assert served_type("image/svg+xml") == "image/svg+xml"  # for <img> previews; never inline
    assert served_type("application/x-votable+xml") == "application/x-votable+xml"
    assert served_type("Image/PNG") == "image/png"


def test_content_disposition_quotes_and_encodes():
    from opus.server.files import content_disposition
    assert content_disposition("a.png", inline=True) == 'inline; filename="a.png"'
    assert content_disposition('x"; y=.html', inline=False) == (
        "attachment; filename=\"x__ y=.html\"; filename*=UTF-8''x%22%3B%20y%3D.html")
    assert content_disposition("../../etc/passwd", inline=False) == 'attachment; filename="passwd"'
    assert content_disposition("", inline=False) == 'attachment; filename="file"'
    assert content_disposition("é\r\n.txt", inline=False) == (
        "attachment; filename=\"_.txt\"; filename*=UTF-8''%C3%A9.txt")
