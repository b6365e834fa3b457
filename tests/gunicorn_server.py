"""A real OPUS deployment for end-to-end tests: ``opus init`` + gunicorn with several workers.

``GunicornServer(tmp_path, workers=2, database_url=..., MAX_WAIT=...)`` writes a settings file,
creates the schema with the ``opus`` command of this venv, and runs
``python -m gunicorn -c gunicorn.conf.py --bind 127.0.0.1:<port> --workers N --no-control-socket
opus.wsgi:application`` (no control socket: it would be shared by every gunicorn of this user)
from the repository root with ``OPUS_SETTINGS`` pointing at the file.  It can be stopped (SIGTERM,
graceful) and started again on the same port and data directory.

It also knows, through /proc, which gunicorn worker holds which client connection, so that a test
can make sure that blocking requests are spread over several workers.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from helpers import ME, wait_for, wait_phase
from opus.managers import jobrecord
from opus.settings import REPO_ROOT
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- /proc helpers ---------------------------------------------------------------------------------
def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0].decode(), int(fields[1]), int(fields[2])


def is_alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) process."""
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def all_pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def live_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st is not None and st[2] == pgid and st[0] not in ("Z", "X"):
            out.append(pid)
    return out


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    me = os.getpid()
    return [pid for pid in all_pids() if pid != me and text in cmdline(pid) and is_alive(pid)]


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    except OSError:
        pass
    return inodes


def _server_side(server_port: int) -> list[tuple[int, int, int]]:
    """(inode, client port, bytes in the receive queue) of the accepted TCP connections to
    127.0.0.1:server_port."""
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, remote, inode = parts[1], parts[2], int(parts[9])
            if parts[3] == "01" and int(local.split(":")[1], 16) == server_port and inode:
                out.append((inode, int(remote.split(":")[1], 16), int(parts[4].split(":")[1], 16)))
    return out


def _server_side_connections(server_port: int) -> dict[int, int]:
    """inode -> client port of the accepted TCP connections to 127.0.0.1:server_port."""
    return {inode: port for inode, port, _ in _server_side(server_port)}


def requests_read(server_port: int, client_ports: set[int]) -> int:
    """How many of these clients' connections have had their request read by a server thread: the
    server's end is established with nothing left in its receive queue (gthread reads a request only
    in the thread that serves it)."""
    return sum(1 for _, port, queued in _server_side(server_port) if port in client_ports and not queued)


