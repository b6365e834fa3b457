"""A database outage answers 503 with Retry-After, never 500, and WAITs survive it (issue 14, point 8);
an upload on a full disk answers 507 and leaves no half-created job (issue 14, point 7).

Real outages: a PostgreSQL server that does not exist, and this test's own throw-away PostgreSQL
cluster (scripts/pg-test-server.sh) stopped and started again while requests are waiting.  The full
disk is a real, tiny tmpfs mounted on the jobs directory (root only: mounting needs it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import requests
import sqlalchemy
import sqlalchemy.pool
from sqlalchemy import exc as sa_exc

import inprocess
from conftest import ApiServer, REPO_ROOT, make_settings
from helpers import wait_for

from opus.server import create_app
from opus.service.root import Root
from opus.storage.outage import is_outage

PG_SCRIPT = REPO_ROOT / "scripts" / "pg-test-server.sh"


def _assert_503(r: requests.Response) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert int(r.headers["Retry-After"]) > 0
    assert "database" in r.text and "Traceback" not in r.text


# ---- what counts as an outage -------------------------------------------------------------------------
def test_outages_are_told_from_bugs():
    import psycopg2
    assert is_outage(sqlite3.OperationalError("database is locked"))
    assert is_outage(psycopg2.OperationalError("server closed the connection unexpectedly"))
    assert is_outage(psycopg2.InterfaceError("connection already closed"))
    assert is_outage(sa_exc.OperationalError("SELECT 1", {}, psycopg2.OperationalError("gone")))
    assert is_outage(sa_exc.TimeoutError("QueuePool limit reached"))
    assert not is_outage(sa_exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")))
    assert not is_outage(sa_exc.ProgrammingError("SELEC", {}, Exception("syntax error")))
    assert not is_outage(ValueError("a bug"))


# ---- a PostgreSQL server that is not there -------------------------------------------------------------
def _settings_without_database(tmp_path):
    """Settings naming a PostgreSQL server that does not exist (an empty socket directory)."""
    (tmp_path / "nopg").mkdir()
    return make_settings(tmp_path, DATABASE_URL=f"postgresql+psycopg2://opus@/opus?host={tmp_path / 'nopg'}")


@contextlib.contextmanager
def _served(app, url: str, services):
    inprocess.serve(app, url)
    try:
        yield url
    finally:
        inprocess.unserve(url)
        services.stop()
        services.store.engine.dispose()


@pytest.fixture
def no_database(tmp_path):
    """The app, in-process, on a PostgreSQL URL whose server does not exist (an empty socket directory)."""
    settings = _settings_without_database(tmp_path)
    services = Root.build(settings)
    app = create_app(settings, services, start=False)
    url = "http://localhost:50999"
    inprocess.serve(app, url)
    yield url, settings
    inprocess.unserve(url)
    services.store.engine.dispose()


@pytest.mark.parametrize("method, path, extra", [
    ("GET", "/rest/dummy", {}),                                        # a streamed job list
    ("GET", "/rest/dummy?LAST=5", {}),                                 # a job list read at once
    ("GET", "/rest/dummy", {"headers": {"Accept": "application/json"}}),
    ("POST", "/rest/dummy", {"data": {"text": "x", "PHASE": "RUN"}}),  # a creation
    ("POST", "/rest/dummy", {"data": {"text": "x"}, "headers": {"Idempotency-Key": "k"}}),
    ("GET", "/rest/dummy/0123456789abcdef", {}),
    ("GET", "/rest/dummy/0123456789abcdef?WAIT=5", {}),
    ("GET", "/rest/dummy/0123456789abcdef/phase", {}),
    ("POST", "/rest/dummy/0123456789abcdef/phase", {"data": {"PHASE": "RUN"}}),
    ("DELETE", "/rest/dummy/0123456789abcdef", {}),
    ("GET", "/web/jobs/dummy/0123456789abcdef", {}),                   # a web page
    ("GET", "/store/0123456789abcdef", {}),
])
def test_every_route_kind_answers_503_with_retry_after(no_database, method, path, extra):
    url, settings = no_database
    r = requests.request(method, url + path, allow_redirects=False, **extra)
    _assert_503(r)
    if "json" in extra.get("headers", {}).get("Accept", ""):
        assert r.json()["status"] == 503
    if path.startswith("/web/"):
        assert r.headers["Content-Type"].startswith("text/html")


def test_a_server_starts_while_the_database_is_away(tmp_path, caplog):
    """The schema is checked at start-up (a database without it stops the server: test_operator), but a
    database that cannot be reached then does not stop it: requests answer 503 until it is back."""
    settings = _settings_without_database(tmp_path)
    services = Root.build(settings)
    with caplog.at_level(logging.WARNING, logger="opus.server.app"):
        app = create_app(settings, services)  # start=True: what gunicorn's workers do
    assert "the database schema could not be checked at start-up" in caplog.text
    with _served(app, "http://localhost:50997", services) as url:
        _assert_503(requests.get(url + "/rest/dummy"))


def test_an_outage_outside_any_route_is_a_503_too(tmp_path):
    # Code that runs before the routes' error handling (a hook here) reaches bottle's own 500 handler.
    settings = _settings_without_database(tmp_path)
    services = Root.build(settings)
    app = create_app(settings, services, start=False)
    app.add_hook("before_request", services.store.ping)
    with _served(app, "http://localhost:50998", services) as url:
        _assert_503(requests.get(url + "/rest/dummy"))


def test_a_creation_with_an_upload_leaves_no_file_when_the_database_is_away(no_database):
    url, settings = no_database
    r = requests.post(url + "/rest/copy", files={"infile": ("a.bin", b"content")}, data={"PHASE": "RUN"},
                      allow_redirects=False)
    _assert_503(r)
    assert not settings.jobs_dir.exists() or list(settings.jobs_dir.iterdir()) == []


# ---- a real PostgreSQL server, stopped and started again ----------------------------------------------
class PgCluster:
    """A throw-away cluster of this test's own (scripts/pg-test-server.sh), which can be stopped and
    started again with its data (pg_ctl), as an operator's restart would."""

    def __init__(self, directory: Path):
        self.dir = directory
        out = subprocess.run(["bash", str(PG_SCRIPT), "start", str(directory)], check=True,
                             capture_output=True, text=True)
        self.url = out.stdout.strip().splitlines()[-1]
        self.bindir = _pg_bindir()

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-w", "-t", "60", "-s", *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, cwd="/", capture_output=True)

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        self._pg_ctl("-l", str(self.dir / "server.log"), "start")

    def remove(self) -> None:
        subprocess.run(["bash", str(PG_SCRIPT), "stop", str(self.dir)], capture_output=True)


