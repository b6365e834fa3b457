"""The waiters of one change are woken one after another (opus/events/notify.py: the delivering
thread wakes one, each woken waiter the next).  A chain must never break: a waiter that leaves
(its WAIT timed out, its request failed) while a change is being relayed still passes it on, and
a change delivered while the previous one is still being relayed reaches every waiter.  The
failure these tests look for is a waiter that is never woken: it would block until its timeout
(an hour here), far beyond the time the tests give the others (WITHIN): a waiter counted as woken
was woken by the change, and no clock bounds the relay (a busy machine cannot break the tests)."""

from __future__ import annotations

import threading
import time

from opus.events.notify import Notifier

LONG = 3600.0  # a waiter that misses its wake-up blocks this long
WITHIN = 120.0  # how long the tests wait for the woken ones


def _waiting(notifier: Notifier, job_id: str, timeout: float, woken: list, ready: threading.Barrier) -> None:
    with notifier.watch(job_id) as waiter:
        ready.wait()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not waiter.wait(remaining):
                return  # timed out: leaves (and relays) in watch's finally
            waiter.event.clear()
            if waiter.phase == "COMPLETED":
                woken.append(waiter.phase)
                return


def _start(notifier, job_id, n, timeout, woken, ready):
    threads = [threading.Thread(target=_waiting, args=(notifier, job_id, timeout, woken, ready), daemon=True)
               for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def test_every_waiter_of_a_change_is_woken(tmp_path):
    notifier = Notifier(tmp_path)
    woken: list = []
    ready = threading.Barrier(301)
    threads = _start(notifier, "j1", 300, LONG, woken, ready)
    ready.wait()
    notifier.publish("j1", "COMPLETED")
    for t in threads:
        t.join(timeout=WITHIN)
    assert len(woken) == 300


def test_waiters_leaving_during_the_relay_do_not_break_it(tmp_path):
    """Half the waiters time out at the moment the change is relayed: the other half all wake."""
    notifier = Notifier(tmp_path)
    for _round in range(5):
        woken: list = []
        leaving: list = []
        ready = threading.Barrier(301)
        staying = _start(notifier, "j2", 150, LONG, woken, ready)
        going = _start(notifier, "j2", 150, 0.3, leaving, ready)
        ready.wait()
        time.sleep(0.29)  # their timeouts fall during the relay
        notifier.publish("j2", "COMPLETED")
        for t in staying + going:
            t.join(timeout=WITHIN)
        assert not any(t.is_alive() for t in staying)
        assert len(woken) >= 150  # all that stayed, and those of the others woken before their timeout


def test_a_change_delivered_during_the_relay_of_another_reaches_everyone(tmp_path):
    """A first change (same phase: the waiters go on waiting) is still being relayed when the
    second comes: every waiter sees the second."""
    notifier = Notifier(tmp_path)
    woken: list = []
    ready = threading.Barrier(301)
    threads = _start(notifier, "j3", 300, LONG, woken, ready)
    ready.wait()
    notifier.publish("j3", "EXECUTING")
    notifier.publish("j3", "COMPLETED")
    for t in threads:
        t.join(timeout=WITHIN)
    assert len(woken) == 300


def test_a_waiter_woken_but_failing_before_it_looks_still_passes_the_change_on(tmp_path):
    """The relay happens in ``wait`` and again when the waiter leaves: a waiter whose request dies
    right after waking (here: it never calls wait) does not strand the others."""
    notifier = Notifier(tmp_path)
    woken: list = []
    ready = threading.Barrier(101)

    def dies_at_once() -> None:
        with notifier.watch("j4"):
            ready.wait()
            time.sleep(0.2)  # registered when the change comes; leaves without waiting
    dying = [threading.Thread(target=dies_at_once, daemon=True) for _ in range(50)]
    for t in dying:
        t.start()
    threads = _start(notifier, "j4", 50, LONG, woken, ready)
    ready.wait()
    notifier.publish("j4", "COMPLETED")
    for t in threads + dying:
        t.join(timeout=WITHIN)
    assert len(woken) == 50
