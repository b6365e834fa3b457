"""The local manager's fault suite (tests/test_faults_local.py), part two: no process of a job
survives it — children that left the script's session (``setsid``), in and out of the sandbox, when
the job is aborted, overruns its limit, or its wrapper is killed or stopped."""

from __future__ import annotations

import os
import random
import signal

import pytest
from conftest import LiveServer, make_settings
from faults_local import id_of, with_definitions
from faults_local import server  # noqa: F401  (a fixture)
from gunicorn_server import cmdline, is_alive, processes_mentioning
from helpers import FINAL, wait_for, wait_phase


# ---- no orphan survives ----------------------------------------------------------------------------
def _marker() -> str:
    return f"1000.{random.randrange(10**6, 10**7)}"


def _sleepers(marker: str) -> list[int]:
    return [p for p in processes_mentioning(f"sleep {marker}") if cmdline(p).startswith("sleep")]


def _own_session(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[3]) == pid
    except (OSError, IndexError, ValueError):
        return False


def _escaper(server, **data) -> tuple[str, str, str]:
    marker = _marker()
    url = server.create("escaper", {"seconds": marker, **data}, run=True)
    wait_phase(server.http, url, "EXECUTING", timeout=60)
    wait_for(lambda: len(_sleepers(marker)) == 2, 30, "the script and its setsid child to run")
    assert any(_own_session(p) for p in _sleepers(marker)), "the child did not leave the script's session"
    return url, id_of(url), marker


def _wrapper_pid(server, job_id: str) -> int:
    def known() -> str:
        pid = (server.services.store.get_manager_id(job_id) or "").removeprefix("local:")
        return pid if pid.isdigit() else ""

    return int(wait_for(known, 30, "the wrapper's pid"))


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
def test_abort_kills_setsid_children(tmp_path, sandbox):
    server = LiveServer(with_definitions(make_settings(tmp_path, JOB_SANDBOX=sandbox)))
    try:
        url, _job_id, marker = _escaper(server)
        r = server.http.post(url + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False)
        assert r.status_code == 303
        wait_for(lambda: not _sleepers(marker), 30, "every process of the aborted job to end")
    finally:
        server.stop()


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
def test_execution_duration_kills_setsid_children(tmp_path, sandbox):
    server = LiveServer(with_definitions(make_settings(tmp_path, JOB_SANDBOX=sandbox)))
    try:
        url, _job_id, marker = _escaper(server, EXECUTIONDURATION="3")
        assert wait_phase(server.http, url, FINAL, timeout=60) == "ABORTED"
        wait_for(lambda: not _sleepers(marker), 30, "every process of the job to end")
    finally:
        server.stop()


def test_a_killed_wrapper_takes_its_script_and_setsid_children_with_it(server):
    url, job_id, marker = _escaper(server)
    os.kill(_wrapper_pid(server, job_id), signal.SIGKILL)
    wait_for(lambda: not _sleepers(marker), 30, "the script and its setsid child to die with the wrapper")
    assert wait_phase(server.http, url, FINAL, timeout=30) == "ERROR"
    assert "ended without reporting" in server.http.get(url).text


def test_without_the_sandbox_a_killed_wrapper_leaves_no_script_behind(tmp_path):
    """JOB_SANDBOX = "none": the server kills the script's process group when the wrapper dies (a
    setsid child can escape that: docs/deployment.md)."""
    server = LiveServer(with_definitions(make_settings(tmp_path, JOB_SANDBOX="none")))
    try:
        url, job_id, marker = _escaper(server)
        script = [p for p in _sleepers(marker) if not _own_session(p)]
        os.kill(_wrapper_pid(server, job_id), signal.SIGKILL)
        assert wait_phase(server.http, url, FINAL, timeout=30) == "ERROR"
        wait_for(lambda: not any(is_alive(p) for p in script), 30, "the script to be killed")
    finally:
        for pid in _sleepers(marker):
            os.kill(pid, signal.SIGKILL)
        server.stop()


def test_a_stopped_wrapper_does_not_let_its_job_overrun_its_limit(server):
    """EXECUTIONDURATION from the server's side: a SIGSTOPped wrapper cannot stop its job itself."""
    url, job_id, marker = _escaper(server, EXECUTIONDURATION="2")
    os.kill(_wrapper_pid(server, job_id), signal.SIGSTOP)
    assert wait_phase(server.http, url, FINAL, timeout=60) == "ABORTED"
    assert "stopped by the server" in server.http.get(url).text
    wait_for(lambda: not _sleepers(marker), 30, "every process of the job to end")
