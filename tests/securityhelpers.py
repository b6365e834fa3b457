"""Shared by the security tests: a live server on jdl/, canaries, raw requests, file-tree snapshots."""

from __future__ import annotations

import http.client
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import helpers
import requests
from conftest import LiveServer, make_settings

from opus.auth.identity import server_secret
TYPES = ("string", "int", "long", "float", "double", "boolean", "anyURI", "dateTime")
CANARY = f"opus-canary-{secrets.token_hex(6)}"
PASSWD_LINE = "root:x:0:0"


# ---- helpers -----------------------------------------------------------------------------------------------
def live_server(tmp_path, **overrides) -> LiveServer:
    server = LiveServer(make_settings(tmp_path, **overrides))
    # Create the server secret before the dispatcher and the test both need it at once: its first
    # creation is not thread-safe (test_the_server_secret_is_created_safely_by_concurrent_threads).
    server_secret(server.settings)
    return server


def serving(tmp_path):
    """The body of each security test file's ``server`` fixture: a live server on jdl/."""
    s = live_server(tmp_path, MAX_RUNNING_JOBS=8)
    yield s
    s.stop()


def job_ids(server) -> set[str]:
    return {ref.job_id for ref in server.services.store.list(None, include_archived=True)}


def job_dirs(server) -> set[str]:
    jobs = server.settings.jobs_dir
    return {p.name for p in jobs.iterdir()} if jobs.is_dir() else set()


def tree(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its size (-1 for directories)."""
    out = {}
    for p in root.rglob("*"):
        try:
            out[str(p.relative_to(root))] = p.stat().st_size if p.is_file() and not p.is_symlink() else -1
        except FileNotFoundError:  # removed meanwhile (a job's temporary file)
            pass
    return out


def written_outside_jobs(server, root: Path, before: dict, after: dict) -> list[str]:
    """Paths created or changed under ``root`` that are not in the area of an existing job (nor the
    database or the notification sockets)."""
    data = Path(server.settings.DATA_DIR).relative_to(root)
    jobs = server.settings.jobs_dir.relative_to(root)
    existing = job_ids(server)
    bad = []
    for path, size in after.items():
        if before.get(path) == size:
            continue
        parts = Path(path).parts
        if parts[:len(jobs.parts)] == jobs.parts and len(parts) > len(jobs.parts) and parts[len(jobs.parts)] in existing:
            continue
        if parts[:len(data.parts)] == data.parts and len(parts) > len(data.parts) and (
                parts[len(data.parts)] == "run" or parts[len(data.parts)].startswith("opus.sqlite")):
            continue
        bad.append(path)
    return sorted(bad)


def canaries(tmp_path: Path) -> list[str]:
    found = [str(p) for p in Path("/tmp").glob(f"*{CANARY}*")]
    found += [str(p) for p in tmp_path.rglob(f"*{CANARY}*")]
    found += [str(p) for p in Path.cwd().glob(f"*{CANARY}*")]
    return found


def raw(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """A request whose path goes out exactly as written (requests would normalise dot segments)."""
    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(server.url).port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def wait_phase(url: str, phases, timeout: float = 20) -> str:
    """helpers.wait_phase for an anonymous caller."""
    return helpers.wait_phase(requests, url, phases, timeout)


def stop_jobs(server, urls) -> None:
    """Stop the processes of these jobs whatever their phase says (a forged report may have moved a
    running job to a phase that ABORT no longer accepts)."""
    for url in urls:
        job_id = url.rstrip("/").rsplit("/", 1)[1]
        requests.post(url + "/phase", data={"PHASE": "ABORT"})
        manager_id = server.services.store.get_manager_id(job_id)
        if manager_id is not None:
            server.services.manager.abort(job_id, manager_id)


def state(url: str):
    """What a job looks like: the JSON document (parameters, results, phase, times, error)."""
    r = requests.get(url, headers={"Accept": "application/json"})
    return r.json() if r.status_code == 200 else r.status_code