def _pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        pytest.skip("no PostgreSQL server binaries (scripts/setup.sh --test installs them)")
    return found[-1].parent


@pytest.fixture
def pg_cluster():
    if not _pg_bindir_exists():
        if os.environ.get("OPUS_REQUIRE_PG") == "1":
            pytest.fail("OPUS_REQUIRE_PG=1 but there are no PostgreSQL server binaries")
        pytest.skip("no PostgreSQL server binaries (scripts/setup.sh --test installs them)")
    directory = Path(tempfile.mkdtemp(prefix="opus-o", dir="/tmp"))  # short: the socket path is limited
    directory.chmod(0o755)
    cluster = PgCluster(directory / "pg")
    yield cluster
    cluster.remove()
    directory.rmdir()


def _pg_bindir_exists() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


def _blocked_in_wait(thread: threading.Thread) -> bool:
    """Whether ``thread`` (a request served in-process) is blocked in its WAIT, its job read."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "wait" and frame.f_code.co_filename.endswith(os.path.join("events", "notify.py")):
            return True
        frame = frame.f_back
    return False


# tests/fakes.FakeManager's dispatcher thread ends at the first database error of its loop; that is
# the fake's, not the server's, and this test does not need it after the outage.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_waits_survive_a_postgresql_restart(tmp_path, pg_cluster):
    server = ApiServer(make_settings(tmp_path, DATABASE_URL=pg_cluster.url, MAX_WAIT=120))
    try:
        url = server.create("dummy", {"text": "x"})  # PENDING: a WAIT on it blocks
        answers: dict[str, requests.Response] = {}

        def wait(name: str, seconds: int) -> None:
            answers[name] = requests.get(url, params={"WAIT": seconds})

        short = threading.Thread(target=wait, args=("short", 5))
        long = threading.Thread(target=wait, args=("long", 90))
        short.start()
        long.start()
        wait_for(lambda: _blocked_in_wait(short) and _blocked_in_wait(long), what="both WAITs to be blocked")

        pg_cluster.stop()
        try:
            _assert_503(server.http.get(url))
            _assert_503(server.http.get(url, params={"WAIT": 3}))  # a WAIT that cannot start
            _assert_503(server.http.post(f"{server.url}/rest/copy", files={"infile": ("a", b"x")},
                                         allow_redirects=False))
            assert sorted(p.name for p in server.settings.jobs_dir.iterdir()) == []
            # Every waiter re-reads its job, as when the notification listener reconnects: a re-read
            # that finds the database away does not end a WAIT.
            server.services.notifier._wake_all()
            short.join(60)
            # Its time ran out in the outage: a clean 503 (200 if it ran out while PostgreSQL was
            # still shutting down, on a loaded machine), never a 500.
            if answers["short"].status_code != 200:
                _assert_503(answers["short"])
            assert long.is_alive()  # still waiting
        finally:
            pg_cluster.start()

        # The database is back: the job can be run, and the long WAIT returns it.
        r = wait_for(lambda: server.http.post(url + "/phase", data={"PHASE": "RUN"}, allow_redirects=False),
                     what="RUN to be accepted once PostgreSQL is back")
        assert r.status_code == 303, r.text
        long.join(60)
        assert answers["long"].status_code == 200, answers["long"].text
        assert re.search(r"<uws:phase>(\w+)</uws:phase>", answers["long"].text).group(1) != "PENDING"
    finally:
        server.stop()


def _cut_every_connection(cluster: PgCluster) -> None:
    """pg_terminate_backend on every other client connection, and wait until they are gone (the
    server sends each an error and closes it, as in a restart)."""
    engine = sqlalchemy.create_engine(cluster.url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            pids = list(conn.execute(sqlalchemy.text(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()")).scalars())
            assert pids, "the server has no connection to cut"
            conn.execute(sqlalchemy.text("SELECT pg_terminate_backend(pid) FROM unnest(:pids) AS pid"), {"pids": pids})
            wait_for(lambda: conn.execute(sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                                          {"pids": pids}).scalar() == 0, what="the cut connections' backends to exit")
    finally:
        engine.dispose()


@pytest.mark.parametrize("ping_idle", ["default", "always"])
def test_connections_postgresql_cut_are_replaced_unseen(tmp_path, pg_cluster, monkeypatch, ping_idle):
    """Pooled connections are not pinged on every checkout (a round trip per request): one in use a
    moment ago is checked by polling its socket, one idle for longer is pinged.  Either way, every
    connection PostgreSQL cut (pg_terminate_backend; a restart) is replaced before a request uses
    it: the very next requests, several at once, all succeed."""
    from opus.storage import database
    if ping_idle == "always":
        monkeypatch.setattr(database, "PING_IDLE_SECONDS", -1.0)
    server = ApiServer(make_settings(tmp_path, DATABASE_URL=pg_cluster.url))
    try:
        urls = [server.create("dummy", {"text": str(i)}) for i in range(4)]

        def burst() -> list[int]:
            """Creations, GETs and lists from 8 threads at once: several pooled connections in use."""
            codes: list[int] = []

            def one(i: int) -> None:
                with requests.Session() as http:
                    codes.append(http.get(urls[i % 4]).status_code)
                    codes.append(http.post(f"{server.url}/rest/dummy", data={"text": "y"},
                                           allow_redirects=False).status_code)
                    codes.append(http.get(f"{server.url}/rest/dummy", params={"LAST": 5}).status_code)
            threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            return sorted(codes)
        expected = sorted([200] * 16 + [303] * 8)
        assert burst() == expected  # the pool holds several connections now
        _cut_every_connection(pg_cluster)
        assert burst() == expected
        pg_cluster.stop()
        pg_cluster.start()
        assert burst() == expected
    finally:
        server.stop()


# ---- a full disk ------------------------------------------------------------------------------------
@pytest.fixture
def full_disk(tmp_path):
    """A server whose jobs directory is a real 64 KiB tmpfs (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (scripts/test.sh runs as root in CI)")
    settings = make_settings(tmp_path)
    settings.jobs_dir.mkdir(parents=True)
    _mount_tiny_tmpfs(settings.jobs_dir)
    try:
        server = ApiServer(settings)
        try:
            yield server
        finally:
            server.stop()
    finally:
        subprocess.run(["umount", str(settings.jobs_dir)], check=True)


def _mount_tiny_tmpfs(path: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "opus-test-full", str(path)], check=True)


