"""The read of one job (row, parameters, results), straight through the database driver.

Reading a job is the hottest read: every GET of a job, every WAIT (before it waits, and once per
change for all its waiters), the dispatcher's start of a job, each of a wrapper's reports; a job run
from PHASE=RUN to a client's last WAIT reads it about eight times.  Through SQLAlchemy a read cost
0.5-0.8 ms of CPU on the 2-core test VM, most of it SQLAlchemy's: the pool's Connection object, the
BEGIN event, three compiled-statement executions and their result objects.  Here the statements are
compiled once per dialect and run on the pooled driver connection: on SQLite three SELECTs in one
read transaction (one snapshot of the job, its parameters and its results); on PostgreSQL one SELECT
of the job row with its parameters and results aggregated as JSON (one round trip instead of five,
and one snapshot, which three statements of a READ COMMITTED transaction are not).  The values are
turned into what SQLAlchemy returns: SQLite's DATETIME text into datetime, its 0/1 into bool
(PostgreSQL's driver returns both already); tests/test_jobstore_driver_read.py compares the two
paths on both databases.

The errors are the driver's own (``opus.storage.outage`` tells an outage by them as well).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Select, func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Engine

from opus.storage.database import pg_autocommit
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


def json_rows(columns: Sequence[Any], where: Any, order_by: Any) -> Any:
    """PostgreSQL: the rows of ``columns`` that meet ``where``, in ``order_by``'s order, as one JSON
    array of arrays (``[]`` for none): a scalar subquery, for a job's parameters or results read
    with its row (``JobReader``)."""
    rows = func.json_agg(aggregate_order_by(func.json_build_array(*columns), order_by))
    return select(func.coalesce(rows, literal_column("'[]'::json"))).where(where).scalar_subquery()


class JobReader:
    """``get``: a job with its parameters and results, or None: on SQLite three SELECTs in one read
    transaction (one snapshot), on PostgreSQL one SELECT (one round trip, one snapshot)."""

    def __init__(self, engine: Engine, job: Select[Any], parameters: Select[Any], results: Select[Any],
                 ended: frozenset[str], whole: Select[Any]):
        """``job``, ``parameters``, ``results``: the SELECTs of JobStore.get (one bound parameter,
        ``job_id``); ``ended``: the phases whose jobs may have results; ``whole``: PostgreSQL's one
        SELECT, ``job``'s columns then the parameters and the results (``json_rows``)."""
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._job = _Statement(job, engine)
        self._parameters = _Statement(parameters, engine)
        self._results = _Statement(results, engine)
        self._ended = ended
        self._whole: str | None = None
        if not self.sqlite:
            # Each statement of a READ COMMITTED transaction sees the database as it is when the
            # statement starts: three SELECTs in one transaction were no single snapshot there, and
            # cost five round trips (BEGIN, three SELECTs, ROLLBACK).  One SELECT is both.
            if [c.name for c in list(whole.selected_columns)[:-2]] != self._job.names:
                raise ValueError("JobReader: the whole read must start with the job read's columns")
            self._whole = str(whole.compile(dialect=engine.dialect))

    def get(self, job_id: str) -> Job | None:
        raw = self.engine.raw_connection()  # the pool's checkout (PostgreSQL: checked, database.py)
        try:
            driver = raw.driver_connection
            assert driver is not None  # a pooled DBAPI connection always has one
            if self._whole is not None:
                return self._read_whole(driver, job_id)
            cur = driver.cursor()
            try:
                cur.execute("BEGIN DEFERRED")  # autocommit mode (database.py): one snapshot for the three reads
                try:
                    found = self._read(cur, job_id)
                finally:  # a read only: nothing to commit
                    cur.execute("ROLLBACK")
            finally:
                cur.close()
        finally:
            raw.close()  # back to the pool
        return found

    def _read_whole(self, driver: Any, job_id: str) -> Job | None:
        """PostgreSQL: the job row, then its parameters and results as JSON arrays (psycopg2 decodes
        them: text, booleans and integers come back as they would from their columns)."""
        assert self._whole is not None
        with pg_autocommit(driver):
            cur = driver.cursor()
            try:
                cur.execute(self._whole, {"job_id": job_id})
                values = cur.fetchone()
            finally:
                cur.close()
        if values is None:
            return None
        s = self._job
        row = dict(zip(s.names, s.row(values[:-2])))
        job = job_of(row)
        job.parameters = [Parameter(*v) for v in values[-2]]
        job.results = [Result(*v) for v in values[-1]] if row["phase"] in self._ended else []
        return job

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
