"""The insert of a new job, straight through the database driver, in group commits.

Job creation is the hottest write.  SQLAlchemy's per-statement work (BEGIN through an event, two
compiled-statement executions) cost more than the database itself, and on SQLite it ran inside the
one-writer lock, so the lock, not the CPU, capped creation (bench/run.py, 16 clients: ~700 jobs/s
before, ~1,300 after).  So the insert goes straight to the driver, in SQLAlchemy's own storage
formats (SQLite: DATETIME as "YYYY-MM-DD HH:MM:SS.ffffff", BOOLEAN as 0/1; PostgreSQL: psycopg2's own
adaptation): tests/test_jobstore_driver_insert.py compares.  And the creations that arrive while
one is being written are written together by the next writer (``GroupInsert``): one transaction,
one hold of the write lock for all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from opus.storage.database import pg_autocommit
from opus.storage.writelock import Batcher, WriteGate, Work
from opus.storage.writerproc import InsertWriter, Unanswered, Unavailable

log = logging.getLogger(__name__)

JOB_COLUMNS = ("job_id", "jobname", "phase", "creation_time", "owner_id", "owner_key", "run_id",
               "execution_duration", "destruction_time", "quote", "jdl_version", "error_type", "error_message",
               "error_has_detail", "idempotency_key", "request_digest")
PARAMETER_COLUMNS = ("job_id", "name", "value", "by_reference", "is_post")


def _sqlite_value(v: object) -> object:
    if isinstance(v, datetime):
        # SQLAlchemy's SQLite DATETIME format; the year zero-padded (strftime's %Y is not below
        # year 1000, and DESTRUCTION may be as early as year 1).
        return (f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:"
                f"{v.second:02d}.{v.microsecond:06d}")
    return int(v) if isinstance(v, bool) else v


#: The columns whose values SQLite needs converted (DATETIME, BOOLEAN);
#: tests/test_jobstore_driver_insert.py compares every column with SQLAlchemy's own insert.
_CONVERTED = ("creation_time", "destruction_time", "quote", "error_has_detail", "by_reference", "is_post")


def _same(v: object) -> object:
    return v


def _statement(table: str, columns: Sequence[str], mark: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


#: The two INSERTs, built once per placeholder style ("?": SQLite, "%s": psycopg2).
_STATEMENTS = {mark: (_statement("jobs", JOB_COLUMNS, mark), _statement("parameters", PARAMETER_COLUMNS, mark))
               for mark in ("?", "%s")}


#: PostgreSQL: a whole batch as one message of two INSERTs, each with one VALUES list (psycopg2's
#: ``executemany`` sent one statement per row; a transaction of its own took BEGIN, each INSERT and
#: COMMIT: a round trip each, and the GIL given up and won back each time).
_PG_INSERTS = (f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ".encode(),
               f"INSERT INTO parameters ({', '.join(PARAMETER_COLUMNS)}) VALUES ".encode())
_PG_ROWS = (("(" + ", ".join(["%s"] * len(JOB_COLUMNS)) + ")").encode(),
            ("(" + ", ".join(["%s"] * len(PARAMETER_COLUMNS)) + ")").encode())


def _pg_batch(cur: Any, rows: Sequence[Sequence[object]], params: Sequence[Sequence[object]]) -> bytes:
    """The batch's SQL, its values bound by psycopg2 (``mogrify``: the driver's own quoting and
    adaptation, as ``execute`` does)."""
    parts = []
    for table, table_rows in ((0, rows), (1, params)):
        if table_rows:
            template = _PG_ROWS[table]
            parts.append(_PG_INSERTS[table] + b", ".join(cur.mogrify(template, row) for row in table_rows))
    return b"; ".join(parts)


class GroupInsert:
    """Job inserts of this process's threads, gathered into one transaction (group commit,
    ``opus.storage.writelock.Batcher``): one BEGIN, one ``executemany`` per table (PostgreSQL: one
    ``INSERT ... VALUES`` per table), one COMMIT (SQLite: one hold of the write lock) for as many
    jobs as arrived while the last was written; on SQLite, by this process's writer process
    (``opus.storage.writerproc``) unless ``writer_process`` is False.
    A batch that fails is rolled back and its jobs inserted one by one (a taken id fails only its job).

    A batch is inserted in one order in every process (``Batcher`` sorts it by key), so that two
    workers inserting conflicting rows wait for each other instead of deadlocking (PostgreSQL: an
    INSERT that meets an uncommitted equal key in a unique index waits for that transaction).  The
    key is the job id, or, for a creation with an idempotency key (which two workers may well
    receive at once, from a client's retry), that key, ahead of every job id."""

    def __init__(self, gate: WriteGate, writer_process: bool = False):
        self.gate = gate
        self.batcher = Batcher(self._transaction)
        self._value: Callable[[object], object] = _sqlite_value if gate.sqlite else _same
        # Only instants and booleans need converting (SQLite): the other columns are passed as they are.
        converted = frozenset(_CONVERTED) if gate.sqlite else frozenset()
        self._convert_job = converted & frozenset(JOB_COLUMNS)
        self._convert_param = converted & frozenset(PARAMETER_COLUMNS)
        self._sql = _STATEMENTS["?" if gate.sqlite else "%s"]
        #: SQLite: the writer process that writes the batches (``opus.storage.writerproc`` says why).
        self.writer = (InsertWriter(gate.engine.url.database or "", gate.lock_path, *self._sql)
                       if writer_process and gate.lock_path is not None else None)

    def insert(self, row: Mapping[str, object], parameters: Sequence[Mapping[str, object]]) -> None:
        """Insert a ``jobs`` row and its ``parameters`` rows, committed when this returns.

        The driver's IntegrityError (``engine.dialect.dbapi.IntegrityError``) passes through: the
        caller tells a taken job id from it."""
        value, conv_job, conv_param = self._value, self._convert_job, self._convert_param
        creation_key = row.get("idempotency_key")
        order = f"\0{creation_key}" if creation_key else str(row["job_id"])
        self.batcher.submit((tuple(value(row.get(c)) if c in conv_job else row.get(c) for c in JOB_COLUMNS),
                             [tuple(value(p[c]) if c in conv_param else p[c] for c in PARAMETER_COLUMNS)
                              for p in parameters]), order)

    def _transaction(self, batch: list[Work]) -> None:
        rows = [work.what[0] for work in batch]
        params = [p for work in batch for p in work.what[1]]
        if self.writer is not None:
            try:
                if self.writer.write(rows, params) is None:
                    return
                # Rolled back by the writer: written here, this meets the same error and raises it
                # as the driver's own exception (a taken id, a full disk), as callers expect.
            except Unavailable as exc:
                log.warning("job insert written in-process: %s", exc)
            except Unanswered as exc:  # the writer is dead: its transaction committed or never will
                if self._committed([row[0] for row in rows]):
                    return
                log.warning("job insert written in-process: %s", exc)
        self._in_process(rows, params)

    def _committed(self, job_ids: list[object]) -> bool:
        """Whether the jobs of one batch were inserted (all or none: one transaction)."""
        with self.gate.exclusive():
            raw = self.gate.engine.raw_connection()
            try:
                marks = ", ".join("?" * len(job_ids))
                found = raw.driver_connection.execute(  # type: ignore[union-attr]
                    f"SELECT count(*) FROM jobs WHERE job_id IN ({marks})", job_ids).fetchone()[0]
            finally:
                raw.close()
        return bool(found)

    def close(self) -> None:
        """Stop this process's writer process, if any."""
        if self.writer is not None:
            self.writer.close()

    def _in_process(self, rows: list[tuple[object, ...]], params: list[tuple[object, ...]]) -> None:
        if not self.gate.sqlite:
            self._postgresql(rows, params)
            return
        with self.gate.exclusive():
            raw = self.gate.engine.raw_connection()
            try:
                driver = raw.driver_connection
                assert driver is not None  # a pooled DBAPI connection always has one
                cur = driver.cursor()
                try:
                    cur.execute("BEGIN IMMEDIATE")  # autocommit mode (database.py): the write lock is taken here
                    try:
                        if rows:
                            cur.executemany(self._sql[0], rows)
                        if params:
                            cur.executemany(self._sql[1], params)
                        cur.execute("COMMIT")
                    except BaseException:
                        if driver.in_transaction:  # a full disk has rolled it back already
                            cur.execute("ROLLBACK")
                        raise
                finally:
                    cur.close()
            finally:
                raw.close()

    def _postgresql(self, rows: list[tuple[object, ...]], params: list[tuple[object, ...]]) -> None:
        """The batch in one round trip: its INSERTs as one message in autocommit mode, which
        PostgreSQL runs as one transaction (all of it committed, or none: a taken id rolls back the
        whole batch, and ``Batcher`` writes its jobs one by one)."""
        raw = self.gate.engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            with pg_autocommit(driver):
                cur = driver.cursor()
                try:
                    cur.execute(_pg_batch(cur, rows, params))
                finally:
                    cur.close()
        finally:
            raw.close()
