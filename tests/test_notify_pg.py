"""Wake-ups across instances that share one PostgreSQL (LISTEN/NOTIFY): two servers with their own
DATA_DIR (as two hosts would have), a job run on one, its WAIT on the other."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import LiveServer, make_settings, pg_url_or_skip, reset_postgres
from helpers import wait_for

pytestmark = pytest.mark.postgres


#: b's MAX_WAIT and the WAITs asked of it, far beyond the client's timeout: a WAIT answered at all was
#: woken by a change, and no clock is read (a busy machine cannot break the tests).
HOUR = 3600
CLIENT_TIMEOUT = 120


@pytest.fixture
def two_instances(tmp_path):
    url = pg_url_or_skip()
    reset_postgres(url)
    a = LiveServer(make_settings(tmp_path / "a", DATABASE_URL=url))
    b = LiveServer(make_settings(tmp_path / "b", DATABASE_URL=url, MAX_RUNNING_JOBS=0, MAX_WAIT=HOUR))
    for server in (a, b):
        assert server.services.notifier.listening.wait(60), "the LISTEN connection did not come up"
    yield a, b
    b.stop()
    a.stop()


def test_a_wait_on_one_instance_ends_when_the_other_completes_the_job(two_instances):
    a, b = two_instances
    url_a = a.create("sleep", {"seconds": "1"})
    job_id = url_a.rsplit("/", 1)[1]
    url_b = f"{b.url}/rest/sleep/{job_id}"
    assert b.http.get(url_b + "/phase").text == "PENDING"
    seen = {}

    def waiter():
        r = b.http.get(url_b, params={"WAIT": HOUR, "PHASE": "PENDING"}, timeout=CLIENT_TIMEOUT)
        seen["pending"] = r.text.split("<uws:phase>")[1].split("<")[0]
        while True:
            r = b.http.get(url_b, params={"WAIT": HOUR}, timeout=CLIENT_TIMEOUT)
            phase = r.text.split("<uws:phase>")[1].split("<")[0]
            if phase in ("COMPLETED", "ERROR", "ABORTED"):
                break
        seen["final"] = phase

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)  # the waiter is blocked on instance b
    a.http.post(url_a + "/phase", data={"PHASE": "RUN"})  # instance a runs it (b runs nothing)
    t.join(4 * CLIENT_TIMEOUT)
    # Answered at all, each WAIT was woken by a change on a (a timed-out request leaves no entry)
    assert seen.get("pending", "PENDING") != "PENDING", seen
    assert seen.get("final") == "COMPLETED", seen


def test_the_listener_comes_back_after_its_connection_is_killed(two_instances):
    from sqlalchemy import bindparam, text

    a, b = two_instances

    def listeners() -> set[int]:
        with a.services.store.engine.begin() as conn:
            return {pid for (pid,) in conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"))}

    killed = listeners()
    assert killed, "no LISTEN connection to kill"
    with a.services.store.engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN :pids")
                     .bindparams(bindparam("pids", expanding=True)), {"pids": sorted(killed)})
    # Back when both instances LISTEN again on new connections (waiting for the 'not listening'
    # moment instead, which lasts milliseconds, cost the test 15 s whenever it was missed).
    wait_for(lambda: len(listeners() - killed) >= 2, 60, "both listeners to reconnect")
    assert b.services.notifier.listening.wait(60), "the listener did not reconnect"
    url_a = a.create("dummy", {"text": "x"})
    job_id = url_a.rsplit("/", 1)[1]
    threading.Timer(0.5, lambda: a.http.post(url_a + "/phase", data={"PHASE": "RUN"})).start()
    r = b.http.get(f"{b.url}/rest/dummy/{job_id}", params={"WAIT": HOUR, "PHASE": "PENDING"},
                   timeout=CLIENT_TIMEOUT)  # answered within it: woken, not timed out
    assert "<uws:phase>PENDING</uws:phase>" not in r.text
