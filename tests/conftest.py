"""Shared fixtures: settings in a temporary directory, the two databases, the servers under test.

Two servers, one interface (url, http, settings, services, create, wait_final):

* ``api`` / ApiServer: the app called in-process (tests/inprocess.py: WebTest, no socket), jobs run
  by tests/fakes.FakeManager through the real completion service.  For API tests that are about
  neither HTTP transport nor execution: most of them, and fast.
* ``live`` / LiveServer: real HTTP in a thread, the real manager and job wrapper.  For tests about
  execution (sandbox, scripts, processes, restarts) and transport (Host, sockets, clients).
Waiting is tests/helpers.py's (WAIT long-polls, ``wait_for``), nothing else.

PostgreSQL tests use the server named by OPUS_TEST_PG_URL (scripts/test.sh starts one).  Without
it they are skipped -- except when OPUS_REQUIRE_PG=1 (CI), where a missing server is a failure.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


import pytest
import requests
from sqlalchemy import text

from fakes import FakeManager
from helpers import wait_final
import inprocess
from opus.server import create_app
from opus.service.root import Root
from opus.settings import REPO_ROOT, load_settings
from opus.storage import JobStore, create_engine_for, upgrade_schema

#: The IVOA schemas and UWS samples the tests validate against, kept in the repository
#: (tests/data/uws/README.md says where each comes from).
UWS_DATA = Path(__file__).resolve().parent / "data" / "uws"
UWS_XSD = UWS_DATA / "uws-1.1-offline.xsd"


def pg_url_or_skip() -> str:
    url = os.environ.get("OPUS_TEST_PG_URL")
    if not url:
        if os.environ.get("OPUS_REQUIRE_PG") == "1":
            pytest.fail("OPUS_REQUIRE_PG=1 but OPUS_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL: set OPUS_TEST_PG_URL (scripts/test.sh does)")
    return url


def reset_postgres(url: str) -> None:
    """Empty the test database: drop and recreate the public schema."""
    engine = create_engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL, on an empty schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'opus.sqlite'}"
    url = pg_url_or_skip()
    reset_postgres(url)
    return url


@pytest.fixture
def db_engine(database_url):
    """An engine on the test's database (``database_url``: SQLite, then PostgreSQL), schema current."""
    engine = create_engine_for(database_url)
    upgrade_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def job_store(db_engine):
    """A JobStore on the test's database (``db_engine``)."""
    return JobStore(db_engine)


def make_settings(tmp_path: Path, **overrides):
    values = dict(DATA_DIR=str(tmp_path / "var"), MAINTENANCE_INTERVAL=0, KILL_GRACE=0.5,
                  CALLBACK_RETRY_SECONDS=20)
    values.update(overrides)
    if "JDL_DIR" not in overrides:
        # A copy: proposals, validations and deletions made by tests never touch the checkout's jdl/.
        jdl = tmp_path / "jdl-copy"
        if not jdl.exists():
            shutil.copytree(REPO_ROOT / "jdl", jdl)
        values["JDL_DIR"] = str(jdl)
    return load_settings(None, **values)


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Conveniences:
    """What tests do with a server, whatever carries the requests: create jobs, wait for their end."""

    url: str
    http: requests.Session

    def create(self, jobname="dummy", data=None, files=None, run=False) -> str:
        data = dict(data or {})
        if run:
            data["PHASE"] = "RUN"
        r = self.http.post(f"{self.url}/rest/{jobname}", data=data, files=files, allow_redirects=False)
        assert r.status_code == 303, r.text
        return r.headers["Location"]

    def wait_final(self, job_url: str, timeout: float = 60) -> str:
        return wait_final(self.http, job_url, timeout)

    def session(self) -> requests.Session:
        """A new client session (its own cookies and credentials) to this server."""
        return requests.Session()


