"""End-to-end tests against a real deployment: `opus init` + gunicorn (gthread) with two workers.

They cover what only a multi-process server shows: WAIT woken across workers (opus.events.notify), the
single dispatcher of the local manager, detached job wrappers that outlive a server restart, the
process hygiene of time limits and ABORT, and shell-safe parameter passing.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import threading
import time

import pytest
import requests

from opus.settings import REPO_ROOT
from gunicorn_server import GunicornServer, cmdline, is_alive, live_group_members, requests_read
from helpers import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def make_server(tmp_path):
    """make_server(**settings) -> a started GunicornServer with 2 workers; stopped at the end."""
    servers = []

    def make(workers: int = 2, **settings) -> GunicornServer:
        server = GunicornServer(tmp_path, workers=workers, **settings)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()


#: MAX_WAIT of the tests that ask for WAITs of an hour, far beyond the client's timeout: a WAIT answered
#: at all was answered before its time, and no clock is read (a busy machine cannot break the test).
HOUR = 3600
CLIENT_TIMEOUT = 90


class Waiter(threading.Thread):
    """One blocking GET on a connection of its own (Connection: close)."""

    def __init__(self, server: GunicornServer, path: str):
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=CLIENT_TIMEOUT)
        self.conn.connect()
        self.port = self.conn.sock.getsockname()[1]
        self.path = path
        self.status: int | None = None
        self.body = b""
        self.ended: float | None = None
        self.error: Exception | None = None
        self.sent = threading.Event()

    def run(self):
        try:
            self.conn.request("GET", self.path, headers={"Connection": "close", "Accept": "application/json"})
            self.sent.set()
            resp = self.conn.getresponse()
            self.status, self.body = resp.status, resp.read()
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            self.ended = time.monotonic()
            self.conn.close()

    def json(self) -> dict:
        return json.loads(self.body)


def start_waiters_on_all_workers(server: GunicornServer, path: str, at_least: int = 8,
                                 per_worker: int = 2, limit: int = 60) -> list[Waiter]:
    """Start blocking requests until every worker holds at least ``per_worker`` of them."""
    waiters: list[Waiter] = []
    deadline = time.monotonic() + 60
    while True:
        while len(waiters) < at_least:
            w = Waiter(server, path)
            w.start()
            waiters.append(w)
            time.sleep(0.01)  # gives every worker a chance at the accept
        # wait until each connection has been accepted by some worker
        def accepted() -> dict | None:
            by_worker = server.connections_by_worker()
            held = set().union(*by_worker.values())
            return by_worker if all(w.port in held for w in waiters if w.ended is None) else None

        by_worker = wait_for(accepted, max(0.1, deadline - time.monotonic()),
                             "every connection to be accepted")
        counts = {pid: sum(1 for w in waiters if w.port in ports) for pid, ports in by_worker.items()}
        if len(counts) == server.workers and min(counts.values()) >= per_worker:
            break
        assert len(waiters) < limit, f"could not spread {len(waiters)} waiters over the workers: {counts}"
        at_least = len(waiters) + 2
    assert all(w.sent.wait(60) for w in waiters)
    ports = {w.port for w in waiters}
    wait_for(lambda: requests_read(server.port, ports) == len(ports), 60, "every WAIT request to be read")
    time.sleep(0.3)  # read, then registered as a wait
    early = [w for w in waiters if w.ended is not None]
    assert not early, f"{len(early)} WAIT request(s) returned before any change: {[w.status for w in early]}"
    return waiters


def hold_waits(server: GunicornServer, path: str, n: int) -> list[Waiter]:
    """``n`` WAIT requests of ``path`` on connections of their own, read by the server and held."""
    held = [Waiter(server, path) for _ in range(n)]
    for w in held:
        w.start()
    assert all(w.sent.wait(60) for w in held)
    wait_for(lambda: requests_read(server.port, {w.port for w in held}) == n, 60, f"the {n} WAITs to be read")
    time.sleep(0.3)  # read, then blocked: each is answered only on a change
    assert not any(w.ended for w in held), [w.status for w in held]
    return held


def job_path(job_url: str) -> str:
    return "/" + job_url.split("/", 3)[3]


# ---- 1. a job runs, WAIT returns on the change (SQLite and PostgreSQL) ------------------------------------
def test_jobs_run_and_wait_returns_on_change(make_server, database_url):
    server = make_server(database_url=database_url, MAX_WAIT=HOUR)
    url = server.create("dummy", {"text": "hello gunicorn"}, run=True)
    job = server.wait_for(url, "COMPLETED", timeout=60)
    assert [r["id"] for r in job["results"]] == ["output"]
    assert server.http.get(url + "/results/output").text == "hello gunicorn\n"

    # EXECUTING -> COMPLETED: every WAIT of an hour, on whichever worker, ends when the job does (~1.5 s):
    # answered at all within the client's timeout, it was woken by the change (no clock read).
    # at its timeout: half the WAIT is a bound no machine load reaches; how fast is bench/'s business.
    url = server.create("sleep", {"seconds": "1.5"}, run=True)
    server.wait_for(url, "EXECUTING", timeout=60)
    waiters = [Waiter(server, job_path(url) + f"?WAIT={HOUR}") for _ in range(6)]
    for w in waiters:
        w.start()
    for w in waiters:
        w.join(CLIENT_TIMEOUT + 10)
    for w in waiters:
        assert w.error is None and w.status == 200, (w.error, w.status, w.body)
        assert w.json()["phase"] == "COMPLETED"
    assert server.http.get(url + "/results/done").text == "done\n"


# ---- 2. WAIT across workers -------------------------------------------------------------------------------
def test_wait_is_woken_across_workers(make_server):
    # Every WAIT asks for an hour: one answered within the client's timeout was woken (no clock read).
    server = make_server(MAX_WAIT=HOUR)

    # PHASE=RUN posted on yet another connection wakes the waiters of both workers
    url = server.create("sleep", {"seconds": "0.5"})
    waiters = start_waiters_on_all_workers(server, job_path(url) + f"?WAIT={HOUR}")
    r = requests.post(url, data={"PHASE": "RUN"}, headers={"Connection": "close"}, allow_redirects=False)
    assert r.status_code == 303, r.text
    for w in waiters:
        w.join(CLIENT_TIMEOUT + 10)
    for w in waiters:
        assert w.error is None and w.status == 200, (w.error, w.status, w.body)
        assert w.json()["phase"] != "PENDING"
    server.wait_for(url, "COMPLETED")

    # WAIT with a PHASE the job is not in returns at once
    url = server.create("sleep", {"seconds": "0.5"})
    job = server.job(url, WAIT=HOUR, PHASE="QUEUED")  # answered within the client's timeout: at once
    assert job["phase"] == "PENDING"

    # DELETE on yet another connection wakes the waiters of both workers: the job is gone (404)
    waiters = start_waiters_on_all_workers(server, job_path(url) + f"?WAIT={HOUR}")
    r = requests.delete(url, headers={"Connection": "close"}, allow_redirects=False)
    assert r.status_code == 303, r.text
    for w in waiters:
        w.join(CLIENT_TIMEOUT + 10)
    answers = [(w.status, w.json().get("phase") if w.status == 200 else None) for w in waiters]
    assert all(w.error is None for w in waiters)
    assert all(status == 404 for status, _ in answers), \
        f"WAIT on a job being deleted must answer 404, got (status, phase) {answers}"


def test_wait_is_capped_by_max_wait(make_server):
    server = make_server(MAX_WAIT=2)
    url = server.create("sleep", {"seconds": "0.5"})
    for wait in ("-1", "3600"):
        # Answered instead of held the hour (or forever) asked for: an uncapped WAIT fails here by
        # server.job's 90 s client timeout.  No clock is read: that a WAIT is held until its job
        # changes (never returned early) is checked by bench/waiters.py's "returned early" count.
        job = server.job(url, WAIT=wait)
        assert job["phase"] == "PENDING"


def test_waits_never_take_every_thread(make_server):
    """A worker of 8 threads holds at most 6 WAITs (8 less a reserve of 2, opus.service.waitslots):
    the 7th and 8th are answered at once, and any other request is served meanwhile.  Without the
    limit, 8 WAITs held every thread and /availability, a GET, a creation waited for MAX_WAIT.
    MAX_WAIT is an hour: a request answered within its client's timeout was not held behind a WAIT
    (no clock is read, so a busy machine cannot fail it)."""
    server = make_server(workers=1, MAX_WAIT=3600, METRICS_PUBLIC=True, gunicorn_args=("--threads", "8"))
    url = server.create("dummy")
    held = hold_waits(server, job_path(url) + "?WAIT=3600", 6)

    over = [Waiter(server, job_path(url) + "?WAIT=3600") for _ in range(2)]
    for w in over:
        w.start()
    for w in over:
        w.join(90)  # the Waiter's own timeout: held, it would end without a status
    assert [(w.status, w.json()["phase"]) for w in over] == [(200, "PENDING")] * 2, [w.body for w in over]
    r = requests.get(f"{server.url}/availability", headers={"Connection": "close"}, timeout=60)
    assert r.status_code == 200
    url2 = server.create("dummy")
    assert not any(w.ended for w in held)
    metrics = requests.get(f"{server.url}/metrics", headers={"Connection": "close"}, timeout=60).text
    assert "opus_waits_answered_at_once_total 2.0" in metrics, metrics
    assert "a WAIT was answered at once: this process already holds 6" in server.log_tail(200)

    # The six were held, not cut: the change ends them, and the slots are free again.
    r = requests.post(url + "/phase", data={"PHASE": "ABORT"}, headers={"Connection": "close"},
                      allow_redirects=False, timeout=60)
    assert r.status_code == 303
    for w in held:
        w.join(90)
    assert [(w.status, w.json()["phase"]) for w in held] == [(200, "ABORTED")] * 6
    again = Waiter(server, job_path(url2) + "?WAIT=2")
    began = time.monotonic()
    again.start()
    again.join(90)
    assert again.status == 200 and time.monotonic() - began >= 1.5  # held its 2 s (a lower bound): a slot was free


def test_a_reload_or_a_stop_answers_the_waits_at_once(make_server):
    """SIGHUP (workers replaced) and SIGTERM (stop): every WAIT held is answered at once, 200 with the
    job as it is (gunicorn.conf.py, Notifier.end_waits), and the client can ask again.  Before: a
    reload kept the old workers until their WAITs ran out, and a stop cut them without an answer
    after graceful_timeout (30 s; pyvo's wait() raised).  The WAITs ask for an hour: answered within
    the Waiter's 90 s timeout means answered early, with no clock read."""
    server = make_server(MAX_WAIT=3600)
    url = server.create("dummy")
    old_workers = set(server.worker_pids())
    waiters = start_waiters_on_all_workers(server, job_path(url) + "?WAIT=3600")
    os.kill(server.proc.pid, signal.SIGHUP)
    for w in waiters:
        w.join(90)
    assert [(w.error, w.status) for w in waiters] == [(None, 200)] * len(waiters)
    assert {w.json()["phase"] for w in waiters} == {"PENDING"}
    wait_for(lambda: len(server.worker_pids()) == 2 and not old_workers & set(server.worker_pids()), 60,
             "the old workers to exit")

    # The new workers hold WAITs as before; a stop answers them too (cut, they would have no status).
    waiters = start_waiters_on_all_workers(server, job_path(url) + "?WAIT=3600")
    server.stop()
    for w in waiters:
        w.join(90)
    assert [(w.error, w.status) for w in waiters] == [(None, 200)] * len(waiters)
    assert {w.json()["phase"] for w in waiters} == {"PENDING"}


def test_a_worker_retired_by_max_requests_answers_its_waits(make_server):
    """gunicorn's max_requests retires a worker without a signal: its WAITs are answered at once, as on
    a stop (gunicorn.conf.py watches the worker).  Before, they were held until graceful_timeout and
    then cut.  graceful_timeout and the WAITs are an hour here: an answer within the Waiter's timeout
    was an early one (no clock read)."""
    server = make_server(workers=1, MAX_WAIT=HOUR,
                         gunicorn_args=("--max-requests", "12", "--graceful-timeout", str(HOUR)))
    url = server.create("dummy")
    (first_worker,) = server.worker_pids()
    held = hold_waits(server, job_path(url) + f"?WAIT={HOUR}", 3)

    # Requests until gunicorn retires the worker (its 12th request, the WAITs and the creation included)
    for _ in range(12):
        if "Autorestarting worker" in server.log_tail(200):
            break
        r = requests.get(f"{server.url}/availability", headers={"Connection": "close"}, timeout=60)
        assert r.status_code == 200
    assert "Autorestarting worker" in server.log_tail(200)
    for w in held:
        w.join(CLIENT_TIMEOUT + 10)
    assert [(w.error, w.status) for w in held] == [(None, 200)] * 3
    assert {w.json()["phase"] for w in held} == {"PENDING"}
    wait_for(lambda: server.worker_pids() and first_worker not in server.worker_pids(), 60,
             "the retired worker to be replaced")
    assert server.phase(url) == "PENDING"  # the new worker serves


# ---- 3. parameter values never reach a shell as code ------------------------------------------------------
def test_parameter_values_are_not_shell_code(make_server):
    server = make_server()
    tag = secrets.token_hex(4)
    values = [f"$(touch pwned-{tag})", f"'; touch pwned2-{tag} #", f"`touch pwned3-{tag}`",
              f'"; touch pwned4-{tag}; echo "', f"x\ntouch pwned5-{tag}",
              f"$HOME ${{IFS}} \\ * ~ ; | & pwned6-{tag}"]
    urls = [server.create("dummy", {"text": v}, run=True) for v in values]
    for value, url in zip(values, urls):
        job = server.wait_for(url, "COMPLETED", timeout=60)
        assert [p["value"] for p in job["parameters"] if p["id"] == "text"] == [value]
        out = server.http.get(url + "/results/output")
        assert out.status_code == 200
        assert out.content.decode() == value + "\n"

    found = []
    for top in (server.data_dir, server.tmp_path, REPO_ROOT):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d not in (".venv", ".git", "node_modules")]
            found += [os.path.join(dirpath, f) for f in filenames + dirnames
                      if tag in f or (top != REPO_ROOT and f.startswith("pwned"))]
    assert not found, f"a parameter value was run as shell code: {found}"