# ---- the server ----------------------------------------------------------------------------------------
class GunicornServer:
    """OPUS under gunicorn in a temporary data directory (see the module docstring)."""

    def __init__(self, tmp_path: Path, workers: int = 2, database_url: str | None = None,
                 gunicorn_args: tuple[str, ...] = (), **settings):
        self.tmp_path = Path(tmp_path)
        self.workers = workers
        self.gunicorn_args = tuple(gunicorn_args)  # more of gunicorn's options, e.g. ("--threads", "8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = self.tmp_path / "var"
        self.settings_file = self.tmp_path / "opus_settings.py"
        self.log_file = self.tmp_path / "gunicorn.log"
        self.proc: subprocess.Popen | None = None
        values = dict(DATA_DIR=str(self.data_dir), DATABASE_URL=database_url, CALLBACK_URL=self.url,
                      MAINTENANCE_INTERVAL=0, KILL_GRACE=0.5, LOG_LEVEL="INFO", SERVICE_USER=ME)
        values.update(settings)
        self.settings = values
        self.settings_file.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
        self.http = requests.Session()
        init = subprocess.run([str(BIN / "opus"), "--settings", str(self.settings_file), "init"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert init.returncode == 0, f"opus init failed ({init.returncode}):\n{init.stdout}{init.stderr}"

    # ---- life cycle ----------------------------------------------------------------------------------
    def start(self, timeout: float = 30) -> "GunicornServer":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = dict(os.environ, OPUS_SETTINGS=str(self.settings_file), PYTHONUNBUFFERED="1")
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                 "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers), "--no-control-socket",
                 *self.gunicorn_args, "opus.wsgi:application"],
                cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            return self._available() and len(self.worker_pids()) == self.workers

        try:
            wait_for(ready, timeout, "gunicorn to become available")
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.log_tail()}") from None
        return self

    def _available(self) -> bool:
        # http.client, closed at once: a connection left open would delay a later graceful stop.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/availability", headers={"Connection": "close"})
            resp = conn.getresponse()
            return resp.status == 200 and b"<vosi:available>true" in resp.read()
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self, timeout: float = 40) -> None:
        """SIGTERM (graceful) and wait; SIGKILL master and workers if that takes too long."""
        self.http.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        workers = self.worker_pids()
        # Let the workers see our connections close: a stopping gthread worker keeps a connection it
        # still believes kept-alive open for 2 s.
        wait_for(lambda: not any(self.connections_by_worker().values()), 1, quietly=True)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not any(is_alive(p) for p in workers), 10, quietly=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill_jobs(self) -> None:
        """Kill what the jobs of this server left running (wrappers and their scripts), by group."""
        jobs_dir = str(self.data_dir / "jobs")
        for pid in processes_mentioning(jobs_dir):
            st = proc_stat(pid)
            if st is None:
                continue
            for target in (st[2], pid):
                if target == os.getpgrp():
                    continue
                try:
                    os.killpg(target, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for pgid_file in (self.data_dir / "jobs").glob("*/script.pgid"):
            try:
                pgid = int(pgid_file.read_text())
                if live_group_members(pgid):
                    os.killpg(pgid, signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.kill_jobs()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ---- processes -------------------------------------------------------------------------------------
    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        master = self.proc.pid
        out = []
        for pid in all_pids():
            st = proc_stat(pid)
            if st is not None and st[1] == master and st[0] not in ("Z", "X") and "gunicorn" in cmdline(pid):
                out.append(pid)
        return sorted(out)

    def connections_by_worker(self) -> dict[int, set[int]]:
        """worker pid -> client ports of the connections it has accepted."""
        conns = _server_side_connections(self.port)
        return {pid: {conns[i] for i in _socket_inodes(pid) if i in conns} for pid in self.worker_pids()}

    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    def wrapper_pid(self, job_id: str) -> int | None:
        """The live job wrapper of ``job_id`` (its pid is also its process group and session), as its
        launch record names it (however it was started: its command line says little)."""
        state = jobrecord.launch_state(self.job_dir(job_id))
        if not state.live or state.wrapper_pid is None or not Path(f"/proc/{state.wrapper_pid}").exists():
            return None
        return state.wrapper_pid

    # ---- UWS conveniences ------------------------------------------------------------------------------
    def create(self, jobname: str, data: dict | None = None, run: bool = False) -> str:
        data = dict(data or {})
        if run:
            data["PHASE"] = "RUN"
        r = self.http.post(f"{self.url}/rest/{jobname}", data=data, allow_redirects=False, timeout=30)
        assert r.status_code == 303, (r.status_code, r.text)
        return r.headers["Location"]

    def job(self, job_url: str, **params) -> dict:
        r = self.http.get(job_url, params=params, headers={"Accept": "application/json"}, timeout=90)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def phase(self, job_url: str) -> str:
        r = self.http.get(job_url + "/phase", timeout=30)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.text

    def post_phase(self, job_url: str, phase: str) -> None:
        r = self.http.post(job_url + "/phase", data={"PHASE": phase}, allow_redirects=False, timeout=30)
        assert r.status_code == 303, (r.status_code, r.text)

    def wait_for(self, job_url: str, phases, timeout: float = 60) -> dict:
        """Block (with WAIT) until the job is in one of ``phases``; the job as JSON."""
        try:
            wait_phase(self.http, job_url, phases, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        return self.job(job_url)
