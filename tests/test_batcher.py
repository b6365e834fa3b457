"""The group commit (``opus.storage.writelock.Batcher``) on its own: every work written once, one
writer at a time, and a waiting thread woken once (when its work is written, or to write next).

Issue 18: under 16 clients every wake-up of a thread that has nothing to do yet is a GIL hand-over
and two context switches; the batcher used to wake every waiting thread at the end of each batch.
"""

from __future__ import annotations

import threading
import time

import pytest
from helpers import wait_for

from opus.storage import writelock
from opus.storage.writelock import Batcher, Work


class Recorder:
    """A ``transaction`` that records its batches, fails on two writers at once, and can be slowed."""

    def __init__(self, delay: float = 0.0, fail_keys: tuple[str, ...] = ()):
        self.delay = delay
        self.fail_keys = fail_keys
        self.batches: list[list[str]] = []
        self.writers: list[int] = []  # the thread of each batch
        self.inside = 0
        self.overlaps = 0
        self.lock = threading.Lock()

    def __call__(self, batch: list[Work]) -> None:
        with self.lock:
            self.inside += 1
            self.overlaps += self.inside > 1
        try:
            if self.delay:
                time.sleep(self.delay)
            keys = [w.key for w in batch]
            if any(k in self.fail_keys for k in keys):
                raise ValueError(f"refused {keys}")
            for work in batch:
                work.value = f"written {work.key}"
            with self.lock:
                self.batches.append(keys)
                self.writers.append(threading.get_ident())
        finally:
            with self.lock:
                self.inside -= 1


class CountingLock:
    """threading.Lock, counting the releases of the locks the batcher makes for waiting threads."""

    releases: list[int] = []

    def __init__(self) -> None:
        self._lock = _REAL_LOCK()
        self.index = len(CountingLock.releases)
        CountingLock.releases.append(0)

    def acquire(self) -> bool:
        return self._lock.acquire()

    def release(self) -> None:
        CountingLock.releases[self.index] += 1
        self._lock.release()


_REAL_LOCK = threading.Lock