# ---- 4. time limit and ABORT leave no process behind ------------------------------------------------------
def _running_sleep_job(server: GunicornServer, **data) -> tuple[str, str, int, int, int]:
    """Start a sleep job and wait until its child runs: (url, id, child pid, wrapper pid, script pgid)."""
    url = server.create("sleep", {"seconds": str(HOUR), **data}, run=True)
    job_id = url.rsplit("/", 1)[1]
    server.wait_for(url, "EXECUTING", timeout=60)
    child_file = server.job_dir(job_id) / "work" / "child.pid"
    wait_for(lambda: child_file.is_file() and child_file.read_text().strip()
             and (server.job_dir(job_id) / "script.pgid").is_file(), 60, "the sleep job to write work/child.pid")
    pgid = int((server.job_dir(job_id) / "script.pgid").read_text())
    # child.pid holds the pid inside the job's sandbox (a PID namespace): find the sleep as the host sees it.
    sleeps = wait_for(lambda: [p for p in live_group_members(pgid) if cmdline(p).startswith("sleep ")], 60,
                      "the sleep job's child in the script's process group")
    child = sleeps[0]
    wrapper = server.wrapper_pid(job_id)
    assert wrapper is not None, "no wrapper process found for the job"
    assert is_alive(child) and is_alive(wrapper)
    assert live_group_members(wrapper) and live_group_members(pgid)
    return url, job_id, child, wrapper, pgid


