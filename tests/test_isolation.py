"""The job sandbox, for real: job scripts that attack the server, run locally and on the SLURM cluster.

A job's script is untrusted code (SECURITY.md).  ``probe`` below is the attacker: given paths, a
port and a pid by the test, it tries to read, list, write, connect and signal, and writes what it
managed to ``report.txt``.  Run in the real bubblewrap sandbox as the job user, it must reach its
own input and work directory and nothing of the server: not DATA_DIR, the secret, the database,
the settings file, another job's files, its own job.json (the callback token), /root, the network.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import requests
from conftest import LiveServer, make_settings
from test_slurm import cluster, shared_dir  # noqa: F401  (fixtures: the real SLURM cluster)

from opus.auth.identity import server_secret
from opus.settings import REPO_ROOT, load_settings
CANARY = f"opus-isolation-canary-{secrets.token_hex(8)}"

PROBE_SCRIPT = r"""
exec > report.txt 2>&1
echo "UID $(id -u)"
echo "PROCS $(ls /proc | grep -c '^[0-9]')"
for t in $targets "$OPUS_WORK_DIR/../job.json" "$OPUS_WORK_DIR/../wrapper.log"; do
    if [ -d "$t" ]; then
        echo "LIST $t:" $(ls -A -- "$t" 2>/dev/null)
    elif cat -- "$t" >/dev/null 2>&1; then echo "READ $t"
    else echo "DENIED $t"
    fi
