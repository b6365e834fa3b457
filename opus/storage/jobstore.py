"""JobStore: the only code that reads and writes job rows.

It returns plain domain objects (``opus.uws.Job``); callers never hold a session.  Every phase
change is a compare-and-set (``UPDATE ... WHERE phase IN (allowed)``) whose row count says whether
it happened, so an ABORT can never be overwritten by a late completion, nor the reverse.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from opus.uws import ErrorSummary, Job, JobRef, Parameter, Phase, Result
from opus.storage.tables import entities, jobs, parameters, results, used
def _ref(r) -> JobRef:
    return JobRef(r[0], r[1], _PHASES[r[2]], r[3], r[4], r[5].replace(tzinfo=timezone.utc))


class _FileLock:
    """An exclusive flock on a file, held for a with-block (a no-op without a path)."""

    def __init__(self, path: str | None):
        self.path = path
        self.fd: int | None = None

    def __enter__(self):
        if self.path:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


class DuplicateJobId(Exception):
    """The job id is already taken (the caller draws another)."""


def to_db_time(dt: datetime | None) -> datetime | None:
    """Aware UTC -> naive UTC, truncated to milliseconds (what UWS prints)."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


def from_db_time(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.replace(tzinfo=timezone.utc)


_PHASES = {p.value: p for p in Phase}
_JOB_FIELDS = {
    "start_time", "end_time", "execution_duration", "destruction_time", "quote", "manager_id",
    "callback_url", "run_id", "error", "jdl_version",
}
_REF_COLUMNS = (jobs.c.job_id, jobs.c.jobname, jobs.c.phase, jobs.c.run_id, jobs.c.owner_id,
                jobs.c.creation_time)


def _values(fields: dict) -> dict:
    """Domain field values -> column values."""
    unknown = set(fields) - _JOB_FIELDS
    if unknown:
        raise TypeError(f"not job fields: {sorted(unknown)}")
    out = {}
    for key, value in fields.items():
        if key == "error":
            err: ErrorSummary | None = value
            out["error_type"] = err.type if err else None
            out["error_message"] = err.message if err else None
            out["error_has_detail"] = bool(err and err.has_detail)
        elif isinstance(value, datetime):
            out[key] = to_db_time(value)
        else:
            out[key] = value
    return out


class JobStore:
    """Persistence of jobs, parameters and results on one SQLAlchemy engine."""

    def __init__(self, engine: Engine, on_change: Callable[[str, str], None] | None = None):
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._thread_lock = threading.Lock()
        database = engine.url.database or ""
        self._lock_path = f"{database}.writelock" if self._sqlite and database not in ("", ":memory:") else None
        #: Called with (job_id, new phase or "DELETED") after each committed change.
        self.on_change = on_change or (lambda job_id, phase: None)

    # ---- transactions ------------------------------------------------------------------------
    @contextmanager
    def _write(self):
        if self._sqlite:
            # SQLite allows one writer; its busy handler sleeps with growing back-off, which leaves
            # the lock idle under load.  Writers of this host queue on a lock file instead (threads
            # of this process on a mutex first), and get the database the moment it is free.
            with self._thread_lock, _FileLock(self._lock_path):
                conn = self.engine.connect().execution_options(sqlite_begin="IMMEDIATE")
                try:
                    with conn.begin():
                        yield conn
                finally:
                    conn.close()
            return
        with self.engine.begin() as conn:
            yield conn

    # ---- create and read -----------------------------------------------------------------------
    def create(self, job: Job) -> None:
        """Insert a new job with its parameters; DuplicateJobId if the id is taken."""
        if job.owner_id is not None and job.owner_key is None:
            # A named owner without a key would make the job anonymous to can_access: never store that.
            raise ValueError(f"job {job.job_id!r}: owner {job.owner_id!r} without an owner_key")
        row = {
            "job_id": job.job_id, "jobname": job.jobname, "phase": job.phase.value,
            "creation_time": to_db_time(job.creation_time), "owner_id": job.owner_id, "owner_key": job.owner_key,
            **_values({"run_id": job.run_id, "execution_duration": job.execution_duration,
                       "destruction_time": job.destruction_time, "quote": job.quote,
                       "jdl_version": job.jdl_version, "error": job.error}),
        }
        if self._driver_insert:
            self._create_with_driver(job, row)
            return
        try:
            with self._write() as conn:
                conn.execute(insert(jobs), [row])
                if job.parameters:
                    conn.execute(insert(parameters), [self._param_row(job.job_id, p) for p in job.parameters])
        except IntegrityError as exc:
            if "job_id" in str(exc.orig) or "jobs" in str(exc.orig):
                raise DuplicateJobId(job.job_id) from None
            raise
        # A new job is not announced: nobody can be waiting on it yet.

    # Job creation is the hottest write.  SQLAlchemy's per-statement work (BEGIN through an event,
    # two compiled-statement executions) cost more than the database itself, and on SQLite it ran
    # inside the one-writer lock, so the lock, not the CPU, capped creation (bench/run.py, 16
    # clients: ~700 jobs/s before, ~1,300 after).  So the insert goes straight to the driver, in
    # SQLAlchemy's own storage formats (SQLite: DATETIME as "YYYY-MM-DD HH:MM:SS.ffffff", BOOLEAN as
    # 0/1; PostgreSQL: psycopg2's own adaptation): tests/test_jobstore_driver_insert.py compares.
    _driver_insert = True
    _JOB_COLUMNS = ("job_id", "jobname", "phase", "creation_time", "owner_id", "owner_key", "run_id",
                    "execution_duration", "destruction_time", "quote", "jdl_version", "error_type", "error_message",
                    "error_has_detail")
    _PARAMETER_COLUMNS = ("job_id", "name", "value", "by_reference", "is_post")

    def _create_with_driver(self, job: Job, row: dict) -> None:
        if self._sqlite:
            def value(v):
                if isinstance(v, datetime):
                    # SQLAlchemy's SQLite DATETIME format; the year zero-padded (strftime's %Y is not
                    # below year 1000, and DESTRUCTION may be as early as year 1).
                    return (f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:"
                            f"{v.second:02d}.{v.microsecond:06d}")
                return int(v) if isinstance(v, bool) else v
            mark = "?"
        else:
            def value(v):
                return v
            mark = "%s"
        insert_job = (f"INSERT INTO jobs ({', '.join(self._JOB_COLUMNS)}) "
                      f"VALUES ({', '.join([mark] * len(self._JOB_COLUMNS))})")
        insert_parameter = (f"INSERT INTO parameters ({', '.join(self._PARAMETER_COLUMNS)}) "
                            f"VALUES ({', '.join([mark] * len(self._PARAMETER_COLUMNS))})")
        values = tuple(value(row.get(c)) for c in self._JOB_COLUMNS)
        params = [(job.job_id, p.name, p.value, value(p.by_reference), value(p.is_post)) for p in job.parameters]
        lock = contextlib.ExitStack()
        if self._sqlite:
            lock.enter_context(self._thread_lock)
            lock.enter_context(_FileLock(self._lock_path))
        with lock:
            raw = self.engine.raw_connection()
            try:
                cur = raw.driver_connection.cursor()
                try:
                    if self._sqlite:  # autocommit mode (database.py): the write lock is taken at BEGIN
                        cur.execute("BEGIN IMMEDIATE")
                    try:
                        cur.execute(insert_job, values)
                        if params:
                            cur.executemany(insert_parameter, params)
                        cur.execute("COMMIT") if self._sqlite else raw.driver_connection.commit()
                    except BaseException:
                        cur.execute("ROLLBACK") if self._sqlite else raw.driver_connection.rollback()
                        raise
                finally:
                    cur.close()
            except self.engine.dialect.dbapi.IntegrityError as exc:
                if "job_id" in str(exc) or "jobs" in str(exc):
                    raise DuplicateJobId(job.job_id) from None
                raise
            finally:
                raw.close()

    @staticmethod
    def _param_row(job_id: str, p: Parameter) -> dict:
        return {"job_id": job_id, "name": p.name, "value": p.value, "by_reference": p.by_reference,
                "is_post": p.is_post}

    def get(self, job_id: str) -> Job | None:
        """The job with its parameters and results, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).mappings().first()
            if row is None:
                return None
            params = conn.execute(
                select(parameters.c.name, parameters.c.value, parameters.c.by_reference, parameters.c.is_post)
                .where(parameters.c.job_id == job_id).order_by(parameters.c.name)).all()
            res = conn.execute(
                select(results.c.result_id, results.c.file_name, results.c.content_type, results.c.size,
                       results.c.sha256).where(results.c.job_id == job_id).order_by(results.c.result_id)).all()
        job = self._job(row)
        job.parameters = [Parameter(*p) for p in params]
        job.results = [Result(*r) for r in res]
        return job

    @staticmethod
    def _job(row) -> Job:
        error = None
        if row["error_message"] is not None:
            error = ErrorSummary(row["error_message"], row["error_type"] or "fatal", bool(row["error_has_detail"]))
        return Job(
            job_id=row["job_id"], jobname=row["jobname"], phase=Phase(row["phase"]),
            creation_time=from_db_time(row["creation_time"]), execution_duration=row["execution_duration"],
            destruction_time=from_db_time(row["destruction_time"]), run_id=row["run_id"],
            owner_id=row["owner_id"], quote=from_db_time(row["quote"]),
            start_time=from_db_time(row["start_time"]), end_time=from_db_time(row["end_time"]),
            error=error, jdl_version=row["jdl_version"], manager_id=row["manager_id"], owner_key=row["owner_key"],
        )

    def get_callback_url(self, job_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(jobs.c.callback_url).where(jobs.c.job_id == job_id)).scalar()

    def get_manager_id(self, job_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(jobs.c.manager_id).where(jobs.c.job_id == job_id)).scalar()

    def get_phase(self, job_id: str) -> Phase | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(jobs.c.phase).where(jobs.c.job_id == job_id)).scalar()
        return None if value is None else Phase(value)

    def list(self, jobname: str | None = None, phases: Iterable[Phase] = (), after: datetime | None = None,
             last: int | None = None, owner_key: str | None = None, include_archived: bool = False,
             filter_owner: bool = False) -> list[JobRef]:
        """Job references, newest first, filtered by AND of the given criteria (``filter_owner``: only
        the jobs of ``owner_key``, None meaning the anonymous ones)."""
        query = self._list_query(jobname, phases, after, last, owner_key, include_archived, filter_owner)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_ref(r) for r in rows]

    def iter_list(self, jobname: str | None = None, phases: Iterable[Phase] = (), after: datetime | None = None,
                  last: int | None = None, owner_key: str | None = None, filter_owner: bool = False,
                  batch: int = 2000) -> Iterator[JobRef]:
        """Like ``list``, streamed from a server-side cursor ``batch`` rows at a time: memory stays
        bounded however many jobs there are."""
        query = self._list_query(jobname, phases, after, last, owner_key, False, filter_owner)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(query)
            for rows in result.partitions():
                yield from (_ref(r) for r in rows)

    @staticmethod
    def _list_query(jobname, phases, after, last, owner_key, include_archived, filter_owner):
        query = select(*_REF_COLUMNS)
        conds = []
        if jobname is not None:
            conds.append(jobs.c.jobname == jobname)
        phases = list(phases)
        if phases:
            conds.append(jobs.c.phase.in_([p.value for p in phases]))
        elif not include_archived:
            conds.append(jobs.c.phase != Phase.ARCHIVED.value)
        if after is not None:
            conds.append(jobs.c.creation_time > to_db_time(after))
        if filter_owner or owner_key is not None:
            conds.append(jobs.c.owner_key.is_(None) if owner_key is None else jobs.c.owner_key == owner_key)
        if conds:
            query = query.where(and_(*conds))
        query = query.order_by(jobs.c.creation_time.desc(), jobs.c.seq.desc())
        if last is not None:
            query = query.limit(last)
        return query

    # ---- compare-and-set updates ----------------------------------------------------------------
    def set_phase(self, job_id: str, new: Phase, allowed_from: Iterable[Phase], **fields) -> bool:
        """Move the job to ``new`` if it is in one of ``allowed_from``; True if it moved."""
        allowed = [p.value for p in allowed_from]
        with self._write() as conn:
            count = conn.execute(
                update(jobs).where(jobs.c.job_id == job_id, jobs.c.phase.in_(allowed))
                .values(phase=new.value, **_values(fields))).rowcount
        if count:
            self.on_change(job_id, new.value)
        return bool(count)

    def complete(self, job_id: str, new: Phase, allowed_from: Iterable[Phase], found: Sequence[Result],
                 also: Callable | None = None, **fields) -> bool:
        """Like set_phase, recording ``found`` results in the same transaction (and ``also(conn)``,
        e.g. the job's entities, when the phase moved)."""
        allowed = [p.value for p in allowed_from]
        with self._write() as conn:
            count = conn.execute(
                update(jobs).where(jobs.c.job_id == job_id, jobs.c.phase.in_(allowed))
                .values(phase=new.value, **_values(fields))).rowcount
            if count and found:
                conn.execute(delete(results).where(results.c.job_id == job_id))
                conn.execute(insert(results), [
                    {"job_id": job_id, "result_id": r.result_id, "file_name": r.file_name,
                     "content_type": r.content_type, "size": r.size, "sha256": r.sha256} for r in found])
            if count and also is not None:
                also(conn)
        if count:
            self.on_change(job_id, new.value)
        return bool(count)

    def update_job(self, job_id: str, in_phases: Iterable[Phase], **fields) -> bool:
        """Set fields (not the phase) if the job is in one of ``in_phases``; True if it was."""
        allowed = [p.value for p in in_phases]
        with self._write() as conn:
            count = conn.execute(update(jobs).where(jobs.c.job_id == job_id, jobs.c.phase.in_(allowed))
                                 .values(**_values(fields))).rowcount
        return bool(count)

    def set_parameters(self, job_id: str, params: Sequence[Parameter], in_phases: Iterable[Phase]) -> bool:
        """Add or replace parameters, only while the job is in ``in_phases`` (checked atomically)."""
        allowed = [p.value for p in in_phases]
        with self._write() as conn:
            # A no-op UPDATE guarded by the phase takes the row's write lock and tells us the phase.
            count = conn.execute(update(jobs).where(jobs.c.job_id == job_id, jobs.c.phase.in_(allowed))
                                 .values(phase=jobs.c.phase)).rowcount
            if not count:
                return False
            names = [p.name for p in params]
            conn.execute(delete(parameters).where(parameters.c.job_id == job_id, parameters.c.name.in_(names)))
            conn.execute(insert(parameters), [self._param_row(job_id, p) for p in params])
        return True

    def delete(self, job_id: str) -> bool:
        """Forget the job and its rows; True if it existed."""
        with self._write() as conn:
            conn.execute(delete(results).where(results.c.job_id == job_id))
            conn.execute(delete(parameters).where(parameters.c.job_id == job_id))
            count = conn.execute(delete(jobs).where(jobs.c.job_id == job_id)).rowcount
            if count:
                # Its files go: its entities stay (other jobs' provenance names them), without a file.
                conn.execute(update(entities).where(entities.c.location >= f"{job_id}/",
                                                    entities.c.location < f"{job_id}0").values(location=None))
                conn.execute(delete(used).where(used.c.job_id == job_id))
        if count:
            self.on_change(job_id, "DELETED")
        return bool(count)

    def delete_finished(self, job_ids: Sequence[str]) -> list[str]:
        """Forget those of ``job_ids`` that are finished (COMPLETED, ERROR, ABORTED, ARCHIVED), in one
        transaction: the destruction sweep's fast path (no process to stop).  Returns their ids."""
        finals = [Phase.COMPLETED.value, Phase.ERROR.value, Phase.ABORTED.value, Phase.ARCHIVED.value]
        with self._write() as conn:
            gone = list(conn.execute(select(jobs.c.job_id).where(jobs.c.job_id.in_(list(job_ids)),
                                                                jobs.c.phase.in_(finals))).scalars())
            if gone:
                conn.execute(delete(results).where(results.c.job_id.in_(gone)))
                conn.execute(delete(parameters).where(parameters.c.job_id.in_(gone)))
                conn.execute(delete(used).where(used.c.job_id.in_(gone)))
                for job_id in gone:  # an indexed range: "<id>/..." sorts between "<id>/" and "<id>0"
                    conn.execute(update(entities).where(entities.c.location >= f"{job_id}/",
                                                        entities.c.location < f"{job_id}0").values(location=None))
                conn.execute(delete(jobs).where(jobs.c.job_id.in_(gone)))
        for job_id in gone:
            self.on_change(job_id, "DELETED")
        return gone

    def archive(self, job_id: str) -> bool:
        """Move a finished job to ARCHIVED and drop its result rows, in one transaction."""
        finals = [Phase.COMPLETED.value, Phase.ERROR.value, Phase.ABORTED.value]
        with self._write() as conn:
            count = conn.execute(update(jobs).where(jobs.c.job_id == job_id, jobs.c.phase.in_(finals))
                                 .values(phase=Phase.ARCHIVED.value)).rowcount
            if count:
                conn.execute(delete(results).where(results.c.job_id == job_id))
                conn.execute(update(entities).where(entities.c.location >= f"{job_id}/results/",
                                                    entities.c.location < f"{job_id}/results0")
                             .values(location=None))
        if count:
            self.on_change(job_id, Phase.ARCHIVED.value)
        return bool(count)

    # ---- queries for managers and maintenance -------------------------------------------------------
    def expired(self, now: datetime, limit: int = 1000, skip_archived: bool = False) -> list[str]:
        """Ids of jobs whose destruction time has passed (oldest first)."""
        query = select(jobs.c.job_id).where(jobs.c.destruction_time <= to_db_time(now))
        if skip_archived:
            query = query.where(jobs.c.phase != Phase.ARCHIVED.value)
        with self.engine.connect() as conn:
            return list(conn.execute(query.order_by(jobs.c.destruction_time).limit(limit)).scalars())

    def claimable(self, limit: int) -> list[str]:
        """QUEUED jobs not yet handed to a manager, oldest first."""
        with self.engine.connect() as conn:
            return list(conn.execute(
                select(jobs.c.job_id).where(jobs.c.phase == Phase.QUEUED.value, jobs.c.manager_id.is_(None))
                .order_by(jobs.c.seq).limit(limit)).scalars())

    def claim(self, job_id: str, manager_id: str) -> bool:
        """Mark a QUEUED job as taken by a manager (compare-and-set on manager_id)."""
        with self._write() as conn:
            return bool(conn.execute(
                update(jobs).where(jobs.c.job_id == job_id, jobs.c.phase == Phase.QUEUED.value,
                                   jobs.c.manager_id.is_(None)).values(manager_id=manager_id)).rowcount)

    def running(self) -> list[tuple[str, str, Phase]]:
        """(job_id, manager_id, phase) of every active job handed to a manager."""
        active = [Phase.QUEUED.value, Phase.EXECUTING.value, Phase.SUSPENDED.value, Phase.HELD.value]
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.job_id, jobs.c.manager_id, jobs.c.phase)
                                .where(jobs.c.phase.in_(active), jobs.c.manager_id.is_not(None))).all()
        return [(r[0], r[1], Phase(r[2])) for r in rows]

    def count_by_phase(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.phase, func.count()).group_by(jobs.c.phase)).all()
        return {r[0]: r[1] for r in rows}

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        """{job id: job with its parameters and results} for those of ``job_ids`` that exist (batched reads)."""
        ids = list(set(job_ids))
        out: dict[str, Job] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                for row in conn.execute(select(jobs).where(jobs.c.job_id.in_(chunk))).mappings():
                    out[row["job_id"]] = self._job(row)
                for r in conn.execute(
                        select(parameters.c.job_id, parameters.c.name, parameters.c.value,
                               parameters.c.by_reference, parameters.c.is_post)
                        .where(parameters.c.job_id.in_(chunk)).order_by(parameters.c.job_id, parameters.c.name)):
                    if r[0] in out:
                        out[r[0]].parameters.append(Parameter(*r[1:]))
                for r in conn.execute(
                        select(results.c.job_id, results.c.result_id, results.c.file_name, results.c.content_type,
                               results.c.size, results.c.sha256)
                        .where(results.c.job_id.in_(chunk)).order_by(results.c.job_id, results.c.result_id)):
                    if r[0] in out:
                        out[r[0]].results.append(Result(*r[1:]))
        return out
