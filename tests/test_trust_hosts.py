"""Callbacks go only where the configuration says; absolute URLs use a Host only when it is allowed.

Finding 2 of issue 11: with BASE_URL and CALLBACK_URL unset, the wrapper POSTed the job's token to
the URL of the request that started the job, so ``Host: 127.0.0.1:PORT/any/path?`` made the machine
running the job send its HMAC token to any host, port and path.  These tests run servers WITHOUT
CALLBACK_URL (conftest's LiveServer sets it) that record their listening address the way
``opus serve`` does, and check with a canary HTTP listener that nothing ever reaches a host chosen
by a client.
"""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from conftest import LiveServer, make_settings
from helpers import ME, wait_final, wait_for
from lxml import etree

from opus import listen
from opus.settings import REPO_ROOT
from opus.service.waitslots import THREADS_ENV
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
PYTHON = Path(sys.executable)


# ---- the canary and the servers -------------------------------------------------------------------------
class Canary:
    """An HTTP listener on a port of its own that records every request it receives."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                received.append((self.command, self.path, self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = _record

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_port
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class ListeningServer(LiveServer):
    """LiveServer without CALLBACK_URL: it records its own listening address as ``opus serve`` does
    (``record=False``: none, as under mod_wsgi)."""

    def __init__(self, settings, record: bool = True):
        self.record = record
        super().__init__(settings)

    def configure(self, settings):
        settings = listen.with_listen_address(settings, "127.0.0.1", self.port) if self.record else settings
        assert settings.CALLBACK_URL is None
        return settings


@pytest.fixture
def canary():
    c = Canary()
    yield c
    c.stop()


@pytest.fixture
def server(tmp_path):
    s = ListeningServer(make_settings(tmp_path, MAX_RUNNING_JOBS=4))
    yield s
    s.stop()


def hostile_hosts(canary_port: int) -> list[str]:
    return [f"127.0.0.1:{canary_port}/any/path?", f"127.0.0.1:{canary_port}", "evil.example.org",
            f"evil.example.org:{canary_port}", "user@evil.example.org", "evil.example.org/x#",
            "a b", "[::1]:1/x", "localhost:1"]


def job_path(location: str) -> str:
    """/rest/<name>/<id> of a job's Location, wherever the Location points."""
    return re.search(r"/rest/[a-z_]+/[0-9a-f]+$", location).group(0)


# ---- callbacks ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["PHASE=RUN at creation", "RUN afterwards"])
def test_a_hostile_host_does_not_choose_where_the_job_calls_back(server, canary, how):
    """The job started by a request with a hostile Host still reports to the server itself: the
    canary on the Host's port gets nothing (no token) and the job completes."""
    host = f"127.0.0.1:{canary.port}/any/path?"
    if how == "PHASE=RUN at creation":
        r = requests.post(f"{server.url}/rest/dummy", data={"text": "hi", "PHASE": "RUN"},
                          headers={"Host": host}, allow_redirects=False)
        assert r.status_code == 303, r.text
    else:
        r = requests.post(f"{server.url}/rest/dummy", data={"text": "hi"}, allow_redirects=False)
        assert r.status_code == 303, r.text
        job_url = r.headers["Location"]
        r = requests.post(f"{job_url}/phase", data={"PHASE": "RUN"}, headers={"Host": host},
                          allow_redirects=False)
        assert r.status_code == 303, r.text
    job_url = server.url + job_path(r.headers["Location"])
    assert wait_final(server.http, job_url) == "COMPLETED", server.http.get(job_url).text
    assert canary.received == []
    spec = (server.settings.jobs_dir / job_url.rsplit("/", 1)[1] / "job.json").read_text()
    assert f'"callback_url": "{server.url}"' in spec