done
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "NET open"; else echo "NET closed"; fi
if kill -0 "$pid" 2>/dev/null; then echo "SIGNAL reached"; else echo "SIGNAL blocked"; fi
if touch /usr/opus-probe 2>/dev/null; then echo "WRITE /usr"; else echo "RO /usr"; fi
echo tmp > "/tmp/opus-probe-$OPUS_JOB_ID" && echo "TMP ok"
if [ -n "${infile-}" ]; then echo "INPUT $(cat -- "$infile")"; fi
printf '%s' "$OPUS_JOB_ID" > keep.txt
"""


def probe_definition(name: str, network: bool) -> dict:
    return {
        "name": name, "description": "Tries to reach what it should not (tests/test_isolation.py)",
        "executionDuration": 60, "network": network,
        "parameters": {"targets": {"type": "string", "default": "/nonexistent"},
                       "port": {"type": "int", "default": "9"}, "pid": {"type": "int", "default": "1"}},
        "used": {"infile": {"content_type": "text/plain", "required": False}},
        "generated": {"report": {"file": "report.txt", "content_type": "text/plain"}},
        "script": PROBE_SCRIPT,
    }


def report_of(server, url: str) -> list[str]:
    assert server.wait_final(url, timeout=60) == "COMPLETED", server.http.get(url).text
    return server.http.get(url + "/results/report").text.splitlines()


@pytest.fixture
def settings_file():
    """A settings file where data centres keep theirs: under /etc, which the sandbox mounts read-only."""
    folder = Path(f"/etc/opus-isolation-{secrets.token_hex(4)}")
    folder.mkdir()
    path = folder / "settings.py"
    yield path
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def root_canary():
    path = Path("/root") / f"opus-isolation-{secrets.token_hex(4)}.txt"
    path.write_text(CANARY)
    yield path
    path.unlink(missing_ok=True)


def server_on(tmp_path: Path, settings_path: Path, **overrides) -> LiveServer:
    """A live server whose settings come from a real file (so the sandbox knows it to hide)."""
    jdl = tmp_path / "jdl-copy"
    shutil.copytree(REPO_ROOT / "jdl", jdl)
    for name, network in (("probe", False), ("probe_net", True)):
        (jdl / f"{name}.json").write_text(json.dumps(probe_definition(name, network)))
    lines = [f"DATA_DIR = {str(tmp_path / 'var')!r}", f"JDL_DIR = {str(jdl)!r}", "MAINTENANCE_INTERVAL = 0",
             "KILL_GRACE = 0.5", "CALLBACK_RETRY_SECONDS = 20"]
    lines += [f"{k} = {v!r}" for k, v in overrides.items()]
    settings_path.write_text("\n".join(lines) + "\n")
    server = LiveServer(load_settings(settings_path))
    server_secret(server.settings)  # DATA_DIR/secret.key exists: the probe must not read it
    return server


def attack(server, settings_path: Path, root_canary: Path, jobname: str = "probe") -> tuple[list[str], str, str]:
    """Run a first job, then a second one that tries to reach everything: (its report, job ids)."""
    first = server.create(jobname, {"targets": "/nonexistent"}, run=True)
    report_of(server, first)
    first_id = first.rsplit("/", 1)[1]
    data = Path(server.settings.DATA_DIR)
    (data / "opus.sqlite").stat()  # the database exists: the probe must not read it
    jobs = server.settings.jobs_dir
    targets = [data / "secret.key", data / "opus.sqlite", data, jobs, jobs / first_id / "work" / "keep.txt",
               jobs / first_id / "results" / "report.txt", jobs / first_id / "job.json", settings_path,
               settings_path.parent, Path(server.settings.JDL_DIR) / "copy.json", root_canary, Path("/root")]
    second = server.create(jobname, {"targets": " ".join(map(str, targets)),
                                     "port": server.url.rsplit(":", 1)[1], "pid": str(os.getpid())},
                           files={"infile": ("note.txt", b"my input", "text/plain")}, run=True)
    lines = report_of(server, second)
    return lines, first_id, second.rsplit("/", 1)[1]


def hidden_names(first_id: str, root_canary: Path) -> list[str]:
    return ["secret.key", "opus.sqlite", first_id, root_canary.name, "settings.py", "copy.json", "run"]


def assert_contained(lines: list[str], secrets_: list[str], network: bool = False) -> None:
    """``secrets_``: names that no directory listing may show."""
    read = [line for line in lines if line.startswith("READ ")]
    assert not read, f"the job read what it should not: {read}\n" + "\n".join(lines)
    listings = " ".join(line.split(":", 1)[1] for line in lines if line.startswith("LIST "))
    assert not [s for s in secrets_ if s in listings], lines       # only the skeleton of its own mounts
    job_uid = pwd.getpwnam("opus-job").pw_uid
    assert f"UID {job_uid}" in lines, lines                      # the job user, not root
    assert ("NET open" in lines) is network, lines                 # the server's port: only with network
    assert "SIGNAL blocked" in lines, lines                        # the server's process is out of reach
    assert "RO /usr" in lines, lines
    assert "TMP ok" in lines and "INPUT my input" in lines, lines  # its own /tmp and its own input
    procs = int(next(line for line in lines if line.startswith("PROCS ")).split()[1])
    assert procs < 10, lines                                       # its own PID namespace


def test_a_job_reaches_nothing_of_the_server_or_other_jobs(tmp_path, settings_file, root_canary):
    server = server_on(tmp_path, settings_file)
    try:
        lines, first_id, second_id = attack(server, settings_file, root_canary)
        assert_contained(lines, hidden_names(first_id, root_canary))
        assert not Path(f"/tmp/opus-probe-{second_id}").exists()   # /tmp was private
        work = server.settings.jobs_dir / second_id / "work"
        assert (work / "keep.txt").read_text() == second_id           # it wrote its own work directory
        assert not Path("/usr/opus-probe").exists()
    finally:
        server.stop()


def test_network_is_a_choice_of_the_definition(tmp_path, settings_file, root_canary):
    server = server_on(tmp_path, settings_file)
    try:
        lines, first_id, _ = attack(server, settings_file, root_canary, jobname="probe_net")
        assert_contained(lines, hidden_names(first_id, root_canary), network=True)
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["{data}/secret.key", "{data}/opus.sqlite", "/etc/passwd", "../job.json",
                                   "/root/.bashrc", "job.json"])
def test_a_client_string_never_reaches_a_script_as_a_path(tmp_path, value):
    """The shipped copy and types definitions read their input as a file: a client string is refused."""
    server = LiveServer(make_settings(tmp_path))
    try:
        value = value.format(data=server.settings.DATA_DIR)
        for jobname, name in (("copy", "infile"), ("types", "p_file")):
            r = server.http.post(f"{server.url}/rest/{jobname}", data={name: value, "PHASE": "RUN"},
                                 allow_redirects=False)
            assert r.status_code == 400, (jobname, value, r.status_code, r.text)
            assert "is not a file" in r.text and name in r.text
        assert server.services.store.list(None, include_archived=True) == []
    finally:
        server.stop()


def test_the_scripts_grace_period_survives_the_sandbox(tmp_path):
    """SIGTERM reaches the script (not only the outer bwrap), so its trap runs before SIGKILL."""
    settings = make_settings(tmp_path, KILL_GRACE=3.0)
    jdl = Path(settings.JDL_DIR)
    (jdl / "trapper.json").write_text(json.dumps({
        "name": "trapper", "executionDuration": 1,
        "script": "trap 'echo got TERM; sleep 0.5; echo cleaned up; exit 1' TERM\n"
                  "echo started\nwhile true; do sleep 0.1; done\n"}))
    server = LiveServer(settings)
    try:
        url = server.create("trapper", run=True)
        assert server.wait_final(url) == "ABORTED"
        assert server.http.get(url + "/stdout").text.split() == ["started", "got", "TERM", "cleaned", "up"]
    finally:
        server.stop()


def test_without_a_working_sandbox_jobs_wait_and_availability_says_why(tmp_path):
    server = LiveServer(make_settings(tmp_path, JOB_SANDBOX_BWRAP="/nonexistent/bwrap"))
    try:
        url = server.create("dummy", run=True)
        server_port = server.httpd.server_port
        r = server.http.get(url, params={"WAIT": 2, "PHASE": "QUEUED"})
        assert server.http.get(url + "/phase").text == "QUEUED", r.text   # waiting, not lost
        availability = server.http.get(f"{server.url}/availability").text
        assert "<vosi:available>false</vosi:available>" in availability
        assert "bubblewrap" in availability and "not installed" in availability, availability
    finally:
        server.stop()
    # The same job directory, explicitly unsandboxed: it runs.
    server = LiveServer(make_settings(tmp_path, JOB_SANDBOX="none"))
    try:
        assert server.wait_final(server.url + url.split(str(server_port), 1)[1]) == "COMPLETED"
    finally:
        server.stop()


def test_the_wrapper_connects_to_the_address_it_checked(monkeypatch, tmp_path):
    """DNS rebinding: a name that resolves to a public address when checked and to 127.0.0.1 when
    connecting must not reach the local service."""
    from opus.managers import wrapper
    hits = []

    class Canary(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"internal secret")

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Canary)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    answers = iter([("1.1.1.1", 0)] + [("127.0.0.1", 0)] * 20)  # public first, then loopback
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers)[0], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        with pytest.raises((OSError, ValueError)):
            wrapper.fetch(f"http://rebind.example:{httpd.server_port}/secret", tmp_path / "out", ["*"], 2.0,
                          1 << 20, __import__("hashlib").sha256())
        assert hits == []
        assert not (tmp_path / "out").exists()
    finally:
        httpd.shutdown()


@pytest.mark.slurm
def test_the_same_sandbox_on_the_slurm_cluster(cluster, shared_dir, root_canary):  # noqa: F811
    folder = Path(f"/etc/opus-isolation-{secrets.token_hex(4)}")
    folder.mkdir()
    try:
        server = server_on(shared_dir, folder / "settings.py", MANAGER="slurm", SLURM_RECONCILE_MINUTES=60,
                           CALLBACK_RETRY_SECONDS=2)
        try:
            lines, first_id, second_id = attack(server, folder / "settings.py", root_canary)
            assert_contained(lines, hidden_names(first_id, root_canary))
            assert (server.settings.jobs_dir / second_id / "slurm.log").exists()  # it did run through SLURM
        finally:
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