def _assert_all_gone(child: int, wrapper: int, pgid: int, within: float) -> None:
    def left() -> dict:
        return {"sleep child": [child] if is_alive(child) else [],
                "wrapper group": live_group_members(wrapper), "script group": live_group_members(pgid)}

    if not wait_for(lambda: not any(left().values()), within, quietly=True):
        raise AssertionError(f"processes left behind {within} s later: {left()}")


def test_time_limit_and_abort_leave_no_process(make_server):
    server = make_server()

    # executionDuration exceeded
    url, _, child, wrapper, pgid = _running_sleep_job(server, EXECUTIONDURATION="1")
    job = server.wait_for(url, "ABORTED", timeout=120)  # stopped by the 1 s limit: its sleep is of an hour
    assert "executionDuration" in (job["errorSummary"] or {}).get("message", ""), job["errorSummary"]
    _assert_all_gone(child, wrapper, pgid, within=60)

    # PHASE=ABORT on an executing job
    url, _, child, wrapper, pgid = _running_sleep_job(server)
    server.post_phase(url, "ABORT")
    assert server.phase(url) == "ABORTED"
    _assert_all_gone(child, wrapper, pgid, within=60)
    time.sleep(0.3)  # the wrapper's own ABORTED report must not change anything
    job = server.job(url)
    assert job["phase"] == "ABORTED" and job["results"] == []