def test_without_a_known_address_jobs_are_refused_with_a_clear_error(tmp_path, canary):
    """No CALLBACK_URL, no BASE_URL, no listening address (mod_wsgi): the job is not sent to a guessed
    address, it ends in ERROR naming the settings, and /availability says why."""
    s = ListeningServer(make_settings(tmp_path), record=False)
    try:
        r = requests.post(f"{s.url}/rest/dummy", data={"PHASE": "RUN"},
                          headers={"Host": f"localhost:{canary.port}"}, allow_redirects=False)
        assert r.status_code == 303, r.text
        job_url = s.url + job_path(r.headers["Location"])
        assert wait_final(s.http, job_url) == "ERROR"
        summary = etree.fromstring(s.http.get(job_url).content).find(
            "{http://www.ivoa.net/xml/UWS/v1.0}errorSummary")
        assert "CALLBACK_URL" in etree.tostring(summary).decode()
        assert canary.received == []
        avail = s.http.get(f"{s.url}/availability").text
        assert "<vosi:available>false</vosi:available>" in avail and "CALLBACK_URL" in avail
    finally:
        s.stop()


def test_a_configured_callback_url_is_used(tmp_path, canary):
    """CALLBACK_URL wins over everything (here it names the server itself)."""
    settings = make_settings(tmp_path)
    s = ListeningServer(settings)
    try:
        s.settings = s.settings.with_overrides(CALLBACK_URL=s.url + "/")
        assert listen.callback_base(s.settings) == s.url
    finally:
        s.stop()


# ---- absolute URLs in responses ---------------------------------------------------------------------------
def test_a_hostile_host_is_not_echoed_into_locations_and_links(server, canary):
    for host in hostile_hosts(canary.port):
        r = requests.post(f"{server.url}/rest/dummy", headers={"Host": host}, allow_redirects=False)
        assert r.status_code == 303, (host, r.text)
        assert r.headers["Location"].startswith(server.url + "/rest/dummy/"), (host, r.headers["Location"])
        listing = requests.get(f"{server.url}/rest/dummy", headers={"Host": host})
        assert listing.status_code == 200, (host, listing.text)
        hrefs = [ref.get(XLINK_HREF) for ref in etree.fromstring(listing.content)]
        assert hrefs and all(h.startswith(server.url + "/rest/dummy/") for h in hrefs), (host, hrefs)
        caps = requests.get(f"{server.url}/capabilities", headers={"Host": host}).text
        assert "evil" not in caps and f":{canary.port}" not in caps and "any/path" not in caps, host


def test_the_listening_address_and_localhost_names_are_allowed(server):
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}",
                 f"LOCALHOST:{server.port}"):
        r = requests.post(f"{server.url}/rest/dummy", headers={"Host": host}, allow_redirects=False)
        assert r.headers["Location"].lower().startswith(f"http://{host.lower()}/rest/dummy/"), host


def test_allowed_hosts_are_honoured(tmp_path):
    s = ListeningServer(make_settings(tmp_path, ALLOWED_HOSTS=["uws.example.org", ".example.net",
                                                              "other.example.com:8443"]))
    try:
        honoured = ["uws.example.org", "uws.example.org:9999", "example.net", "a.b.example.net:81",
                    "other.example.com:8443"]
        refused = ["other.example.com", "other.example.com:8444", "evilexample.net", "uws.example.org.evil",
                   "uws.example.org/x?"]
        for host in honoured + refused:
            r = requests.post(f"{s.url}/rest/dummy", headers={"Host": host}, allow_redirects=False)
            expected = f"http://{host}" if host in honoured else s.url
            assert r.headers["Location"].startswith(expected + "/rest/dummy/"), (host, r.headers["Location"])
    finally:
        s.stop()


def test_a_star_allows_any_well_formed_host_only(tmp_path):
    s = ListeningServer(make_settings(tmp_path, ALLOWED_HOSTS=("*",)))
    try:
        r = requests.post(f"{s.url}/rest/dummy", headers={"Host": "anything.example:1"},
                          allow_redirects=False)
        assert r.headers["Location"].startswith("http://anything.example:1/rest/dummy/")
        r = requests.post(f"{s.url}/rest/dummy", headers={"Host": "x.example/evil?"}, allow_redirects=False)
        assert r.headers["Location"].startswith(s.url + "/rest/dummy/")
    finally:
        s.stop()


