"""The operator's view (issue 13, points 4, 5, 6, 15, 17): `opus init` for the service user, the
data directory in /availability, definitions that declare needs, invalid definition files, the
bounds of jobs in /capabilities and the definition, and the `opus` command line itself."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
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

from conftest import REPO_ROOT, ApiServer, make_settings, signed_in_sessions
from helpers import wait_final, wait_for
from opus.cli.main import build_parser
from opus.cli.main import main as opus_main
from opus.storage.datadir import DataDirCheck

OPUS = [sys.executable, "-m", "opus.cli"]
VOSI_AVAIL = "{http://www.ivoa.net/xml/VOSIAvailability/v1.0}"
AS_ROOT = os.geteuid() == 0


def _opus(*args: str, settings: Path | None = None, **kw) -> subprocess.CompletedProcess:
    head = [*OPUS, "--settings", str(settings)] if settings else OPUS
    return subprocess.run([*head, *args], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, **kw)


def _settings_file(path: Path, **values) -> Path:
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
    path.chmod(0o600)  # as `opus check` wants it
    return path


def _availability(server) -> tuple[bool, list[str]]:
    root = etree.fromstring(server.http.get(f"{server.url}/availability").content)
    return (root.find(f"{VOSI_AVAIL}available").text == "true",
            [n.text for n in root.findall(f"{VOSI_AVAIL}note")])


# ---- point 17: the command line ---------------------------------------------------------------------------
def _walk(parser: argparse.ArgumentParser, where: str = "opus"):
    for action in parser._actions:
        yield where, action
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield f"{where} {choice.dest}", choice
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{where} {name}")


def test_every_option_and_argument_has_help():
    seen = list(_walk(build_parser()))
    assert len(seen) > 60  # the whole tree was walked: serve, init, check, user ..., jdl ...
    missing = [f"{where}: {action.dest}" for where, action in seen
               if not (action.help and action.help.strip()) or action.help == argparse.SUPPRESS]
    assert missing == []


def test_version():
    r = _opus("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("opus 2.")


def test_opus_jdl_says_it_works_on_jdl_dir():
    r = _opus("jdl", "--help")
    assert r.returncode == 0 and "Works on the files of JDL_DIR directly" in " ".join(r.stdout.split())
    assert "JDL_DIR (its files, directly; not over HTTP)" in " ".join(_opus("--help").stdout.split())


def test_granting_an_unknown_definition_is_refused(tmp_path, capsys):
    s = _settings_file(tmp_path / "s.py", DATA_DIR=str(tmp_path / "var"), JDL_DIR=str(REPO_ROOT / "jdl"),
                       SERVICE_USER=_me())
    assert opus_main(["--settings", str(s), "init"]) == 0
    assert opus_main(["--settings", str(s), "user", "add", "alice", "--jobdefs", "dummy"]) == 0
    assert opus_main(["--settings", str(s), "user", "add", "bob", "--jobdefs", "dummy,nosuchdef"]) == 1
    assert "no job definition named 'nosuchdef'" in capsys.readouterr().err
    assert opus_main(["--settings", str(s), "user", "grant", "alice", "nosuchdef"]) == 1
    err = capsys.readouterr().err
    assert "no job definition named 'nosuchdef'" in err and len(err.strip().splitlines()) == 1
    assert opus_main(["--settings", str(s), "user", "grant", "alice", "copy"]) == 0
    assert "may use: copy dummy" in capsys.readouterr().out
    assert opus_main(["--settings", str(s), "user", "revoke", "alice", "nosuchdef"]) == 0  # revoking: always


def test_the_editor_role_is_given_and_taken_on_the_command_line(tmp_path, capsys):
    s = _settings_file(tmp_path / "s.py", DATA_DIR=str(tmp_path / "var"), JDL_DIR=str(REPO_ROOT / "jdl"),
                       SERVICE_USER=_me())
    assert opus_main(["--settings", str(s), "init"]) == 0
    assert opus_main(["--settings", str(s), "user", "add", "carol", "--editor"]) == 0
    assert opus_main(["--settings", str(s), "user", "add", "dave"]) == 0
    from opus.auth.admin import UserAdmin
    from opus.settings import load_settings
    from opus.storage import create_engine_for
    from opus.storage.userstore import UserStore
    admin = UserAdmin(UserStore(create_engine_for(load_settings(str(s)).database_url), load_settings(str(s))))
    assert admin.get("carol").is_editor and not admin.get("dave").is_editor
    capsys.readouterr()
    assert opus_main(["--settings", str(s), "user", "set", "carol", "--editor", "no"]) == 0
    assert opus_main(["--settings", str(s), "user", "set", "dave", "--editor", "yes"]) == 0
    assert not admin.get("carol").is_editor and admin.get("dave").is_editor


def test_the_admin_api_refuses_granting_an_unknown_definition(api):
    root = signed_in_sessions(api, (("root", {"admin": True}), ("alice", {"jobdefs": "dummy"})))["root"]
    r = root.patch(f"{api.url}/admin/users/alice", json={"grant": ["nosuchdef"]})
    assert r.status_code == 400 and "no job definition named 'nosuchdef'" in r.text
    r = root.post(f"{api.url}/admin/users", json={"name": "carol", "jobDefinitions": "dummy,nosuchdef"})
    assert r.status_code == 400
    assert root.patch(f"{api.url}/admin/users/alice", json={"grant": ["copy"]}).status_code == 200


def test_init_against_an_unreachable_database_says_so_in_one_line(tmp_path):
    s = _settings_file(tmp_path / "s.py", DATA_DIR=str(tmp_path / "var"), SERVICE_USER=_me(),
                       DATABASE_URL="postgresql+psycopg2://opus:secret@127.0.0.1:1/opus")
    for command in ("init", "maintenance"):
        r = _opus(command, settings=s)
        assert r.returncode == 2, r
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert lines[0].startswith("opus: cannot use the database postgresql+psycopg2://opus:***@127.0.0.1:1/opus")
        assert "secret" not in r.stderr


def _me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


# ---- point 4: opus init for the service user ------------------------------------------------------------------
def test_init_as_root_without_a_service_user_refuses_and_says_how(tmp_path):
    data = tmp_path / "var"
    s = _settings_file(tmp_path / "s.py", DATA_DIR=str(data))
    r = _opus("init", settings=s)
    if AS_ROOT:
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1 and "--user NAME" in r.stderr and "SERVICE_USER" in r.stderr
        assert not data.exists()  # refused before creating anything
    else:
        assert r.returncode == 0, r.stderr  # as the service user itself: nothing to hand over
    r = _opus("init", "--user", "no-such-user-here", settings=s)
    assert r.returncode == 2 and "no user 'no-such-user-here'" in r.stderr


def test_check_says_what_the_service_user_does_not_own(tmp_path, capsys):
    data = tmp_path / "var"
    (data / "jobs").mkdir(parents=True)  # made by this user, as `opus init` run as root without --user did
    s = _settings_file(tmp_path / "s.py", DATA_DIR=str(data), SERVICE_USER="nobody", JOB_SANDBOX="none",
                       JDL_DIR=str(_jdl_dir(tmp_path, "dummy")))
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
        s = _settings_file(tmp_path / "s.py", DATA_DIR=str(tmp_path / "var"))
        r = _opus("init", "--user", "nobody", settings=s)
        assert r.returncode == 2 and "only root can create files for 'nobody'" in r.stderr
        return
    base = _world_dir()
    try:
        data = base / "var"
        port = _free_port()
        s = _settings_file(base / "settings.py", DATA_DIR=str(data), JOB_SANDBOX="none", MAINTENANCE_INTERVAL=0,
                           LOG_LEVEL="WARNING", JDL_DIR=str(REPO_ROOT / "jdl"))
        r = _opus("init", "--user", "nobody", settings=s)
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


# ---- point 5: definitions that declare needs -------------------------------------------------------------------
def _jdl_dir(tmp_path: Path, *names: str) -> Path:
    jdl = tmp_path / "jdl"
    jdl.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(REPO_ROOT / "jdl" / f"{name}.json", jdl)
    return jdl


def test_check_says_gammapy_maps_misses_astropy(tmp_path, capsys, monkeypatch):
    jdl = _jdl_dir(tmp_path, "gammapy_maps", "dummy")
    s = _settings_file(tmp_path / "s.py", JDL_DIR=str(jdl), DATA_DIR=str(tmp_path), JOB_SANDBOX="none",
                       CALLBACK_URL="http://127.0.0.1:1")
    assert opus_main(["--settings", str(s), "check"]) == 0
    assert "ok       gammapy_maps" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "astropy", None)  # as without the [science] extra: not importable
    assert opus_main(["--settings", str(s), "check"]) == 1
    out = capsys.readouterr().out
    assert "ok       gammapy_maps" not in out and "ok       dummy" in out
    assert "MISSING  gammapy_maps: needs Python module 'astropy', which is not found on this host" in out


def test_a_missing_command_is_reported_and_shown_to_admins(tmp_path, capsys):
    jdl = _jdl_dir(tmp_path, "dummy")
    (jdl / "zipper.json").write_text(json.dumps({
        "name": "zipper", "script": "gzip -k input\n",
        "needs": {"commands": ["sh", "no-such-command-here", "/usr/bin/no-such-either"], "python": ["json"]}}))
    s = _settings_file(tmp_path / "s.py", JDL_DIR=str(jdl), DATA_DIR=str(tmp_path), JOB_SANDBOX="none")
    assert opus_main(["--settings", str(s), "check"]) == 1
    out = capsys.readouterr().out
    assert ("MISSING  zipper: needs command 'no-such-command-here', which is not found on this host; "
            "needs command '/usr/bin/no-such-either'") in out
    server = ApiServer(make_settings(tmp_path, JDL_DIR=str(jdl)))
    try:
        sessions = signed_in_sessions(server)
        problems = sessions["root"].get(f"{server.url}/jdl").json()["problems"]
        assert [(p["name"], p["state"]) for p in problems] == [("zipper", "unmet")]
        assert "no-such-command-here" in problems[0]["problems"][0]
        assert "problems" not in sessions["alice"].get(f"{server.url}/jdl").json()  # admins only
        assert "zipper" in {d["name"] for d in sessions["alice"].get(f"{server.url}/jdl").json()["jobDefinitions"]}
    finally:
        server.stop()


@pytest.mark.parametrize("needs", [["astropy"], {"python": "astropy"}, {"python": ["astropy; rm -rf /"]},
                                   {"commands": ["../bin/sh"]}, {"perl": ["x"]}])
def test_malformed_needs_are_refused(needs):
    from opus.errors import ConfigurationError
    from opus.jobdef import JobDefinition
    with pytest.raises(ConfigurationError, match="needs"):
        JobDefinition.from_dict({"name": "x", "script": "true", "needs": needs})


def test_needs_survive_every_format_and_may_be_absent():
    from opus.jobdef import JobDefinition
    from opus.jobdef.formats import read_definition, write_definition
    d = JobDefinition.from_dict(json.loads((REPO_ROOT / "jdl" / "gammapy_maps.json").read_text()))
    assert d.needs == {"python": ["astropy", "numpy", "matplotlib"]}
    both = JobDefinition.from_dict({"name": "x", "script": "true", "needs": {"python": ["a.b"], "commands": ["gzip"]}})
    for jobdef in (d, both):
        for fmt in ("json", "votable", "wadl"):
            assert read_definition(write_definition(jobdef, fmt)) == jobdef
    slide = read_definition((REPO_ROOT / "tests" / "data" / "gammapy_maps_slide.vot").read_bytes())
    assert slide.needs == {}  # the original OPUS's VOTable: no needs, still read
    bad = write_definition(both, "wadl").replace(b'python="a.b"', b'python="a;b"')
    with pytest.raises(Exception, match="needs.python"):
        read_definition(bad)


# ---- point 6: invalid definition files ---------------------------------------------------------------------
BROKEN = {
    "badjson": b"{ this is not JSON",
    "schema": json.dumps({"name": "schema", "script": "true", "parameters": {"x": {"type": "complex"}}}).encode(),
    "wrongname": json.dumps({"name": "other", "script": "true"}).encode(),
}


def test_invalid_definition_files_answer_503_without_paths_and_admins_see_why(tmp_path, capsys, monkeypatch):
    jdl = _jdl_dir(tmp_path, "dummy")
    for name, data in BROKEN.items():
        (jdl / f"{name}.json").write_bytes(data)
    (jdl / "unreadable.json").write_text(json.dumps({"name": "unreadable", "script": "true"}))
    (jdl / "bad.name.json").write_text("{}")
    real_read = pathlib.Path.read_bytes

    def read_bytes(self):  # a file the server may not read (root reads anything: simulated)
        if self.name == "unreadable.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    server = ApiServer(make_settings(tmp_path, JDL_DIR=str(jdl)))
    try:
        sessions = signed_in_sessions(server)
        for name in (*BROKEN, "unreadable"):
            for who in ("alice", "root"):
                for r in (sessions[who].get(f"{server.url}/jdl/{name}"),
                          sessions[who].get(f"{server.url}/jdl/{name}?format=json"),
                          sessions[who].post(f"{server.url}/rest/{name}", data={}, allow_redirects=False)):
                    assert r.status_code == 503, (name, r.status_code, r.text)
                    assert str(tmp_path) not in r.text and ".json" not in r.text, r.text
                    assert "cannot be used now" in r.text
        assert "'complex'" in sessions["alice"].get(f"{server.url}/jdl/schema").text  # what is wrong, not where
        assert "Permission denied" not in sessions["alice"].get(f"{server.url}/jdl/unreadable").text
        versions = sessions["alice"].get(f"{server.url}/jdl/badjson/versions")
        assert versions.status_code == 200 and versions.json()["live"] is None
        assert sessions["alice"].get(f"{server.url}/jdl/nosuchdef").status_code == 404
        assert sessions["alice"].get(f"{server.url}/jdl/bad.name").status_code == 404
        listing = sessions["alice"].get(f"{server.url}/jdl")
        assert listing.status_code == 200
        assert [d["name"] for d in listing.json()["jobDefinitions"]] == ["dummy"]
        problems = {p["name"]: p for p in sessions["root"].get(f"{server.url}/jdl").json()["problems"]}
        assert set(problems) == {*BROKEN, "unreadable", "bad.name"}
        assert problems["badjson"]["file"] == str(jdl / "badjson.json") and problems["badjson"]["state"] == "invalid"
        assert "not a JSON job definition" in problems["badjson"]["problems"][0]
        assert "complex" in problems["schema"]["problems"][0]
        assert "'other'" in problems["wrongname"]["problems"][0]
        assert "Permission denied" in problems["unreadable"]["problems"][0]
        assert problems["bad.name"]["state"] == "misnamed"
        assert server.http.get(f"{server.url}/capabilities").status_code == 200
        # An admin may remove a broken file (nothing to keep as a version).
        assert sessions["root"].delete(f"{server.url}/jdl/badjson", allow_redirects=False).status_code == 303
        assert sessions["root"].get(f"{server.url}/jdl/badjson").status_code == 404
        assert not (jdl / "badjson.json").exists()
    finally:
        server.stop()
    s = _settings_file(tmp_path / "s.py", JDL_DIR=str(jdl), DATA_DIR=str(tmp_path), JOB_SANDBOX="none")
    assert opus_main(["--settings", str(s), "check"]) == 1
    out = capsys.readouterr().out
    assert f"INVALID  schema ({jdl / 'schema.json'}): job definition 'schema': parameter 'x'" in out
    assert "INVALID  unreadable" in out and "Permission denied" in out
    assert f"INVALID  {jdl / 'bad.name.json'}: not offered" in out


def test_a_broken_live_definition_can_be_replaced_by_a_new_version(tmp_path):
    from opus.jobdef import JobDefinition, JobDefinitionRegistry
    jdl = tmp_path / "jdl"
    jdl.mkdir()
    (jdl / "fixme.json").write_text("{broken")
    registry = JobDefinitionRegistry(jdl)
    meta = registry.propose(JobDefinition.from_dict({"name": "fixme", "script": "true", "version": "2"}), "admin")
    assert registry.validate("fixme", meta["digest"]).version == "2"
    assert registry.get("fixme").version == "2"


# ---- point 15: the bounds of jobs ----------------------------------------------------------------------------
def test_capabilities_and_the_definition_show_the_bounds_of_jobs(tmp_path):
    server = ApiServer(make_settings(tmp_path, MAX_EXECUTION_DURATION=7200, DEFAULT_EXECUTION_DURATION=300,
                                     DESTRUCTION_INTERVAL=7 * 86400, MAX_DESTRUCTION_INTERVAL=30 * 86400))
    try:
        jdl = Path(server.settings.JDL_DIR)
        (jdl / "bare.json").write_text(json.dumps({"name": "bare", "script": "true"}))
        (jdl / "unlimited.json").write_text(json.dumps({"name": "unlimited", "script": "true", "executionDuration": 0}))
        caps = etree.fromstring(server.http.get(f"{server.url}/capabilities").content)
        described = {c.find("interface/accessURL").text.rsplit("/", 1)[1]: c.findtext("description")
                     for c in caps.iter("capability") if c.get("standardID", "").startswith("ivo://ivoa.net/std/UWS")}
        assert described["gammapy_maps"] == (
            "executionDuration: 600 s by default, at most 7200 s. destruction: 7 days after creation by default, "
            "at most 30 days after creation (a later DESTRUCTION is shortened to it).")
        assert described["bare"].startswith("executionDuration: 300 s by default")  # it gives none: the server's
        assert described["unlimited"].startswith("executionDuration: 7200 s by default")  # 0 is capped
        doc = server.http.get(f"{server.url}/jdl/gammapy_maps?format=json").json()
        assert doc["limits"] == {"executionDuration": {"default": 600, "max": 7200},
                                 "destruction": {"default": 7 * 86400, "max": 30 * 86400}}
    finally:
        server.stop()


def test_capabilities_with_a_votable_definition(tmp_path):
    """Issue 13, point 7: a live definition that is a .vot file (no <name>.json) is listed, with its bounds."""
    from opus.jobdef import JobDefinition
    from opus.jobdef.formats import write_definition
    jdl = _jdl_dir(tmp_path, "dummy")
    vot = JobDefinition.from_dict({"name": "fromvot", "script": "true\n", "executionDuration": 42})
    (jdl / "fromvot.vot").write_bytes(write_definition(vot, "votable"))
    server = ApiServer(make_settings(tmp_path, JDL_DIR=str(jdl)))
    try:
        r = server.http.get(f"{server.url}/capabilities")
        assert r.status_code == 200, r.text
        caps = etree.fromstring(r.content)
        described = {c.find("interface/accessURL").text.rsplit("/", 1)[1]: c.findtext("description")
                     for c in caps.iter("capability") if c.get("standardID", "").startswith("ivo://ivoa.net/std/UWS")}
        assert set(described) == {"dummy", "fromvot"}
        assert described["fromvot"].startswith("executionDuration: 42 s by default")
        assert server.http.get(f"{server.url}/jdl/fromvot?format=json").json()["limits"]["executionDuration"]["default"] == 42
    finally:
        server.stop()


def test_the_admin_page_lists_definitions_that_cannot_run(tmp_path):
    """The admin page shows each invalid file and each unmet need, with the file and the reason."""
    import base64

    from conftest import LiveServer
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]'")
    jdl = _jdl_dir(tmp_path, "dummy")
    (jdl / "broken.json").write_text("{ not JSON")
    (jdl / "needy.json").write_text(json.dumps({"name": "needy", "script": "true\n",
                                                "needs": {"commands": ["no-such-command-here"]}}))
    server = LiveServer(make_settings(tmp_path, JDL_DIR=str(jdl)))
    try:
        root = signed_in_sessions(server, (("root", {"admin": True}),))["root"]
        basic = base64.b64encode(f"root:{root.auth[1]}".encode()).decode()
        chromium = shutil.which("chromium")
        assert chromium, "Debian's chromium is missing: scripts/setup.sh --test installs it"
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_context(extra_http_headers={"Authorization": f"Basic {basic}"}).new_page()
                failures: list[str] = []
                page.on("response", lambda r: r.status >= 500 and failures.append(f"{r.status} {r.url}"))
                page.on("pageerror", lambda e: failures.append(str(e)))
                page.goto(f"{server.url}/web/admin")
                page.wait_for_selector("#admin[data-ready]", timeout=20_000)
                broken = page.locator('#definition-problems [data-problem="broken"]')
                assert broken.get_attribute("data-state") == "invalid"
                assert str(jdl / "broken.json") in broken.inner_text()
                assert "not a JSON job definition" in broken.inner_text()
                needy = page.locator('#definition-problems [data-problem="needy"]')
                assert "missing needs" in needy.inner_text() and "no-such-command-here" in needy.inner_text()
                assert page.locator('tr[data-definition="dummy"]').count() == 1
                assert failures == []
            finally:
                browser.close()
    finally:
        server.stop()