def test_an_upload_on_a_full_disk_is_a_507_and_leaves_no_job(full_disk):
    r = full_disk.http.post(f"{full_disk.url}/rest/copy", files={"infile": ("big.bin", b"x" * 256 * 1024)},
                            data={"PHASE": "RUN"}, allow_redirects=False)
    assert r.status_code == 507, (r.status_code, r.text)
    assert "disk is full" in r.text and "infile" in r.text
    assert list(full_disk.settings.jobs_dir.iterdir()) == []
    with full_disk.services.store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar() == 0
    # A small upload still fits: the failed one left no space taken.
    small = full_disk.create("copy", files={"infile": ("small.bin", b"y" * 1024)}, run=True)
    assert full_disk.wait_final(small) == "COMPLETED"


def test_a_full_temporary_directory_while_reading_a_form_is_a_507(api, tmp_path, monkeypatch):
    # Form parts over MEMFILE_MAX (1 MiB) are spooled to temporary files while the form is read.
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (scripts/test.sh runs as root in CI)")
    spool = tmp_path / "spool"
    spool.mkdir()
    _mount_tiny_tmpfs(spool)
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where this process's temporary files go
        r = api.http.post(f"{api.url}/rest/copy", files={"infile": ("big.bin", b"x" * 2 * 1024 * 1024)},
                          allow_redirects=False)
        assert r.status_code == 507, (r.status_code, r.text)
        assert "disk is full" in r.text
        assert _no_jobs(api)
    finally:
        monkeypatch.undo()
        subprocess.run(["umount", str(spool)], check=True)


def _no_jobs(server) -> bool:
    with server.services.store.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar() == 0
