"""The insert of a new job, straight through the database driver.

Job creation is the hottest write.  SQLAlchemy's per-statement work (BEGIN through an event, two
compiled-statement executions) cost more than the database itself, and on SQLite it ran inside the
one-writer lock, so the lock, not the CPU, capped creation (bench/run.py, 16 clients: ~700 jobs/s
before, ~1,300 after).  So the insert goes straight to the driver, in SQLAlchemy's own storage
formats (SQLite: DATETIME as "YYYY-MM-DD HH:MM:SS.ffffff", BOOLEAN as 0/1; PostgreSQL: psycopg2's own
adaptation): tests/test_jobstore_driver_insert.py compares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from opus.storage.writelock import WriteGate

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


def _same(v: object) -> object:
    return v


def _statement(table: str, columns: Sequence[str], mark: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


def insert_job(gate: WriteGate, row: Mapping[str, object], parameters: Sequence[Mapping[str, object]]) -> None:
    """Insert a ``jobs`` row and its ``parameters`` rows in one transaction.

    The driver's IntegrityError (``engine.dialect.dbapi.IntegrityError``) passes through: the caller
    tells a taken job id from it."""
    value: Callable[[object], object] = _sqlite_value if gate.sqlite else _same
    mark = "?" if gate.sqlite else "%s"
    values = tuple(value(row.get(c)) for c in JOB_COLUMNS)
    params = [tuple(value(p[c]) for c in PARAMETER_COLUMNS) for p in parameters]
    with gate.exclusive():
        raw = gate.engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None  # a pooled DBAPI connection always has one
            cur = driver.cursor()
            try:
                if gate.sqlite:  # autocommit mode (database.py): the write lock is taken at BEGIN
                    cur.execute("BEGIN IMMEDIATE")
                try:
                    cur.execute(_statement("jobs", JOB_COLUMNS, mark), values)
                    if params:
                        cur.executemany(_statement("parameters", PARAMETER_COLUMNS, mark), params)
                    cur.execute("COMMIT") if gate.sqlite else driver.commit()
                except BaseException:
                    cur.execute("ROLLBACK") if gate.sqlite else driver.rollback()
                    raise
            finally:
                cur.close()
        finally:
            raw.close()
