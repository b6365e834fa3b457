"""The fault suite of the local manager (issue 14): every job runs exactly once and ends right.

Real processes throughout: the real wrapper in the real bubblewrap sandbox, real signals, a real
tmpfs that fills up, and (``test_kill_9_loop``) a real gunicorn killed with SIGKILL again and again.
The job ``counted`` appends a line to ``runs.txt`` in its work directory each time its script runs:
the sandbox makes that directory the only place it can write, and a second run of a job happens in
the same directory, so any second run shows.

The kill loop (3 kills, 15 jobs) and the ABORT race (10 jobs) run small here (``scripts/test.sh``);
``OPUS_FAULTS_FULL=1`` runs their full form (10 kills and 200 jobs; 40 jobs), and ``-s`` prints
the figures:

    OPUS_FAULTS_FULL=1 .venv/bin/pytest tests/test_faults_local.py -s -p no:cacheprovider
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import LiveServer, make_settings
from gunicorn_server import GunicornServer, cmdline, is_alive, processes_mentioning
from helpers import FINAL, wait_for, wait_phase

from opus.managers import jobrecord
from opus.managers.dispatch import WRAPPER
from opus.storage.jobfiles import JobFiles
from opus.uws import Phase

#: A job that counts its own runs (runs.txt survives in its work directory), then writes its text.
COUNTED = {
    "name": "counted", "description": "Counts its runs (tests/test_faults_local.py)",
    "executionDuration": 120,
    "parameters": {"text": {"type": "string", "default": "x"},
                   "seconds": {"type": "float", "default": "0", "min": 0, "max": 100000}},
    "generated": {"output": {"file": "output.txt", "content_type": "text/plain"}},
    "script": "echo run >> runs.txt\nsleep \"$seconds\"\nprintf '%s\\n' \"$text\" > output.txt\n",
}
#: A job that leaves a child in a session of its own (``setsid``), then sleeps: what must not survive.
ESCAPER = {
    "name": "escaper", "description": "Starts a setsid child (tests/test_faults_local.py)",
    "executionDuration": 600,
    "parameters": {"seconds": {"type": "float", "default": "1000", "min": 0, "max": 100000}},
    "script": "setsid sleep \"$seconds\" < /dev/null > /dev/null 2>&1 &\necho $! > setsid.pid\n"
              "echo started\nsleep \"$seconds\"\n",
}
#: A job that fills its file system: with ``keep`` set it writes its result first and succeeds.
FILLER = {
    "name": "filler", "description": "Fills the disk (tests/test_faults_local.py)", "executionDuration": 120,
    "parameters": {"keep": {"type": "string", "default": ""}},
    "generated": {"output": {"file": "output.txt", "content_type": "text/plain"}},
    "script": "echo result > output.txt\nhead -c 100000000 /dev/zero > fill.bin\n"
              "if [ -n \"$keep\" ]; then exit 0; fi\nexit 1\n",
}
FULL = os.environ.get("OPUS_FAULTS_FULL") == "1"


def with_definitions(settings):
    jdl = Path(settings.JDL_DIR)
    for definition in (COUNTED, ESCAPER, FILLER):
        (jdl / f"{definition['name']}.json").write_text(json.dumps(definition))
    return settings


def _id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def runs(jobs_dir: Path, job_id: str) -> int:
    try:
        return len((Path(jobs_dir) / job_id / "work" / "runs.txt").read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.fixture
def server(tmp_path):
    s = LiveServer(with_definitions(make_settings(tmp_path, CALLBACK_RETRY_SECONDS=2)))
    yield s
    s.stop()


# ---- launch exactly once ---------------------------------------------------------------------------
def _claimed(server, **data) -> tuple[str, str]:
    """A QUEUED job claimed by a launch under way (the dispatcher kept out of the way)."""
    server.services.manager.stop()
    url = server.create("counted", data)
    job_id = _id(url)
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
        job_id = _id(url)
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
    return url, _id(url), marker


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


# ---- a full disk ------------------------------------------------------------------------------------
@pytest.fixture
def tiny_data_dir(tmp_path):
    """DATA_DIR on a 4 MiB tmpfs (the tests run as root), the database outside it."""
    data = tmp_path / "var"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=755", "opus-faults-tmpfs", str(data)],
                   check=True)
    yield data
    subprocess.run(["umount", "-l", str(data)], check=False)


def _full_settings(tmp_path, data):
    return with_definitions(make_settings(tmp_path, DATA_DIR=str(data), CALLBACK_RETRY_SECONDS=1,
                                          DATABASE_URL=f"sqlite:///{tmp_path / 'opus.sqlite'}"))


def test_a_job_that_fills_the_disk_says_so(tmp_path, tiny_data_dir):
    server = LiveServer(_full_settings(tmp_path, tiny_data_dir))
    try:
        url = server.create("filler", run=True)
        assert server.wait_final(url, timeout=60) == "ERROR"
        xml = server.http.get(url).text
        assert "no space left on device while the job" in xml and "script ran" in xml, xml
        assert "exit status 1" in xml
    finally:
        server.stop()


def test_on_a_full_disk_the_report_survives_a_server_away(tmp_path, tiny_data_dir):
    """The disk is full when the job ends and the server is down: report.json cannot be written, the
    reserved slot keeps the report, and the next server applies it (results and all)."""
    settings = _full_settings(tmp_path, tiny_data_dir)
    jdl = Path(settings.JDL_DIR)
    slow = dict(FILLER, name="slowfiller", script="sleep 2\n" + FILLER["script"])
    (jdl / "slowfiller.json").write_text(json.dumps(slow))
    first = LiveServer(settings)
    url = first.create("slowfiller", {"keep": "yes"}, run=True)
    job_id = _id(url)
    wait_phase(first.http, url, "EXECUTING", timeout=60)
    first.stop()
    root = tiny_data_dir / "jobs" / job_id
    wait_for(lambda: jobrecord.launch_state(root).recorded and not jobrecord.launch_state(root).live, 60,
             "the wrapper to end while the server is down")
    assert not (root / "report.json").exists()
    assert jobrecord.saved_report(root)["phase"] == "COMPLETED"
    second = LiveServer(settings)
    try:
        second.services.manager.reconcile()  # what its dispatcher does at take-over (idempotent)
        assert second.wait_final(second.url + url.split(str(first.port), 1)[1]) == "COMPLETED"
        assert second.http.get(f"{second.url}/rest/slowfiller/{job_id}/results/output").text == "result\n"
    finally:
        second.stop()


# ---- ABORT racing completion --------------------------------------------------------------------------
def test_a_late_completion_of_an_aborted_job_leaves_no_files(server):
    from opus.auth.identity import job_token
    url = server.create("counted", {"seconds": "1000"}, run=True)
    job_id = _id(url)
    wait_phase(server.http, url, "EXECUTING", timeout=60)
    assert server.http.post(url + "/phase", data={"PHASE": "ABORT"}).status_code == 200
    results = JobFiles.of(server.settings.jobs_dir, job_id).results
    (results / "output.txt").write_text("late\n")  # what a wrapper that finished just then moved in
    r = server.http.post(server.url + "/handler/job_event", json={
        "job_id": job_id, "token": job_token(server.settings, job_id), "phase": "COMPLETED",
        "results": [{"result_id": "output", "file_name": "output.txt", "size": 5}]})
    assert r.status_code < 300, r.text
    assert server.http.get(url + "/phase").text == "ABORTED"
    assert not (results / "output.txt").exists()


def _wrappers_gone(jobs_dir: Path, ids: list[str]) -> bool:
    return not any(jobrecord.launch_state(Path(jobs_dir) / i).live for i in ids)


def test_abort_racing_completion(tmp_path):
    """Jobs ABORTed around the moment they complete: each ends ABORTED with no result file left on
    disk, or COMPLETED with its result; each ran once."""
    server = LiveServer(with_definitions(make_settings(tmp_path, MAX_RUNNING_JOBS=8)))
    try:
        count = 40 if FULL else 10
        urls = [server.create("counted", {"text": f"t{i}", "seconds": "0.3"}) for i in range(count)]

        def race(url: str) -> None:
            http = requests.Session()
            http.post(url + "/phase", data={"PHASE": "RUN"})
            wait_phase(http, url, ("EXECUTING",) + FINAL, timeout=60)
            threading.Event().wait(random.uniform(0.1, 0.6))  # the race: ABORT around the script's end
            http.post(url + "/phase", data={"PHASE": "ABORT"})

        # A few racers at a time: the test server's listen backlog is small.
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(race, urls))
        ids = [_id(u) for u in urls]
        phases = {i: wait_phase(server.http, u, FINAL, timeout=60) for i, u in zip(ids, urls)}
        wait_for(lambda: _wrappers_gone(server.settings.jobs_dir, ids), 60, "every wrapper to end")
        for job_id, phase in phases.items():
            left = sorted(p.name for p in JobFiles.of(server.settings.jobs_dir, job_id).results.iterdir())
            if phase == "ABORTED":  # the script may not have started yet: at most one run
                assert left == [] and runs(server.settings.jobs_dir, job_id) <= 1, (job_id, left)
            else:
                assert phase == "COMPLETED" and left == ["output.txt"], (job_id, phase, left)
                assert runs(server.settings.jobs_dir, job_id) == 1
        print(f"abort race: {sorted(phases.values()).count('ABORTED')} ABORTED, "
              f"{sorted(phases.values()).count('COMPLETED')} COMPLETED")
    finally:
        server.stop()


# ---- kill -9 of the whole server, in a loop -----------------------------------------------------------
JOBREF = __import__("re").compile(r'<uws:jobref id="([^"]+)"[^>]*>\s*<uws:phase>([A-Z]+)</uws:phase>')


def _kill_9(server: GunicornServer) -> None:
    """SIGKILL gunicorn's master and workers at once (the job wrappers live on: own sessions)."""
    pids = [server.proc.pid, *server.worker_pids()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.proc.wait()
    wait_for(lambda: not any(is_alive(p) for p in pids), 30, "gunicorn to be gone")


def _all_jobs(server: GunicornServer) -> dict[str, str]:
    r = requests.get(f"{server.url}/rest/counted", timeout=30)
    assert r.status_code == 200, r.text
    return dict(JOBREF.findall(r.text))


def test_kill_9_loop(tmp_path, database_url):
    """Jobs created, launched and completed while the server is killed with SIGKILL again and again
    (on SQLite and on PostgreSQL): after the last restart every job settles, each that ran ran once,
    and its result is its own."""
    kills, per_round = (10, 20) if FULL else (3, 5)
    jdl = tmp_path / "jdl"
    jdl.mkdir()
    (jdl / "counted.json").write_text(json.dumps(COUNTED))
    server = GunicornServer(tmp_path, workers=2, database_url=database_url, JDL_DIR=str(jdl), MAX_RUNNING_JOBS=6,
                            LOG_LEVEL="WARNING", SERVICE_USER="root")
    texts: dict[str, str] = {}
    allowed = [0]  # how many jobs the clients may have created so far
    stop = threading.Event()

    def client() -> None:
        http = requests.Session()
        n = 0
        while not stop.is_set():
            if len(texts) >= allowed[0]:
                stop.wait(0.05)
                continue
            n += 1
            text = f"job-{n}-{secrets.token_hex(3)}"
            try:
                r = http.post(f"{server.url}/rest/counted", allow_redirects=False, timeout=10,
                              data={"text": text, "seconds": f"{random.uniform(0, 1.5):.2f}", "PHASE": "RUN"})
                if r.status_code == 303:
                    texts[_id(r.headers["Location"])] = text
                stop.wait(random.uniform(0.05, 0.3))  # a steady flow, not a flood
            except requests.RequestException:
                stop.wait(0.2)  # the server is down: try again soon

    try:
        server.start()
        threads = [threading.Thread(target=client, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        for round_ in range(kills):
            # Kill while this round's jobs are being created, launched and completed.
            allowed[0] = (round_ + 1) * per_round
            wait_for(lambda: len(texts) >= round_ * per_round + per_round // 2, 120, "jobs to be created")
            threading.Event().wait(random.uniform(0, 0.5))
            _kill_9(server)
            server.start()
            restarted = time.monotonic()
        wait_for(lambda: len(texts) >= kills * per_round, 120, "the last jobs to be created")
        stop.set()
        for t in threads:
            t.join(30)
        wait_for(lambda: all(p in FINAL or p == "PENDING" for p in _all_jobs(server).values()), 120,
                 "every job to settle after the last restart")
        settle = time.monotonic() - restarted
        jobs = _all_jobs(server)
        counts = {job_id: runs(server.data_dir / "jobs", job_id) for job_id in jobs}
        for job_id, phase in jobs.items():
            if phase == "PENDING":  # created, but the answer was lost before it was queued: never ran
                assert counts[job_id] == 0, job_id
                continue
            assert phase == "COMPLETED", (job_id, phase,
                                          requests.get(f"{server.url}/rest/counted/{job_id}").text)
            assert counts[job_id] == 1, (job_id, counts[job_id])
            if job_id in texts:
                got = requests.get(f"{server.url}/rest/counted/{job_id}/results/output").text
                assert got == texts[job_id] + "\n", (job_id, got)
        print(f"\nkill -9 loop: {kills} kills, {len(jobs)} jobs ({len(texts)} answered to the client), "
              f"{sum(1 for p in jobs.values() if p == 'COMPLETED')} COMPLETED, "
              f"{sum(1 for p in jobs.values() if p == 'PENDING')} PENDING; runs per job: "
              f"{sorted(set(counts.values()))}; settled {settle:.1f} s after the last restart")
    finally:
        stop.set()
        server.close()