# ---- 5. jobs survive a server restart ---------------------------------------------------------------------
def test_jobs_survive_a_restart(make_server):
    server = make_server(MAX_RUNNING_JOBS=1)
    pending = server.create("dummy", {"text": "kept across restarts"})
    running = server.create("sleep", {"seconds": "3"}, run=True)
    run_id = running.rsplit("/", 1)[1]
    server.wait_for(running, "EXECUTING", timeout=60)
    queued = server.create("dummy", {"text": "queued before the restart"}, run=True)
    time.sleep(0.3)
    assert server.phase(queued) == "QUEUED"  # the only slot is taken
    wrapper = server.wrapper_pid(run_id)
    assert wrapper is not None

    server.stop()
    assert not (server.job_dir(run_id) / "report.json").exists(), "the job ended before the server stopped"
    assert is_alive(wrapper), "the job's wrapper must outlive the server"
    pgid = int((server.job_dir(run_id) / "script.pgid").read_text())
    wait_for(lambda: not live_group_members(pgid), 60, "the job's script to end")
    log = server.job_dir(run_id) / "wrapper.log"
    wait_for(lambda: log.is_file() and "retrying" in log.read_text(), 60, "the wrapper's callback to fail")
    assert (server.job_dir(run_id) / "report.json").is_file()
    assert is_alive(wrapper), "the wrapper keeps retrying its callback"

    server.start()
    job = server.wait_for(running, "COMPLETED", timeout=60)
    assert [r["id"] for r in job["results"]] == ["done"]
    assert server.http.get(running + "/results/done").text == "done\n"
    server.wait_for(queued, "COMPLETED", timeout=60)
    assert server.http.get(queued + "/results/output").text == "queued before the restart\n"
    job = server.job(pending)
    assert job["phase"] == "PENDING"
    assert [p["value"] for p in job["parameters"] if p["id"] == "text"] == ["kept across restarts"]
    wait_for(lambda: not live_group_members(wrapper), 60, "the wrapper to end")


