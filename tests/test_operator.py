"""The operator's view (issue 13, point 4): `opus init` for the service user and who owns what, and
the data directory in /availability.  The rest of the operator's view: definitions that declare
needs, invalid definition files and the bounds of jobs (points 5, 6, 15) in
tests/test_operator_definitions.py; the `opus` command line itself (point 17) in
tests/test_operator_cli.py."""

from __future__ import annotations

import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests
from lxml import etree

from conftest import REPO_ROOT, ApiServer, make_settings
from helpers import wait_final, wait_for
from operator_tools import current_user, jdl_dir, run_opus, settings_file
from opus.cli.main import main as opus_main
from opus.storage.datadir import DataDirCheck

VOSI_AVAIL = "{http://www.ivoa.net/xml/VOSIAvailability/v1.0}"
AS_ROOT = os.geteuid() == 0


def _availability(server) -> tuple[bool, list[str]]:
    root = etree.fromstring(server.http.get(f"{server.url}/availability").content)
    return (root.find(f"{VOSI_AVAIL}available").text == "true",
            [n.text for n in root.findall(f"{VOSI_AVAIL}note")])



# ---- point 4: opus init for the service user ------------------------------------------------------------------
def test_init_as_root_without_a_service_user_refuses_and_says_how(tmp_path):
    data = tmp_path / "var"
    s = settings_file(tmp_path / "s.py", DATA_DIR=str(data))
    r = run_opus("init", settings=s)
    if AS_ROOT:
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1 and "--user NAME" in r.stderr and "SERVICE_USER" in r.stderr
        assert not data.exists()  # refused before creating anything
    else:
        assert r.returncode == 0, r.stderr  # as the service user itself: nothing to hand over
    r = run_opus("init", "--user", "no-such-user-here", settings=s)
    assert r.returncode == 2 and "no user 'no-such-user-here'" in r.stderr


def test_check_says_what_the_service_user_does_not_own(tmp_path, capsys):
    data = tmp_path / "var"
    (data / "jobs").mkdir(parents=True)  # made by this user, as `opus init` run as root without --user did
    s = settings_file(tmp_path / "s.py", DATA_DIR=str(data), SERVICE_USER="nobody", JOB_SANDBOX="none",
                       JDL_DIR=str(jdl_dir(tmp_path, "dummy")))
    assert opus_main(["--settings", str(s), "check"]) == 1
    out = capsys.readouterr().out
    assert f"PROBLEM  {data / 'jobs'} belongs to uid {os.geteuid()}, not to SERVICE_USER 'nobody'" in out


def _world_dir() -> Path:
    """A directory any user may enter (pytest's tmp_path is its owner's only)."""
    path = Path(tempfile.mkdtemp(prefix="opus-operator-"))
    path.chmod(0o755)
    return path


def _serve_as(user: pwd.struct_passwd, settings: Path, port: int) -> subprocess.Popen:
    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setgroups([])
        os.setuid(user.pw_uid)

    # This venv's interpreter, else (when it lives where that user may not go, as a pyenv under /root)
    # the system's Python of the same version, with this venv's packages and this checkout.
    env = {**os.environ, "HOME": "/nonexistent"}
    packages = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *site.getsitepackages()])}
    same = f"import sys, opus; assert sys.version_info[:2] == {tuple(sys.version_info[:2])}"
    for python, extra in ((sys.executable, {}), ("/usr/bin/python3", packages), ("/usr/local/bin/python3", packages)):
        try:
            subprocess.run([python, "-c", same], preexec_fn=drop, check=True, capture_output=True, timeout=30,
                           cwd="/", env={**env, **extra})
            break
        except (OSError, subprocess.CalledProcessError):
            continue
    else:
        raise AssertionError(f"no Python of this version that {user.pw_name} may run")
    return subprocess.Popen([python, "-m", "opus.cli", "--settings", str(settings), "serve", "--port", str(port)],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=drop, env={**env, **extra})


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_init_as_root_for_the_service_user_lets_its_server_run_jobs(tmp_path):
    """The issue's scenario: `opus init` as root, the server as an unprivileged user.  Before, jobs/
    belonged to root and every job failed with Permission denied while /availability said available."""
    nobody = pwd.getpwnam("nobody")
    if not AS_ROOT:  # scripts/test.sh runs as root; elsewhere, what a user may not do is refused
        s = settings_file(tmp_path / "s.py", DATA_DIR=str(tmp_path / "var"))
        r = run_opus("init", "--user", "nobody", settings=s)
        assert r.returncode == 2 and "only root can create files for 'nobody'" in r.stderr
        return
    base = _world_dir()
    try:
        data = base / "var"
        port = _free_port()
        s = settings_file(base / "settings.py", DATA_DIR=str(data), JOB_SANDBOX="none", MAINTENANCE_INTERVAL=0,
                           LOG_LEVEL="WARNING", JDL_DIR=str(REPO_ROOT / "jdl"))
        r = run_opus("init", "--user", "nobody", settings=s)
        assert r.returncode == 0, r.stderr
        assert "belong to 'nobody'" in r.stdout
        for path in (data, data / "jobs", data / "opus.sqlite", data / "secret.key", s):
            assert path.stat().st_uid == nobody.pw_uid, path
        proc = _serve_as(nobody, s, port)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _answers(proc, url), 30, "the server run as nobody to answer")
            assert "<vosi:available>true</vosi:available>" in requests.get(f"{url}/availability", timeout=10).text
            r = requests.post(f"{url}/rest/dummy", data={"text": "as nobody", "PHASE": "RUN"},
                              allow_redirects=False, timeout=10)
            assert r.status_code == 303, r.text
            assert wait_final(requests, r.headers["Location"]) == "COMPLETED"
            # What `opus init` as root used to leave: a jobs/ directory nobody cannot write.
            os.chown(data / "jobs", 0, 0)
            (data / "jobs").chmod(0o755)
            def says_unavailable() -> str | None:
                text = requests.get(f"{url}/availability", timeout=10).text
                return text if "<vosi:available>false</vosi:available>" in text else None
            text = wait_for(says_unavailable, 30, "/availability to notice jobs/ is not writable")
            assert "cannot be written" in text and str(data) not in text
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _answers(proc: subprocess.Popen, url: str):
    assert proc.poll() is None, proc.stdout.read()
    try:
        return requests.get(f"{url}/availability", timeout=2)
    except requests.ConnectionError:
        return None