def test_base_url_wins_over_any_host(tmp_path):
    s = ListeningServer(make_settings(tmp_path, BASE_URL="https://uws.example.org/opus/"))
    try:
        for host in ("evil.example.org", f"localhost:{s.port}"):
            r = requests.post(f"{s.url}/rest/dummy", headers={"Host": host}, allow_redirects=False)
            assert r.headers["Location"].startswith("https://uws.example.org/opus/rest/dummy/")
    finally:
        s.stop()


def test_without_a_known_address_an_unknown_host_gets_a_clear_400(tmp_path):
    """mod_wsgi without BASE_URL: nothing safe to fall back to; localhost clients still work."""
    s = ListeningServer(make_settings(tmp_path), record=False)
    try:
        r = requests.post(f"{s.url}/rest/dummy", headers={"Host": "evil.example.org"}, allow_redirects=False)
        assert r.status_code == 400
        assert "BASE_URL" in r.text and "ALLOWED_HOSTS" in r.text and "evil" not in r.text
        r = requests.post(f"{s.url}/rest/dummy", allow_redirects=False)
        assert r.status_code == 303 and r.headers["Location"].startswith(s.url + "/rest/dummy/")
    finally:
        s.stop()


# ---- the listening address ------------------------------------------------------------------------------
@pytest.mark.parametrize("binds, url", [
    (["127.0.0.1:8080"], "http://127.0.0.1:8080"),
    (["0.0.0.0:8080"], "http://127.0.0.1:8080"),
    ([":8080"], "http://127.0.0.1:8080"),
    (["[::]:8080"], "http://[::1]:8080"),
    (["[::1]:9000"], "http://[::1]:9000"),
    (["tcp://10.0.0.5:81"], "http://10.0.0.5:81"),
    (["https://tcp://10.0.0.5:81"], "https://10.0.0.5:81"),
    (["https://[::]:8443"], "https://[::1]:8443"),
    (["https://unix:/run/opus.sock"], None),
    (["opus.example.org:8080"], "http://opus.example.org:8080"),
    (["localhost"], "http://localhost:8000"),  # gunicorn's default port
    (["unix:/run/opus.sock", "fd://3", "10.1.2.3:8443"], "http://10.1.2.3:8443"),
    (["unix:/run/opus.sock"], None),
    (["fd://3"], None),
    ([], None),
    (["127.0.0.1:0"], None),
    (["127.0.0.1:99999"], None),
    (["evil/x:80"], None),
])
def test_url_for_binds(binds, url):
    assert listen.url_for_binds(binds) == url


def test_gunicorn_hook_publishes_the_bind_list(monkeypatch, tmp_path):
    """gunicorn.conf.py's on_starting puts cfg.bind into OPUS_LISTEN_ADDRESS for the workers."""
    import runpy
    from types import SimpleNamespace

    monkeypatch.setenv(listen.ENV, "")  # restored (removed) after the test
    monkeypatch.setenv(THREADS_ENV, "")  # likewise: a worker's threads would limit this process's WAITs
    conf = runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))
    logged = []
    server = SimpleNamespace(cfg=SimpleNamespace(bind=["unix:/x.sock", "0.0.0.0:8123"], worker_class_str="gthread",
                                                 threads=1000),
                             log=SimpleNamespace(warning=lambda *a: logged.append(a), info=lambda *a: None))
    conf["on_starting"](server)
    assert os.environ[listen.ENV].splitlines() == ["unix:/x.sock", "0.0.0.0:8123"]
    assert listen.callback_base(make_settings(tmp_path)) == "http://127.0.0.1:8123"
    assert os.environ[THREADS_ENV] == "1000"


@pytest.mark.parametrize("worker_class, threads, published", [
    ("gthread", 8, "8"), ("gunicorn.workers.gthread.ThreadWorker", 32, "32"), ("sync", 1, "1"),
    ("gevent", 1, None), ("gunicorn.workers.ggevent.GeventWorker", 1000, None)])
