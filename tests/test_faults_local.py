"""The fault suite of the local manager (issue 14): every job runs exactly once and ends right.

Real processes throughout: the real wrapper in the real bubblewrap sandbox, real signals, a real
tmpfs that fills up, and a real gunicorn killed with SIGKILL again and again.  The job ``counted``
(tests/faults_local.py) appends a line to ``runs.txt`` in its work directory each time its script
runs: the sandbox makes that directory the only place it can write, and a second run of a job
happens in the same directory, so any second run shows.  The suite, by responsibility:

* tests/test_faults_local.py (this file): a job is launched exactly once, whatever cuts the launch;
  the wrapper on its own (a server away, a second wrapper);
* tests/test_faults_local_orphans.py: no process of a job survives it (setsid children, killed and
  stopped wrappers);
* tests/test_faults_local_disk.py: a full disk (a tmpfs: the tests run as root);
* tests/test_faults_local_races.py: ABORT racing completion, and kill -9 of the whole server in a loop.

The kill loop (3 kills, 15 jobs) and the ABORT race (10 jobs) run small here (``scripts/test.sh``);
``OPUS_FAULTS_FULL=1`` runs their full form (10 kills and 200 jobs; 40 jobs), and ``-s`` prints
the figures:

    OPUS_FAULTS_FULL=1 .venv/bin/pytest tests/test_faults_local*.py -s -p no:cacheprovider
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import LiveServer, make_settings
from faults_local import id_of, runs, with_definitions
from faults_local import server  # noqa: F401  (a fixture)
from helpers import FINAL, wait_for, wait_phase

from opus.managers import jobrecord
from opus.managers.dispatch import WRAPPER
from opus.storage.jobfiles import JobFiles
from opus.uws import Phase


# ---- launch exactly once ---------------------------------------------------------------------------
def _claimed(server, **data) -> tuple[str, str]:
    """A QUEUED job claimed by a launch under way (the dispatcher kept out of the way)."""
    server.services.manager.stop()
    url = server.create("counted", data)
    job_id = id_of(url)
    store = server.services.store
    assert store.set_phase(job_id, Phase.QUEUED, [Phase.PENDING])
    assert store.claim(job_id, "local:starting")
    return url, job_id


def test_a_launch_cut_after_the_wrapper_started_is_adopted_not_run_again(server):
    """kill -9 of the server between starting the wrapper and recording its pid: at restart the
    job is adopted (its wrapper holds the launch record), never launched a second time."""
    url, job_id = _claimed(server, seconds="1")
    manager = server.services.manager
    manager._launch(job_id)
    # What a server killed at that moment leaves: the job "starting", no process knowing the wrapper.
    server.services.store.update_job(job_id, manager_id="local:starting")
    manager._children.clear()
    manager.reconcile()  # the next server's take-over
    manager.tick()
    assert wait_phase(server.http, url, FINAL, timeout=60) == "COMPLETED", server.http.get(url).text
    assert runs(server.settings.jobs_dir, job_id) == 1
    manager.tick()
    assert runs(server.settings.jobs_dir, job_id) == 1


def test_a_launch_record_without_wrapper_or_report_is_an_error_never_a_second_run(server):
    url, job_id = _claimed(server)
    files = JobFiles.of(server.settings.jobs_dir, job_id)
    files.root.mkdir(parents=True, exist_ok=True)
    fd = jobrecord.launch(files.root)
    jobrecord.note(fd, wrapper=999999999, at="2026-01-01T00:00:00Z")
    jobrecord.note(fd, script="started", at="2026-01-01T00:00:00Z")
    os.close(fd)  # the wrapper is gone
    manager = server.services.manager
    manager.reconcile()
    manager.tick()
    assert server.http.get(url + "/phase").text == "ERROR"
    assert "the server stopped while launching the job" in server.http.get(url).text
    assert "not run again" in server.http.get(url).text
    assert runs(server.settings.jobs_dir, job_id) == 0


def test_a_launch_cut_before_the_script_started_runs_once(server):
    url, job_id = _claimed(server)
    files = JobFiles.of(server.settings.jobs_dir, job_id)
    files.root.mkdir(parents=True, exist_ok=True)
    os.close(jobrecord.launch(files.root))  # recorded, but no wrapper ever noted a script start
    manager = server.services.manager
    manager.reconcile()
    # Handed back to the queue, then launched by a turn of the dispatcher.  A turn may first find the
    # record still locked: a process forked elsewhere in this test process (fork, then exec) holds a
    # copy of the descriptor for a moment, and the job is looked at again on the next turn.
    phase = server.services.store.get_phase

    def settled() -> bool:
        manager.tick()
        return phase(job_id) in FINAL

    wait_for(settled, 60, "the job to run")
    assert wait_phase(server.http, url, FINAL, timeout=60) == "COMPLETED", server.http.get(url).text
    assert runs(server.settings.jobs_dir, job_id) == 1


def test_a_launch_that_failed_in_a_running_server_is_settled_without_a_restart(tmp_path, monkeypatch):
    """A claim whose launch failed in this very process (the database away at the wrong moment) is
    not left "starting" until the next restart: the dispatcher reconciles periodically."""
    from opus.managers.local import LocalManager
    monkeypatch.setattr(LocalManager, "reconcile_every", 0.5)
    server = LiveServer(with_definitions(make_settings(tmp_path)))
    try:
        url = server.create("counted")
        job_id = id_of(url)
        store = server.services.store
        assert store.set_phase(job_id, Phase.QUEUED, [Phase.PENDING], manager_id="local:starting")
        assert wait_phase(server.http, url, FINAL, timeout=60) == "COMPLETED"
        assert runs(server.settings.jobs_dir, job_id) == 1
    finally:
        server.stop()


def test_a_saved_report_wins_over_a_live_wrapper_at_restart(server):
    """A wrapper still retrying its callback while the server was down: its report is applied at
    take-over, without waiting for the next retry."""
    url, job_id = _claimed(server, text="kept", seconds="1000")
    manager = server.services.manager
    manager._launch(job_id)
    proc = manager._children[job_id]
    try:
        files = JobFiles.of(server.settings.jobs_dir, job_id)
        wait_for(lambda: jobrecord.launch_state(files.root).wrapper_pid, 30, "the wrapper to note its pid")
        os.kill(proc.pid, signal.SIGSTOP)  # a wrapper between two retries, holding its launch record
        files.work.mkdir(exist_ok=True)
        (files.results / "output.txt").write_text("kept\n")
        jobrecord.write_report(files.root, {"phase": "COMPLETED", "results": [
            {"result_id": "output", "file_name": "output.txt", "size": 5}]})
        manager._children.clear()
        manager.reconcile()
        assert server.http.get(url + "/phase").text == "COMPLETED"
        assert server.http.get(url + "/results/output").text == "kept\n"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


# ---- the wrapper on its own -------------------------------------------------------------------------
def _job_dir(tmp_path: Path, callback_url: str, manager: str, script: str = "echo run >> runs.txt\n",
             retry: int = 900) -> Path:
    root = tmp_path / "job"
    (root / "work").mkdir(parents=True)
    (root / "script.sh").write_text(script)
    (root / "job.json").write_text(json.dumps({
        "job_id": "j1", "jobname": "t", "token": "t", "callback_url": callback_url, "manager": manager,
        "execution_duration": 0, "kill_grace": 0.5, "retry_seconds": retry, "environment": {},
        "parameters": {}, "fetch": [], "generated": [], "sandbox": {"mode": "none"}}))
    return root


def _dead_url() -> str:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _wrapper(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-I", "-S", str(WRAPPER), str(root / "job.json")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_under_slurm_the_wrapper_exits_soon_after_its_report_while_the_server_is_down(tmp_path):
    """Point 5: with the server away, the wrapper keeps its report and ends (the epilog and the
    reconciliation recover it) instead of holding the allocation for CALLBACK_RETRY_SECONDS."""
    root = _job_dir(tmp_path, _dead_url(), "slurm")
    proc = _wrapper(root)
    try:
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert jobrecord.saved_report(root)["phase"] == "COMPLETED"
    assert (root / "work" / "runs.txt").read_text() == "run\n"


def test_a_wrapper_never_starts_a_script_that_was_started_before(tmp_path):
    """A second wrapper for the same job directory (a SLURM requeue, a second launch): no second run."""
    root = _job_dir(tmp_path, _dead_url(), "slurm", retry=1)
    assert _wrapper(root).wait(timeout=60) == 0
    (root / "report.json").unlink()
    (root / "report.slot").unlink()
    assert _wrapper(root).wait(timeout=60) == 1
    assert (root / "work" / "runs.txt").read_text() == "run\n"
    report = jobrecord.saved_report(root)
    assert report["phase"] == "ERROR" and "not run again" in report["message"]


def test_a_second_wrapper_leaves_a_live_one_alone(tmp_path):
    root = _job_dir(tmp_path, _dead_url(), "slurm", script="echo run >> runs.txt\nsleep 1000\n", retry=1)
    first = _wrapper(root)
    try:
        wait_for(lambda: jobrecord.launch_state(root).script_started, 30, "the first script to start")
        second = _wrapper(root)
        assert second.wait(timeout=60) == 0
        assert (root / "work" / "runs.txt").read_text() == "run\n"
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(60)
