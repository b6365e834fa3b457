"""Write transactions, serialised on SQLite by a lock file rather than by SQLite's busy handler.

SQLite allows one writer; its busy handler sleeps with growing back-off, which leaves the lock idle
under load.  Writers of this host queue on a lock file instead (threads of this process on a mutex
first), and get the database the moment it is free.  PostgreSQL needs none of this.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from sqlalchemy.engine import Connection, Engine


class FileLock:
    """An exclusive flock on a file, held for a with-block (a no-op without a path)."""

    def __init__(self, path: str | None):
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> FileLock:
        if self.path:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


class WriteGate:
    """Opens write transactions on ``engine``, one writer of this host at a time on SQLite."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._thread_lock = threading.Lock()
        database = engine.url.database or ""
        self.lock_path = f"{database}.writelock" if self.sqlite and database not in ("", ":memory:") else None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold this host's SQLite writer lock (nothing on PostgreSQL) for a with-block."""
        with contextlib.ExitStack() as stack:
            if self.sqlite:
                stack.enter_context(self._thread_lock)
                stack.enter_context(FileLock(self.lock_path))
            yield

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