# ---- point 4: the data directory in /availability -----------------------------------------------------------
def test_availability_reports_a_data_directory_jobs_cannot_be_written_in(tmp_path):
    server = ApiServer(make_settings(tmp_path))
    try:
        assert _availability(server)[0]
        jobs = server.settings.jobs_dir
        shutil.rmtree(jobs, ignore_errors=True)
        jobs.parent.mkdir(parents=True, exist_ok=True)
        jobs.write_text("not a directory")  # refuses new files whoever the server runs as (root too)
        server.app.config.pop("opus.data_dir_check", None)  # past the few seconds it is kept
        ok, notes = _availability(server)
        assert not ok
        assert any("the data directory cannot be written" in n for n in notes), notes
        assert not any(str(tmp_path) in n for n in notes)  # public: no server path
    finally:
        server.stop()


def test_availability_reports_a_full_data_directory(tmp_path):
    server = ApiServer(make_settings(tmp_path, DATA_DIR_MIN_FREE=1 << 62))
    try:
        ok, notes = _availability(server)
        assert not ok
        assert any("full or nearly" in n and "DATA_DIR_MIN_FREE" in n for n in notes), notes
    finally:
        server.stop()


def test_the_data_directory_check_is_kept_a_few_seconds(tmp_path):
    settings = make_settings(tmp_path)
    Path(settings.DATA_DIR).mkdir(parents=True)
    now = [100.0]
    check = DataDirCheck(settings, ttl=5.0, clock=lambda: now[0])
    assert check.problems() == []
    settings.jobs_dir.write_text("not a directory")
    now[0] += 4.9
    assert check.problems() == []  # the kept answer: /availability is polled by monitors
    now[0] += 0.2
    assert check.problems() and "cannot be written" in check.problems()[0]


# ---- found from outside (session 19): a server on a database without its schema ---------------------------
def test_a_server_does_not_start_on_a_database_without_its_schema(tmp_path, database_url):
    """Was: it started, every request answered 503 'the database is unavailable at the moment; retry
    in a few seconds' (SQLite's 'no such table' read as an outage; PostgreSQL's a 500), and
    /availability said the database answers."""
    from opus.errors import ConfigurationError
    from opus.server import create_app
    from opus.service.root import Root
    from opus.storage.database import create_engine_for, upgrade_schema

    settings = make_settings(tmp_path, DATABASE_URL=database_url)
    for revision in (None, "0009"):  # no tables at all; the schema of an older OPUS
        if revision:
            engine = create_engine_for(database_url)
            upgrade_schema(engine, revision)
            engine.dispose()
        root = Root.build(settings)
        try:
            with pytest.raises(ConfigurationError, match="opus init") as refused:
                create_app(settings, root)
            assert "DATABASE_URL" in str(refused.value)
        finally:
            root.stop()
            root.store.engine.dispose()


def test_gunicorn_stops_at_once_on_a_database_without_its_schema(tmp_path):
    """The worker fails to boot with the reason, and gunicorn exits (3) instead of serving 503s."""
    s = settings_file(tmp_path / "s.py", DATA_DIR=str(tmp_path / "var"), SERVICE_USER=current_user())
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        done = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0",
                               "--workers", "1", "--no-control-socket", "opus.wsgi:application"],
                              cwd=REPO_ROOT, env=dict(os.environ, OPUS_SETTINGS=str(s)), stdin=subprocess.DEVNULL,
                              stdout=out, stderr=out, timeout=120)
    text = log.read_text()
    assert done.returncode == 3, text
    assert "the database has no OPUS tables (or no record of their version): create them with `opus init`" in text
    assert "Worker failed to boot" in text
