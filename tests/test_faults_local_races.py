"""The local manager's fault suite (tests/test_faults_local.py), part four: ABORT racing a
completion, and a real gunicorn killed with SIGKILL again and again while jobs are created,
launched and completed.  Small here; ``OPUS_FAULTS_FULL=1`` runs them in full (``-s`` prints the
figures)."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from conftest import LiveServer, make_settings
from faults_local import COUNTED, FULL, id_of, runs, with_definitions
from faults_local import server  # noqa: F401  (a fixture)
from gunicorn_server import GunicornServer, is_alive
from helpers import FINAL, wait_for, wait_phase

from opus.managers import jobrecord
from opus.storage.jobfiles import JobFiles


# ---- ABORT racing completion --------------------------------------------------------------------------
def test_a_late_completion_of_an_aborted_job_leaves_no_files(server):
    from opus.auth.identity import job_token
    url = server.create("counted", {"seconds": "1000"}, run=True)
    job_id = id_of(url)
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
        ids = [id_of(u) for u in urls]
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
                    texts[id_of(r.headers["Location"])] = text
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