def test_gunicorn_hook_publishes_the_request_threads(monkeypatch, worker_class, threads, published):
    """on_starting and on_reload tell OPUS each worker's request threads (opus.service.waitslots): the
    threads of gthread, one for sync, nothing for workers that do not tie a request to a thread."""
    import runpy
    from types import SimpleNamespace

    monkeypatch.setenv(listen.ENV, "")
    monkeypatch.setenv(THREADS_ENV, "999")  # a value from before: replaced, or removed
    conf = runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))
    server = SimpleNamespace(cfg=SimpleNamespace(bind=["127.0.0.1:8080"], worker_class_str=worker_class,
                                                 threads=threads),
                             log=SimpleNamespace(warning=lambda *a: None, info=lambda *a: None))
    for hook in ("on_starting", "on_reload"):
        conf[hook](server)
        assert os.environ.get(THREADS_ENV) == published


def _opus(*args, env=None, **kw):
    return subprocess.run([str(PYTHON), "-m", "opus.cli", *args], check=False, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, env=env, **kw)


def _settings_file(tmp_path: Path, **values) -> Path:
    values = dict(DATA_DIR=str(tmp_path / "var"), MAINTENANCE_INTERVAL=0, KILL_GRACE=0.5,
                  CALLBACK_RETRY_SECONDS=20, SERVICE_USER=ME, **values)
    path = tmp_path / "settings.py"
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
    return path


def test_opus_serve_calls_back_its_own_address(tmp_path, canary):
    """The real `opus serve` (no CALLBACK_URL): a job started with a hostile Host reports to it."""
    import socket

    settings = _settings_file(tmp_path)
    assert _opus("--settings", str(settings), "init").returncode == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(PYTHON), "-m", "opus.cli", "--settings", str(settings), "serve",
                             "--port", str(port)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        def answering() -> bool:
            assert proc.poll() is None, proc.stdout.read()
            try:
                return requests.get(f"{url}/availability", timeout=2) is not None
            except requests.ConnectionError:
                return False

        wait_for(answering, 30, "opus serve to answer")
        r = requests.post(f"{url}/rest/dummy", data={"PHASE": "RUN"},
                          headers={"Host": f"127.0.0.1:{canary.port}/steal?"}, allow_redirects=False)
        assert r.status_code == 303 and r.headers["Location"].startswith(f"{url}/rest/dummy/"), r.headers
        assert wait_final(requests.Session(), r.headers["Location"]) == "COMPLETED"
        assert canary.received == []
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_gunicorn_without_callback_url_calls_back_its_bind_address(tmp_path, canary):
    """The real gunicorn with gunicorn.conf.py and no CALLBACK_URL: the hook's bind address is used."""
    from gunicorn_server import GunicornServer

    server = GunicornServer(tmp_path, workers=1, CALLBACK_URL=None).start()
    try:
        r = requests.post(f"{server.url}/rest/dummy", data={"PHASE": "RUN"},
                          headers={"Host": f"127.0.0.1:{canary.port}/steal?"}, allow_redirects=False)
        assert r.status_code == 303 and r.headers["Location"].startswith(f"{server.url}/rest/dummy/")
        assert wait_final(requests.Session(), r.headers["Location"]) == "COMPLETED"
        assert canary.received == []
    finally:
        server.stop()


def test_opus_check_says_where_callbacks_go(tmp_path):
    done = _opus("--settings", str(_settings_file(tmp_path)), "check")
    assert re.search(r"callbacks.*CALLBACK_URL", done.stdout), done.stdout
    (tmp_path / "b").mkdir()
    settings = _settings_file(tmp_path / "b", CALLBACK_URL="http://opus-host:8080")
    done = _opus("--settings", str(settings), "check")
    assert "http://opus-host:8080/handler/job_event" in done.stdout, done.stdout


def test_allowed_hosts_entries_are_checked(tmp_path):
    from opus.errors import ConfigurationError
    for bad in ("evil/x", "a b", "http://x", "x:port", ""):
        with pytest.raises(ConfigurationError, match="ALLOWED_HOSTS"):
            make_settings(tmp_path, ALLOWED_HOSTS=(bad,))
