"""The read of one job (row, parameters, results), straight through the database driver.

Reading a job is the hottest read: every GET of a job, every WAIT (before it waits, and once per
change for all its waiters), the dispatcher's start of a job, each of a wrapper's reports; a job run
from PHASE=RUN to a client's last WAIT reads it about eight times.  Through SQLAlchemy a read cost
0.5-0.8 ms of CPU on the 2-core test VM, most of it SQLAlchemy's: the pool's Connection object, the
BEGIN event, three compiled-statement executions and their result objects.  Here the statements are
compiled once per dialect, and run on the pooled driver connection in one transaction (one snapshot
of the job, its parameters and its results, as before).  The values are turned into what
SQLAlchemy returns: SQLite's DATETIME text into datetime, its 0/1 into bool (PostgreSQL's driver
returns both already); tests/test_jobstore_driver_read.py compares the two paths on both databases.

The errors are the driver's own (``opus.storage.outage`` tells an outage by them as well).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Select
from sqlalchemy.engine import Engine

from opus.storage.rows import job_of
from opus.uws import Job, Parameter, Result

Convert = Callable[[Any], Any]


def _sqlite_datetime(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _sqlite_bool(value: Any) -> Any:
    return None if value is None else bool(value)


class _Statement:
    """One SELECT compiled for one dialect: its SQL, its column names and each column's conversion
    of a driver value into SQLAlchemy's (None: the value as the driver returns it)."""

    def __init__(self, query: Select[Any], engine: Engine):
        compiled = query.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.positional = bool(compiled.positiontup)  # SQLite's "?" (the one parameter: job_id)
        self.names = [c.name for c in query.selected_columns]
        sqlite = engine.dialect.name == "sqlite"
        self.converts: list[Convert | None] = [
            (_sqlite_datetime if isinstance(c.type, DateTime) else _sqlite_bool if isinstance(c.type, Boolean)
             else None) if sqlite else None
            for c in query.selected_columns]
        self.plain = not any(self.converts)

    def params(self, job_id: str) -> Sequence[str] | dict[str, str]:
        return (job_id,) if self.positional else {"job_id": job_id}

    def row(self, values: Sequence[Any]) -> list[Any]:
        if self.plain:
            return list(values)
        return [v if f is None else f(v) for v, f in zip(values, self.converts)]


class JobReader:
    """``get``: a job with its parameters and results, or None, in one transaction of the driver."""

    def __init__(self, engine: Engine, job: Select[Any], parameters: Select[Any], results: Select[Any],
                 ended: frozenset[str]):
        """``job``, ``parameters``, ``results``: the SELECTs of JobStore.get (one bound parameter,
        ``job_id``); ``ended``: the phases whose jobs may have results."""
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._job = _Statement(job, engine)
        self._parameters = _Statement(parameters, engine)
        self._results = _Statement(results, engine)
        self._ended = ended

    def get(self, job_id: str) -> Job | None:
        raw = self.engine.raw_connection()  # the pool's checkout (PostgreSQL: pre-pinged)
        try:
            driver = raw.driver_connection
            assert driver is not None  # a pooled DBAPI connection always has one
            cur = driver.cursor()
            try:
                if self.sqlite:  # autocommit mode (database.py): one snapshot for the three reads
                    cur.execute("BEGIN DEFERRED")
                try:
                    found = self._read(cur, job_id)
                finally:  # a read only: nothing to commit
                    if self.sqlite:
                        cur.execute("ROLLBACK")
                    else:
                        driver.rollback()
            finally:
                cur.close()
        finally:
            raw.close()  # back to the pool
        return found

    def _read(self, cur: Any, job_id: str) -> Job | None:
        s = self._job
        cur.execute(s.sql, s.params(job_id))
        values = cur.fetchone()
        if values is None:
            return None
        row = dict(zip(s.names, s.row(values)))
        p = self._parameters
        cur.execute(p.sql, p.params(job_id))
        params = [Parameter(*p.row(v)) for v in cur.fetchall()]
        res: list[Result] = []
        if row["phase"] in self._ended:  # results are stored only by a move to an ended phase
            r = self._results
            cur.execute(r.sql, r.params(job_id))
            res = [Result(*r.row(v)) for v in cur.fetchall()]
        job = job_of(row)
        job.parameters = params
        job.results = res
        return job