def test_lost_callback_is_replayed_after_restart(make_server):
    # The wrapper gives up its callback after 1 s: only the manager's replay of report.json can tell.
    server = make_server(CALLBACK_RETRY_SECONDS=1)
    url = server.create("sleep", {"seconds": "2.5"}, run=True)
    job_id = url.rsplit("/", 1)[1]
    server.wait_for(url, "EXECUTING", timeout=60)
    wrapper = server.wrapper_pid(job_id)
    assert wrapper is not None
    server.stop()
    assert not (server.job_dir(job_id) / "report.json").exists(), "the job ended before the server stopped"
    wait_for(lambda: not live_group_members(wrapper), 60, "the wrapper to give up and end")
    assert "failed for good" in (server.job_dir(job_id) / "wrapper.log").read_text()

    server.start()
    job = server.wait_for(url, "COMPLETED", timeout=60)
    assert [r["id"] for r in job["results"]] == ["done"]
    assert server.http.get(url + "/results/done").text == "done\n"


# ---- 6. MAX_RUNNING_JOBS ---------------------------------------------------------------------------------
def test_max_running_jobs_runs_one_after_the_other(make_server):
    server = make_server(MAX_RUNNING_JOBS=1)
    first = server.create("sleep", {"seconds": "1"}, run=True)
    second = server.create("sleep", {"seconds": "1"}, run=True)
    seen = set()

    def both_completed() -> bool:
        phases = (server.phase(first), server.phase(second))
        seen.add(phases)
        assert phases != ("EXECUTING", "EXECUTING"), "both jobs execute at once with MAX_RUNNING_JOBS=1"
        return phases == ("COMPLETED", "COMPLETED")

    wait_for(both_completed, 60, "both jobs to complete")
    assert ("EXECUTING", "QUEUED") in seen, seen
    a, b = server.job(first), server.job(second)
    assert b["startTime"] >= a["endTime"], (a["startTime"], a["endTime"], b["startTime"], b["endTime"])
