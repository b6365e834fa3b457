"""Job inserts on SQLite, written by a small writer process that each server process keeps.

Why a process (issue 18, measured with bench/run.py's 16 clients on 2 workers): the thread that held
the host's SQLite write lock released the GIL at every SQLite call (BEGIN, each INSERT, COMMIT) and
then waited to get it back behind the worker's other request threads.  A batch of 2-3 jobs whose
SQLite work takes ~0.08 ms held the lock ~0.85 ms, so the two workers spent their time queued on
each other's lock, and a third of their CPU went to context switches.  A process of its own has no
other thread to wait for: it holds the lock only for the SQLite work, and the request threads wait
for its answer without holding anything.

The writer runs the standard library only (``python -I -S``, as the job launcher does): its own
connection with the pragmas of ``opus.storage.database`` (``PRAGMAS``), the host's write lock file
(``opus.storage.writelock.WriteGate``), one transaction per request.  It talks to its server process
over a private socketpair: length-prefixed JSON, ``{"jobs": [[...]], "parameters": [[...]]}`` in,
``{"ok": true}`` or ``{"error": "..."}`` out.  It ends when its server process does (end of file on
the socket).

What the server process does when the writer fails (``GroupInsert`` in ``opus.storage.driverinsert``):
- ``Unavailable``: the writer could not be started or did not take the request whole, so nothing
  of it was written: the batch is written in-process, the old way.
- an ``{"error": ...}`` answer: the writer rolled its transaction back; the batch is written
  in-process, which meets the same error and raises the driver's own exception (a taken id, a full
  disk), so the callers' handling is the one they always had.
- ``Unanswered``: the request was sent but no answer came (the writer died, or did not answer within
  ``ANSWER_TIMEOUT``: it is killed).  The writer is dead by then, so its transaction either committed
  or never will: the batch's job ids are looked up, and the batch written in-process if absent.
So a job is never lost and never written twice.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

#: The connection settings of every SQLite connection OPUS opens (``opus.storage.database`` too).
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON",
           "PRAGMA busy_timeout=30000")
#: Seconds the server process waits for an answer before it kills the writer (its busy timeout is 30 s).
ANSWER_TIMEOUT = 120.0
#: Failures in a row (no start, no answer) after which a process stops using its writer.
MAX_FAILURES = 3
#: Commits between two checkpoints of the writer (each commit adds a few pages to the WAL: about
#: the 1,000 pages at which SQLite checkpoints by itself, the other connections' setting).
CHECKPOINT_EVERY = 50
#: Fault injection for tests/test_writerproc.py only: the writer exits after this many commits,
#: before answering the last one.
EXIT_AFTER_COMMITS_ENV = "OPUS_TEST_WRITER_EXIT_AFTER_COMMITS"
_HEADER = struct.Struct("!I")
log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
COMMAND = (sys.executable, "-I", "-S", "-c",
           "import sys; sys.path.insert(0, sys.argv.pop(1)); import writerproc; "
           "sys.exit(writerproc.serve(int(sys.argv[1]), *sys.argv[2:]))",
           str(HERE))


class Unavailable(Exception):
    """The writer did not take the request: nothing of it was written."""


class Unanswered(Exception):
    """The request was sent and no answer came; the writer is dead now (its outcome is in the database)."""


def _send(sock: socket.socket, data: bytes) -> None:
    sock.sendall(_HEADER.pack(len(data)) + data)


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < size:
        got = sock.recv(size - len(buf))
        if not got:
            return None
        buf += got
    return bytes(buf)


def _receive(sock: socket.socket) -> bytes | None:
    """One message, or None at the end of the stream.  A short one (an answer) in one recv()."""
    first = sock.recv(65536)
    if len(first) < _HEADER.size:
        rest = _receive_exactly(sock, _HEADER.size - len(first)) if first else None
        if rest is None:
            return None
        first += rest
    size = _HEADER.unpack_from(first)[0]
    body = first[_HEADER.size:]
    if len(body) < size:
        rest = _receive_exactly(sock, size - len(body))
        if rest is None:
            return None
        body += rest
    return body  # one message at a time: nothing follows it


def _timeouts(sock: socket.socket, seconds: float) -> None:
    """Blocking socket with kernel timeouts (SO_RCVTIMEO, SO_SNDTIMEO): Python's own timeout
    would add a poll() before every recv() and send()."""
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


# ---- the server process's end --------------------------------------------------------------------------
#: Every InsertWriter of this process, forgotten in a forked child (``_forget``).
_ALL: weakref.WeakSet[InsertWriter] = weakref.WeakSet()


def _forget_all() -> None:
    for writer in list(_ALL):
        writer._forget()


os.register_at_fork(after_in_child=_forget_all)


class InsertWriter:
    """The writer process of this server process (a forked server process starts its own)."""

    def __init__(self, database: str, lock_path: str, job_sql: str, parameter_sql: str):
        self._argv = [database, lock_path, job_sql, parameter_sql]
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._failures = 0  # in a row
        _ALL.add(self)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def write(self, jobs: Sequence[Sequence[object]], parameters: Sequence[Sequence[object]]) -> str | None:
        """Insert ``jobs`` and ``parameters`` rows in one transaction: None once committed, else the
        writer's error (its transaction rolled back).  Raises Unavailable or Unanswered."""
        request = json.dumps({"jobs": jobs, "parameters": parameters}, separators=(",", ":")).encode()
        with self._lock:
            if self._failures >= MAX_FAILURES:
                raise Unavailable("the SQLite writer is given up in this process")
            for attempt in (1, 2):
                sock = self._connected()
                try:
                    _send(sock, request)
                    break
                except OSError as exc:  # a stream: part of it may have gone, but not the whole message
                    self._stop()  # a writer that died since its last answer: once more with a new one
                    if attempt == 2:
                        self._failed()
                        raise Unavailable(f"the SQLite writer cannot be reached: {exc}") from exc
            try:
                answer = _receive(sock)
            except OSError:
                answer = None
            if answer is None:
                self._failed()  # killed and reaped: whatever it did is committed or never will be
                raise Unanswered("the SQLite writer did not answer")
            self._failures = 0
        outcome = json.loads(answer)
        return None if outcome.get("ok") else str(outcome.get("error"))

    def _failed(self) -> None:
        """Stop the writer after a failure; after MAX_FAILURES in a row, give it up in this process."""
        self._stop()
        self._failures += 1
        if self._failures == MAX_FAILURES:
            log.error("the SQLite writer process failed %d times in a row: this process writes job "
                      "creations itself from now on (SQLITE_WRITER_PROCESS)", MAX_FAILURES)

    def _connected(self) -> socket.socket:
        """The socket to this process's writer, started if need be (a writer that died is seen by
        the end of its socket, and stopped: ``_failed``)."""
        if self._sock is None:
            self._start()
        assert self._sock is not None
        return self._sock

    def _forget(self) -> None:
        """In a forked child: the parent's writer is not the child's (it starts its own, and never
        waits for or kills the parent's)."""
        if self._sock is not None:
            self._sock.close()
        self._proc, self._sock, self._failures, self._lock = None, None, 0, threading.Lock()

    def _start(self) -> None:
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen([*COMMAND, str(there.fileno()), *self._argv], pass_fds=(there.fileno(),),
                                          stdin=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            here.close()
            self._failures += 1
            raise Unavailable(f"the SQLite writer cannot start: {exc}") from exc
        finally:
            there.close()
        _timeouts(here, ANSWER_TIMEOUT)
        self._sock = here

    def _stop(self, grace: float = 0.0) -> None:
        """Close the socket (a live writer then ends by itself), kill the writer if it has not ended
        within ``grace`` seconds, and reap it."""
        sock, proc = self._sock, self._proc
        self._sock = self._proc = None
        if sock is not None:
            sock.close()
        if proc is not None:
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        """End the writer: it finishes the request it is writing, if any, and exits."""
        with self._lock:
            self._stop(grace=5.0)


# ---- the writer process ----------------------------------------------------------------------------------
def serve(fd: int, database: str, lock_path: str, job_sql: str, parameter_sql: str) -> int:
    """The writer's loop: one transaction per request, until the end of the stream."""
    sock = socket.socket(fileno=fd)
    conn = sqlite3.connect(database, isolation_level=None, timeout=30, check_same_thread=False)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    # Checkpoints here, after the answer, not inside a COMMIT: an automatic one would copy the WAL
    # into the database (and sync it) while this process holds the host's write lock.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    exit_after = int(os.environ.get(EXIT_AFTER_COMMITS_ENV) or 0)
    commits = 0
    while True:
        message = _receive(sock)
        if message is None:
            return 0
        request = json.loads(message)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            error = _transaction(conn, job_sql, parameter_sql, request["jobs"], request["parameters"])
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        commits += error is None
        if exit_after and commits >= exit_after:
            os._exit(3)
        _send(sock, json.dumps({"ok": True} if error is None else {"error": error}).encode())
        if error is None and commits % CHECKPOINT_EVERY == 0:
            try:  # PASSIVE: as much as readers and writers allow, waiting for none of them
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # the next one, or another connection's automatic one, does it


def _transaction(conn: sqlite3.Connection, job_sql: str, parameter_sql: str, jobs: list[list[object]],
                 parameters: list[list[object]]) -> str | None:
    """Insert in one transaction: None once committed, else why not (rolled back)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        conn.executemany(job_sql, jobs)
        if parameters:
            conn.executemany(parameter_sql, parameters)
        conn.execute("COMMIT")
        return None
    except sqlite3.Error as exc:
        try:
            if conn.in_transaction:  # some errors (a full disk) have rolled it back already
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            os._exit(4)  # a transaction it cannot end: a new writer starts with the next request
        return f"{type(exc).__name__}: {exc}"