def _submit_all(batcher: Batcher, keys: list[str], results: dict[str, object]) -> list[threading.Thread]:
    def one(key: str) -> None:
        try:
            results[key] = batcher.submit(None, key)
        except Exception as exc:  # noqa: BLE001 - the test looks at which failed
            results[key] = exc
    threads = [threading.Thread(target=one, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    return threads


def test_works_queued_while_held_go_in_one_sorted_batch_and_each_waiter_is_woken_once(monkeypatch):
    record = Recorder()
    batcher = Batcher(record)
    monkeypatch.setattr(writelock, "_wake_lock", CountingLock)
    CountingLock.releases = []
    results: dict[str, object] = {}
    with batcher.held():
        threads = _submit_all(batcher, [f"k{i}" for i in (5, 3, 7, 1, 6, 2, 4, 0)], results)
        wait_for(lambda: len(batcher._queued) == 8, what="8 works queued")
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert record.batches == [[f"k{i}" for i in range(8)]]
    assert results == {f"k{i}": f"written k{i}" for i in range(8)}
    # Eight waiting threads: the first queued was woken to write, the seven others once, when written.
    assert CountingLock.releases == [1] * 8


def test_works_queued_during_a_write_are_written_next_by_one_of_them_in_one_batch():
    record = Recorder(delay=0.3)
    batcher = Batcher(record)
    results: dict[str, object] = {}
    first = _submit_all(batcher, ["a"], results)
    wait_for(lambda: record.inside == 1, what="the first batch being written")
    later = _submit_all(batcher, ["d", "c", "b"], results)
    wait_for(lambda: len(batcher._queued) == 3, what="3 works queued behind it")
    for t in first + later:
        t.join(10)
    assert record.batches == [["a"], ["b", "c", "d"]]
    assert record.writers[1] in {t.ident for t in later}  # one of the queued threads wrote it
    assert record.overlaps == 0
    assert results == {k: f"written {k}" for k in "abcd"}
    assert batcher._writing is False and batcher._queued == []


def test_a_failing_batch_is_written_work_by_work_and_only_the_faulty_work_fails():
    record = Recorder(fail_keys=("bad",))
    batcher = Batcher(record)
    results: dict[str, object] = {}
    with batcher.held():
        threads = _submit_all(batcher, ["x", "bad", "y"], results)
        wait_for(lambda: len(batcher._queued) == 3, what="3 works queued")
    for t in threads:
        t.join(10)
    assert results["x"] == "written x" and results["y"] == "written y"
    assert isinstance(results["bad"], ValueError)
    assert ["x"] in record.batches and ["y"] in record.batches


def test_a_writer_interrupted_by_a_base_exception_still_hands_over():
    """KeyboardInterrupt (a signal) in the writer's transaction: its own submit raises it, and the
    works queued behind it are still written (no thread left waiting for ever)."""
    calls = []

    def transaction(batch: list[Work]) -> None:
        calls.append([w.key for w in batch])
        if len(calls) == 1:
            time.sleep(0.3)
            raise KeyboardInterrupt
        for work in batch:
            work.value = work.key

    batcher = Batcher(transaction)
    results: dict[str, object] = {}
    raised: list[BaseException] = []

    def first() -> None:
        try:
            batcher.submit(None, "a")
        except BaseException as exc:  # noqa: BLE001 - what the writer's own caller sees
            raised.append(exc)
    t0 = threading.Thread(target=first)
    t0.start()
    wait_for(lambda: len(calls) == 1, what="the first batch being written")
    later = _submit_all(batcher, ["b", "c"], results)
    for t in [t0, *later]:
        t.join(10)
    assert not any(t.is_alive() for t in [t0, *later])
    assert len(raised) == 1 and isinstance(raised[0], KeyboardInterrupt)
    assert results == {"b": "b", "c": "c"}
    assert calls == [["a"], ["b", "c"]]


@pytest.mark.parametrize("threads", [4, 32])
def test_many_threads_every_work_written_once_one_writer_at_a_time(threads):
    record = Recorder()
    batcher = Batcher(record)
    per_thread = 300
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                assert batcher.submit(None, f"{t:02d}-{i:04d}") == f"written {t:02d}-{i:04d}"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert not any(t.is_alive() for t in pool) and errors == []
    written = [k for batch in record.batches for k in batch]
    assert len(written) == threads * per_thread == len(set(written))
    assert record.overlaps == 0
    assert all(batch == sorted(batch) for batch in record.batches)
    assert batcher._writing is False and batcher._queued == []


class InterruptedLock:
    """A wake lock whose waiting thread is interrupted (as KeyboardInterrupt interrupts a main
    thread's wait) once ``interrupt`` is set: ``when="waiting"`` while it still waits, ``"woken"``
    just as it is woken (its lock released to it: made the next writer)."""

    interrupt = threading.Event()
    when = "waiting"
    interrupted: list[int] = []

    def __init__(self) -> None:
        self._lock = _REAL_LOCK()
        self.victim = threading.current_thread().name == "victim"

    def acquire(self) -> bool:
        while True:
            got = self._lock.acquire(timeout=0.01)
            if self.victim and self.interrupt.is_set() and (got or self.when == "waiting"):
                InterruptedLock.interrupted.append(1)
                raise KeyboardInterrupt
            if got:
                return True

    def release(self) -> None:
        self._lock.release()


@pytest.mark.parametrize("when", ["waiting", "woken"])
def test_a_waiting_thread_interrupted_leaves_no_work_stuck_behind_it(monkeypatch, when):
    """The interrupted thread's work is not written (it was still queued); the works queued behind
    it are, even when the interrupted thread had just been made the next writer."""
    record = Recorder()
    batcher = Batcher(record)
    monkeypatch.setattr(writelock, "_wake_lock", InterruptedLock)
    InterruptedLock.interrupt = threading.Event()
    InterruptedLock.when = when
    InterruptedLock.interrupted = []
    results: dict[str, object] = {}

    def submit(key: str) -> None:
        try:
            results[key] = batcher.submit(None, key)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            results[key] = exc
    with batcher.held():
        victim = threading.Thread(target=submit, args=("a",), name="victim")
        victim.start()
        wait_for(lambda: len(batcher._queued) == 1, what="the victim's work queued first")
        others = [threading.Thread(target=submit, args=(k,)) for k in ("b", "c")]
        for t in others:
            t.start()
        wait_for(lambda: len(batcher._queued) == 3, what="two works queued behind it")
        InterruptedLock.interrupt.set()
        if when == "waiting":
            victim.join(10)
            assert [w.key for w in batcher._queued] == ["b", "c"]
    # "woken": the victim is made the next writer here, and interrupted as it wakes.
    for t in [victim, *others]:
        t.join(10)
    assert not any(t.is_alive() for t in [victim, *others])
    assert InterruptedLock.interrupted == [1]
    assert isinstance(results["a"], KeyboardInterrupt)
    assert results["b"] == "written b" and results["c"] == "written c"
    assert record.batches == [["b", "c"]]
    assert batcher._writing is False and batcher._queued == []
    # and the batcher still works
    assert batcher.submit(None, "d") == "written d"
