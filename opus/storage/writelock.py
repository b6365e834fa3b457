"""Write transactions, serialised on SQLite by a lock file rather than by SQLite's busy handler, and
gathered into group commits.

SQLite allows one writer; its busy handler sleeps with growing back-off, which leaves the lock idle
under load.  Writers of this host queue on a lock file instead (threads of this process on a mutex
first), and get the database the moment it is free.  PostgreSQL needs none of this.

Group commit (``Batcher``): the writes that threads submit while one is being written wait, and
the next writer writes them all in one transaction (one BEGIN, one COMMIT, one hold of the lock),
so that the more writers there are at once, the less each write costs.  A batch is written in the
order of its works' keys (job ids), not in their order of arrival: on PostgreSQL two workers' batches
lock the rows they share in the same order, so they cannot deadlock (tests/test_perf_pg_batches.py).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine


T = TypeVar("T")


class Work:
    """One write submitted to a ``Batcher``: what to write, then its outcome."""

    __slots__ = ("done", "error", "key", "lead", "value", "wake", "what")

    def __init__(self, what: Any, key: str):
        self.what = what
        self.key = key
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.wake: Any = None  # a held lock its thread waits on, released when it is done or leads
        self.lead = False  # its thread is made the next writer


class Batcher:
    """Group commit: one writer per process at a time; the works submitted meanwhile go together.

    A submitting thread queues its work.  When nobody is writing, it becomes the writer: it takes
    everything queued by then, its own work and other threads', and writes it with ``transaction``
    (which writes a list of works in one transaction, setting each one's ``value``), sorted by key
    (stable: one key's works keep their order).  A batch that fails is rolled back by
    ``transaction`` and its works written one by one, each with its own outcome.  When somebody is
    writing, the thread waits on a lock of its own work, and the writer wakes exactly the threads
    it must when it is done: those of the works it wrote, and the thread of the first work queued
    since, which becomes the next writer (and takes what is queued then).  Nothing else is woken:
    under 16 clients a wake-up for nothing is a GIL hand-over and two context switches.

    Why sorted: a row written in a transaction stays locked until its COMMIT.  Batches of two
    processes that write rows A and B in opposite orders would each hold one and wait for the
    other (PostgreSQL aborts one of them after ``deadlock_timeout``, 1 s).  In one order, the
    second waits for the first to commit, then goes on."""

    def __init__(self, transaction: Callable[[list[Work]], None]):
        self._transaction = transaction
        self._queued: list[Work] = []
        self._mutex = threading.Lock()
        self._writing = False  # a writer is at work (or holds the place: ``held``)

    def submit(self, what: Any, key: str) -> Any:
        """Write ``what`` (about the row ``key``: a job id); its value once committed (the exception
        it raised, raised here)."""
        work = Work(what, key)
        with self._mutex:
            self._queued.append(work)
            if self._writing:
                work.wake = wake = _wake_lock()
                wake.acquire()
            else:
                self._writing = True
        if work.wake is not None:
            try:
                work.wake.acquire()  # released when written, or when this thread is the next writer
            except BaseException:  # interrupted (KeyboardInterrupt in a main thread): see _abandon
                self._abandon(work)
                raise
        if not work.done:
            self._lead(work)
        if work.error is not None:
            raise work.error
        return work.value

    def _lead(self, mine: Work) -> None:
        """As the writer: write what is queued, then wake its threads and the next writer."""
        with self._mutex:
            batch, self._queued = self._queued, []
        batch.sort(key=_key)  # one lock order for every process (see the class's docstring)
        try:
            self._write(batch)
        finally:
            self._hand_over(batch, mine)

    def _hand_over(self, written: list[Work], mine: Work | None = None) -> None:
        """Wake the threads of the ``written`` works (but ``mine``, the writer's own) and the next
        writer, if any work is queued; else nobody is writing any more."""
        with self._mutex:
            following = self._next_writer()
        for work in written:
            if work.wake is not None and work is not mine:
                work.wake.release()
        if following is not None:
            following.wake.release()  # its work is not done: it writes next

    def _next_writer(self) -> Work | None:
        """(Under the mutex.)  The work whose thread writes next: the first queued, if any; else
        nobody is writing any more."""
        following = self._queued[0] if self._queued else None
        if following is None:
            self._writing = False
        else:
            following.lead = True
        return following

    def _abandon(self, work: Work) -> None:
        """A thread that stopped waiting for its work (an exception while it waited): its work is
        taken out of the queue, unwritten; if its thread had just been made the next writer, the
        next one is, so that the works queued behind it are still written.  (A work already in a
        batch being written is written all the same.)"""
        following = None
        with self._mutex:
            if work in self._queued:
                self._queued.remove(work)
                if work.lead:
                    following = self._next_writer()
        if following is not None:
            following.wake.release()

    @contextmanager
    def held(self) -> Iterator[None]:
        """The writer's place taken for a with-block (as when another batch is being written): the
        works submitted meanwhile queue up, and the first of them writes them all when it ends."""
        with self._mutex:
            if self._writing:
                raise RuntimeError("a writer is at work")
            self._writing = True
        try:
            yield
        finally:
            self._hand_over([])

    def _write(self, batch: list[Work]) -> None:
        try:
            self._transaction(batch)
        except BaseException as exc:
            if len(batch) > 1 and isinstance(exc, Exception):
                for work in batch:  # each alone: only the work at fault fails
                    work.value = None
                    self._write([work])
                return
            for work in batch:
                work.value, work.error = None, exc
        finally:
            for work in batch:
                work.done = True


#: The lock a waiting thread sleeps on (held at once; released by the writer that wakes it).
_wake_lock = threading.Lock


def _key(work: Work) -> str:
    return work.key


class WriteGate:
    """Opens write transactions on ``engine``, one writer of this host at a time on SQLite."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._thread_lock = threading.Lock()
        database = engine.url.database or ""
        self.lock_path = f"{database}.writelock" if self.sqlite and database not in ("", ":memory:") else None
        self._fd: int | None = None
        self._fd_pid: int | None = None
        self._ops = Batcher(self._run_ops)

    def grouped(self, key: str, op: Callable[[Connection], T]) -> T:
        """``op(conn)`` in a write transaction, committed when this returns, group-committed with
        the ops other threads submit meanwhile (``Batcher``), in the order of their ``key``s: the
        id of the job whose row ``op`` writes.  ``op`` only writes: it may run again, alone, if
        another op of its batch fails."""
        value: T = self._ops.submit(op, key)
        return value

    def _run_ops(self, batch: list[Work]) -> None:
        with self.transaction() as conn:
            for work in batch:
                work.value = work.what(conn)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold this host's SQLite writer lock (nothing on PostgreSQL) for a with-block."""
        if not self.sqlite:
            yield
            return
        with self._thread_lock:
            if self.lock_path is None:
                yield
                return
            fd = self._lock_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _lock_fd(self) -> int:
        """The lock file, opened once per process (not once per write: an open and a close less on
        every write).  A forked child opens its own: a flock belongs to the open file, which a
        child shares with its parent.  Not inherited by the programs the server starts."""
        pid = os.getpid()
        if self._fd is None or self._fd_pid != pid:
            assert self.lock_path is not None
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._fd_pid = pid
        return self._fd

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed at the end of the with-block."""
        if self.sqlite:
            with self.exclusive():
                conn = self.engine.connect().execution_options(sqlite_begin="IMMEDIATE")
                try:
                    with conn.begin():
                        yield conn
                finally:
                    conn.close()
            return
        with self.engine.begin() as conn:
            yield conn
