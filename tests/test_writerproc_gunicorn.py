"""The SQLite writer processes of a real gunicorn deployment, killed with SIGKILL again and again
while 8 clients create jobs: every creation is answered 303, every job answered exists, and none
exists twice (each request carries a value of its own, which must be stored exactly once)."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import pytest
import requests

from gunicorn_server import GunicornServer, all_pids, cmdline, proc_stat

CLIENTS = 8
KILLS = 12


def _writers(workers: list[int]) -> list[int]:
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st is not None and st[1] in workers and st[0] not in ("Z", "X") and "writerproc" in cmdline(pid):
            out.append(pid)
    return out


@pytest.fixture
def server(tmp_path):
    server = GunicornServer(tmp_path, workers=2).start()
    yield server
    server.close()


def test_writers_killed_under_load_lose_and_double_nothing(server):
    answered: dict[str, str] = {}  # the request's own value -> the job id answered
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(k: int) -> None:
        session = requests.Session()
        i = 0
        while not stop.is_set():
            value = f"c{k}-{i}"
            i += 1
            try:
                r = session.post(f"{server.url}/rest/dummy", data={"text": value}, allow_redirects=False,
                                 timeout=60)
            except requests.RequestException as exc:
                failures.append(f"{value}: {exc}")
                continue
            if r.status_code != 303:
                failures.append(f"{value}: {r.status_code} {r.text[:200]}")
                continue
            with lock:
                answered[value] = r.headers["Location"].rsplit("/", 1)[1]

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    killed: set[int] = set()
    deadline = time.monotonic() + 60
    while len(killed) < KILLS and time.monotonic() < deadline:
        time.sleep(0.15)
        for pid in _writers(server.worker_pids()):
            if pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
    time.sleep(0.5)  # creations after the last kill, through new writers
    stop.set()
    for t in threads:
        t.join(timeout=90)
    assert len(killed) >= KILLS, f"only {len(killed)} writer processes seen"
    assert failures == []
    assert len(answered) > 100
    db = sqlite3.connect(server.data_dir / "opus.sqlite")
    try:
        stored = dict(db.execute("SELECT value, job_id FROM parameters WHERE name = 'text'").fetchall())
        per_value = dict(db.execute("SELECT value, count(*) FROM parameters WHERE name = 'text' "
                                    "GROUP BY value").fetchall())
        jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    finally:
        db.close()
    assert {v: stored.get(v) for v in answered} == answered  # every job answered is there, as answered
    assert max(per_value.values()) == 1  # no request stored twice
    assert jobs == len(stored)  # and no job without its value
    assert _writers(server.worker_pids())  # the workers write through new writers