class LiveServer(_Conveniences):
    """An OPUS app served over real HTTP in this process, with the real manager (the wrapper calls
    back to it): for tests about execution and transport."""

    def __init__(self, settings):
        upgrade_schema(create_engine_for(settings.database_url))
        self.httpd = make_server("127.0.0.1", 0, lambda e, s: self.app(e, s), server_class=_Server,
                                 handler_class=_Quiet)
        self.port = self.httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = self.configure(settings)
        self.services = Root.build(self.settings)
        self.app = create_app(self.settings, self.services)
        # serve_forever checks for shutdown every poll_interval: 0.5 s by default, paid by every test.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()
        self.http = requests.Session()

    def configure(self, settings):
        """The settings this server runs with, once its address is known: jobs call it back here."""
        return settings.with_overrides(CALLBACK_URL=self.url)

    def stop(self):
        self.services.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.services.store.engine.dispose()


class ApiServer(_Conveniences):
    """The same app called in-process (WebTest, no socket), jobs run by ``tests/fakes.FakeManager``
    through the real completion code: for API tests that are about neither transport nor execution.
    Same attributes as LiveServer (url, http, settings, services, app)."""

    _ports = itertools.count(50001)

    def __init__(self, settings, behaviours=None):
        # Each app its own base URL: requests to it never leave the process (inprocess.serve).
        self.url = f"http://localhost:{next(self._ports)}"
        upgrade_schema(create_engine_for(settings.database_url))
        self.settings = settings.with_overrides(CALLBACK_URL=self.url)
        self.services = build_with_fake_manager(self.settings, behaviours)
        self.app = create_app(self.settings, self.services)
        inprocess.serve(self.app, self.url)
        self.http = requests.Session()

    @property
    def manager(self) -> FakeManager:
        return self.services.manager

    def stop(self):
        inprocess.unserve(self.url)
        self.services.stop()
        self.services.store.engine.dispose()


def build_with_fake_manager(settings, behaviours=None):
    """The composition root of ``settings`` with a FakeManager in place of the configured manager."""
    def fake(settings, store, registry, entities):
        return FakeManager(settings, store, registry, behaviours)

    services = Root.build(settings, manager_factory=fake)
    assert isinstance(services.manager, FakeManager)
    return services


@pytest.fixture
def live(tmp_path):
    server = LiveServer(make_settings(tmp_path))
    yield server
    server.stop()


@pytest.fixture
def api(tmp_path):
    """The app in-process with the fake manager (see ApiServer)."""
    server = ApiServer(make_settings(tmp_path))
    yield server
    server.stop()


@pytest.fixture
def live_any_db(tmp_path, database_url):
    server = LiveServer(make_settings(tmp_path, DATABASE_URL=database_url))
    yield server
    server.stop()


# ---- signed-in users and jobs run to their end, for tests that need several callers ------------------
def signed_in_sessions(server, users=(("root", {"admin": True}), ("alice", {}), ("bob", {}))) -> dict:
    """Create ``users`` (name, UserAdmin.add keyword arguments) on ``server``: a requests.Session each,
    signed in with HTTP Basic; "anonymous" is a session without credentials."""
    from opus.auth.admin import UserAdmin
    admin = UserAdmin(server.services.users)  # the server's store: tokens hashed with its key
    sessions = {"anonymous": server.session()}
    for name, kwargs in users:
        _, token = admin.add(name, **kwargs)
        sessions[name] = server.session()
        sessions[name].auth = (name, token)
    return sessions


def run_job(http, base_url: str, jobname: str, data=None, files=None, timeout: float = 60) -> str:
    """Create and run a job with session ``http``, wait (blocking WAIT) until it is COMPLETED: its URL."""
    r = http.post(f"{base_url}/rest/{jobname}", data={**(data or {}), "PHASE": "RUN"}, files=files,
                  allow_redirects=False)
    assert r.status_code == 303, r.text
    url = r.headers["Location"]
    phase = wait_final(http, url, timeout)
    assert phase == "COMPLETED", http.get(url).text
    return url
