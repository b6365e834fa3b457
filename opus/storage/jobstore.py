"""JobStore: the only code that reads and writes job rows.

It returns plain domain objects (``opus.uws.Job``); callers never hold a session.  Every phase
change is a compare-and-set (``UPDATE ... WHERE phase IN (allowed)``) whose row count says whether
it happened, so an ABORT can never be overwritten by a late completion, nor the reverse.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import BindParameter

from opus.storage import driverinsert, driverread
from opus.storage.entitystore import EntityRows, record_entities
from opus.storage.rows import (ListFilter, job_of, job_values, list_query, new_job_row, parameter_row, ref_of,
                              to_db_time)
from opus.storage.tables import entities, jobs, parameters, results, used
from opus.storage.writelock import WriteGate
from opus.uws import ACTIVE, ENDED, FINAL, Job, JobRef, Parameter, Phase, Result, checked_sources

#: Called with (job_id, new phase or "DELETED") after each committed change.
ChangeListener = Callable[[str, str], None]


class DuplicateJobId(Exception):
    """The job id is already taken (the caller draws another)."""


class CreationKeyTaken(Exception):
    """Another job holds the creation's idempotency key (``JobStore.find_by_key`` names it)."""


@dataclass(frozen=True)
class CreationKey:
    """A creation's idempotency key, stored in the job's row by its INSERT: ``key`` (SHA-256 of the
    owner and the client's key) is unique among jobs; ``digest`` (SHA-256 of the request) tells a
    retry of the same request from another request sent with the same key."""

    key: str
    digest: str


def _duplicate(job: Job, exc: BaseException) -> Exception | None:
    """The domain error for a unique violation of the jobs table (None: some other integrity error)."""
    message = str(exc)
    if "idempotency_key" in message:  # SQLite: "jobs.idempotency_key"; PostgreSQL: the index's name
        return CreationKeyTaken(job.job_id)
    if "job_id" in message or "jobs" in message:
        return DuplicateJobId(job.job_id)
    return None


def _ignore_change(job_id: str, phase: str) -> None:
    pass


# The reads of one job, built once (not a statement built and its cache key computed per request).
_ID: BindParameter[str] = bindparam("job_id")
_JOB = select(jobs).where(jobs.c.job_id == _ID)


def _child_read(columns: Sequence[Any], job_id: Any, order_by: Any) -> tuple[Select[Any], Any]:
    """A job's rows of a child table (its ``job_id`` column), in ``order_by``'s order: the SELECT of
    them, and the same as a JSON column of the job's row (PostgreSQL reads the three at once:
    opus.storage.driverread.JobReader says why)."""
    return (select(*columns).where(job_id == _ID).order_by(order_by),
            driverread.json_rows(columns, job_id == jobs.c.job_id, order_by))


_PARAMETERS, _PARAMETERS_JSON = _child_read(
    (parameters.c.name, parameters.c.value, parameters.c.by_reference, parameters.c.is_post),
    parameters.c.job_id, parameters.c.name)
_RESULTS, _RESULTS_JSON = _child_read(
    (results.c.result_id, results.c.file_name, results.c.content_type, results.c.size, results.c.sha256),
    results.c.job_id, results.c.result_id)
_WHOLE = select(jobs, _PARAMETERS_JSON, _RESULTS_JSON).where(jobs.c.job_id == _ID)
_CALLBACK_URL = select(jobs.c.callback_url).where(jobs.c.job_id == _ID)
_MANAGER_ID = select(jobs.c.manager_id).where(jobs.c.job_id == _ID)
_PHASE = select(jobs.c.phase).where(jobs.c.job_id == _ID)
_ENDED = frozenset(p.value for p in ENDED)
# The dispatcher's, on each of its turns (a turn per phase change): built once too.
_RUNNING = select(jobs.c.job_id, jobs.c.manager_id, jobs.c.phase) \
    .where(jobs.c.phase.in_([p.value for p in ACTIVE]), jobs.c.manager_id.is_not(None))
_CLAIMABLE = select(jobs.c.job_id).where(jobs.c.phase == Phase.QUEUED.value, jobs.c.manager_id.is_(None)) \
    .order_by(jobs.c.seq).limit(bindparam("limit", type_=Integer()))
# (Its job id is not bound as "job_id": in an UPDATE, SQLAlchemy keeps columns' names for its own binds.)
_CLAIM = update(jobs).where(jobs.c.job_id == bindparam("claimed"), jobs.c.phase == Phase.QUEUED.value,
                            jobs.c.manager_id.is_(None)).values(manager_id=bindparam("claimed_by"))


class JobStore:
    """Persistence of jobs, parameters and results on one SQLAlchemy engine."""

    def __init__(self, engine: Engine, on_change: ChangeListener | None = None, writer_process: bool = False):
        """``writer_process``: on SQLite, creations are written by a writer process (SQLITE_WRITER_PROCESS)."""
        self.engine = engine
        self._gate = WriteGate(engine)
        self._inserts = driverinsert.GroupInsert(self._gate, writer_process)
        self._reader = driverread.JobReader(engine, _JOB, _PARAMETERS, _RESULTS, _ENDED, _WHOLE)
        dbapi = engine.dialect.dbapi
        self._driver_integrity_error: type[Exception] = dbapi.IntegrityError if dbapi is not None else IntegrityError
        #: Called with (job_id, new phase or "DELETED") after each committed change.
        self.on_change: ChangeListener = on_change or _ignore_change

    def close(self) -> None:
        """Stop this process's SQLite writer process, if it has one (a later creation starts another)."""
        self._inserts.close()

    def _write(self) -> AbstractContextManager[Connection]:
        """A write transaction (serialised per host on SQLite: ``opus.storage.writelock``)."""
        return self._gate.transaction()

    # ---- create and read -----------------------------------------------------------------------
    #: Whether ``create`` inserts through the driver (``opus.storage.driverinsert`` says why); the
    #: generic SQLAlchemy path stays for tests/test_jobstore_driver_insert.py to compare against.
    _driver_insert = True

    def create(self, job: Job, key: CreationKey | None = None) -> None:
        """Insert a new job with its parameters (and its creation key) in one transaction.

        DuplicateJobId if the id is taken, CreationKeyTaken if another job holds ``key``.  A job
        inserted QUEUED (created with PHASE=RUN) is announced, so that the dispatcher takes it."""
        row = new_job_row(job)
        if key is not None:
            row.update(idempotency_key=key.key, request_digest=key.digest)
        params = [parameter_row(job.job_id, p) for p in job.parameters]
        try:
            if self._driver_insert:
                self._inserts.insert(row, params)  # group commit with other threads' creations
            else:
                with self._write() as conn:
                    conn.execute(insert(jobs), [row])
                    if params:
                        conn.execute(insert(parameters), params)
        except IntegrityError as exc:
            found = _duplicate(job, exc.orig or exc)
            if found is not None:
                raise found from None
            raise
        except self._driver_integrity_error as exc:  # the driver's own, from driverinsert
            found = _duplicate(job, exc)
            if found is not None:
                raise found from None
            raise
        # A new PENDING job is not announced: nobody can be waiting on it yet.
        if job.phase is Phase.QUEUED:
            self.on_change(job.job_id, job.phase.value)

    def find_by_key(self, key: str) -> tuple[str, str] | None:
        """(job id, request digest) of the job that holds creation key ``key``, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs.c.job_id, jobs.c.request_digest)
                               .where(jobs.c.idempotency_key == key)).first()
        return None if row is None else (row[0], row[1] or "")

    #: Whether ``get`` reads through the driver (``opus.storage.driverread`` says why); the generic
    #: SQLAlchemy path stays for tests/test_jobstore_driver_read.py to compare against.
    _driver_read = True

    def get(self, job_id: str) -> Job | None:
        """The job with its parameters and results, or None."""
        if self._driver_read:
            return self._reader.get(job_id)
        key = {"job_id": job_id}
        with self.engine.connect() as conn:
            row = conn.execute(_JOB, key).mappings().first()
            if row is None:
                return None
            params = conn.execute(_PARAMETERS, key).all()
            # Results are stored only by a move to an ended phase (``complete``): none to read before.
            res = conn.execute(_RESULTS, key).all() if row["phase"] in _ENDED else []
        job = job_of(row)
        job.parameters = [Parameter(*p) for p in params]
        job.results = [Result(*r) for r in res]
        return job

    def get_callback_url(self, job_id: str) -> str | None:
        with self.engine.connect() as conn:
            value: str | None = conn.execute(_CALLBACK_URL, {"job_id": job_id}).scalar()
        return value

    def get_manager_id(self, job_id: str) -> str | None:
        with self.engine.connect() as conn:
            value: str | None = conn.execute(_MANAGER_ID, {"job_id": job_id}).scalar()
        return value

    def get_phase(self, job_id: str) -> Phase | None:
        with self.engine.connect() as conn:
            value = conn.execute(_PHASE, {"job_id": job_id}).scalar()
        return None if value is None else Phase(value)

    def list(self, jobname: str | None = None, phases: Iterable[Phase] = (), after: datetime | None = None,
             last: int | None = None, owner_key: str | None = None, include_archived: bool = False,
             filter_owner: bool = False, before: datetime | None = None,
             run_id: str | None = None) -> builtins.list[JobRef]:
        """Job references, newest first, filtered by AND of the given criteria (``filter_owner``: only
        the jobs of ``owner_key``, None meaning the anonymous ones; ``before``, ``run_id``: ``ListFilter``)."""
        wanted = ListFilter(tuple(phases), after, last, before, run_id)
        query, values = list_query(jobname, wanted, owner_key, include_archived, filter_owner)
        with self.engine.connect() as conn:
            rows = conn.execute(query, values).all()
        return builtins.list(map(ref_of, rows))

    def iter_list(self, jobname: str | None = None, phases: Iterable[Phase] = (), after: datetime | None = None,
                  last: int | None = None, owner_key: str | None = None, filter_owner: bool = False,
                  batch: int = 2000, before: datetime | None = None, run_id: str | None = None) -> Iterator[JobRef]:
        """Like ``list``, streamed from a server-side cursor ``batch`` rows at a time: memory stays
        bounded however many jobs there are."""
        wanted = ListFilter(tuple(phases), after, last, before, run_id)
        query, values = list_query(jobname, wanted, owner_key, False, filter_owner)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(query, values)
            for rows in result.partitions():
                yield from map(ref_of, rows)

    # ---- compare-and-set updates ----------------------------------------------------------------
    # Every phase change is ``UPDATE jobs SET phase = target WHERE job_id = ? AND phase IN (sources)``:
    # the database decides, atomically, whether the job was still in a phase it may leave for the
    # target, and the row count says whether it moved.  The sources come from opus.uws.TRANSITIONS.
    def _move(self, conn: Connection, job_id: str, target: Phase, sources: frozenset[Phase],
              fields: Mapping[str, object]) -> bool:
        count = conn.execute(
            update(jobs).where(jobs.c.job_id == job_id, jobs.c.phase.in_([p.value for p in sources]))
            .values(phase=target.value, **job_values(fields))).rowcount
        return bool(count)

    def set_phase(self, job_id: str, target: Phase, sources: Iterable[Phase] | None = None,
                  **fields: Any) -> bool:
        """Move the job to ``target`` if it is in one of ``sources`` (default: every phase the
        transition table allows; ValueError if ``sources`` names one it does not); True if it moved."""
        allowed = checked_sources(target, sources)
        # Group-committed with the other threads' phase changes (opus.storage.writelock.Batcher).
        moved = self._gate.grouped(job_id, lambda conn: self._move(conn, job_id, target, allowed, fields))
        if moved:
            self.on_change(job_id, target.value)
        return moved

    def complete(self, job_id: str, target: Phase, sources: Iterable[Phase] | None, found: Sequence[Result],
                 *, entities: EntityRows | None = None, **fields: Any) -> bool:
        """Like set_phase, recording ``found`` results and the job's ``entities`` (planned by
        ``EntityStore.plan_completion``) in the same transaction, when the phase moved."""
        allowed = checked_sources(target, sources)

        def end(conn: Connection) -> bool:
            moved = self._move(conn, job_id, target, allowed, fields)
            if moved and found:
                conn.execute(delete(results).where(results.c.job_id == job_id))
                conn.execute(insert(results), [
                    {"job_id": job_id, "result_id": r.result_id, "file_name": r.file_name,
                     "content_type": r.content_type, "size": r.size, "sha256": r.sha256} for r in found])
            if moved and entities is not None:
                record_entities(conn, entities)
            return moved
        moved = self._gate.grouped(job_id, end)
        if moved:
            self.on_change(job_id, target.value)
        return moved

    def update_job(self, job_id: str, in_phases: Iterable[Phase] | None = None, **fields: Any) -> bool:
        """Set fields (not the phase) if the job is in one of ``in_phases`` (None: in any phase); True
        if it was."""
        query = update(jobs).where(jobs.c.job_id == job_id)
        if in_phases is not None:
            query = query.where(jobs.c.phase.in_([p.value for p in in_phases]))
        values = job_values(fields)
        return bool(self._gate.grouped(job_id, lambda conn: conn.execute(query.values(**values)).rowcount))

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
            conn.execute(insert(parameters), [parameter_row(job_id, p) for p in params])
        return True

    # ---- forgetting and archiving -----------------------------------------------------------------
    @staticmethod
    def _forget_files(conn: Connection, prefix: str) -> None:
        """Entities whose file is under ``prefix`` (ending in "/") lose their location; their rows stay
        (other jobs' provenance names them).  An indexed range: "<p>/..." sorts between "<p>/" and "<p>0"."""
        end = prefix[:-1] + "0"
        conn.execute(update(entities).where(entities.c.location >= prefix, entities.c.location < end)
                     .values(location=None))

    def delete(self, job_id: str) -> bool:
        """Forget the job and its rows; True if it existed."""
        with self._write() as conn:
            conn.execute(delete(results).where(results.c.job_id == job_id))
            conn.execute(delete(parameters).where(parameters.c.job_id == job_id))
            count = conn.execute(delete(jobs).where(jobs.c.job_id == job_id)).rowcount
            if count:
                self._forget_files(conn, f"{job_id}/")
                conn.execute(delete(used).where(used.c.job_id == job_id))
        if count:
            self.on_change(job_id, "DELETED")
        return bool(count)

    def delete_finished(self, job_ids: Sequence[str]) -> builtins.list[str]:
        """Forget those of ``job_ids`` that are finished (FINAL), in one transaction: the destruction
        sweep's fast path (no process to stop).  Returns their ids."""
        with self._write() as conn:
            gone = list(conn.execute(select(jobs.c.job_id).where(
                jobs.c.job_id.in_(list(job_ids)), jobs.c.phase.in_([p.value for p in FINAL]))).scalars())
            if gone:
                conn.execute(delete(results).where(results.c.job_id.in_(gone)))
                conn.execute(delete(parameters).where(parameters.c.job_id.in_(gone)))
                conn.execute(delete(used).where(used.c.job_id.in_(gone)))
                for job_id in gone:
                    self._forget_files(conn, f"{job_id}/")
                conn.execute(delete(jobs).where(jobs.c.job_id.in_(gone)))
        for job_id in gone:
            self.on_change(job_id, "DELETED")
        return gone

    def archive(self, job_id: str) -> bool:
        """Move an ended job to ARCHIVED and drop its result rows, in one transaction."""
        with self._write() as conn:
            moved = self._move(conn, job_id, Phase.ARCHIVED, checked_sources(Phase.ARCHIVED, ENDED), {})
            if moved:
                conn.execute(delete(results).where(results.c.job_id == job_id))
                self._forget_files(conn, f"{job_id}/results/")
        if moved:
            self.on_change(job_id, Phase.ARCHIVED.value)
        return moved

    # ---- queries for managers and maintenance -------------------------------------------------------
    def expired(self, now: datetime, limit: int = 1000, skip_archived: bool = False) -> builtins.list[str]:
        """Ids of jobs whose destruction time has passed (oldest first)."""
        query = select(jobs.c.job_id).where(jobs.c.destruction_time <= to_db_time(now))
        if skip_archived:
            query = query.where(jobs.c.phase != Phase.ARCHIVED.value)
        with self.engine.connect() as conn:
            return list(conn.execute(query.order_by(jobs.c.destruction_time).limit(limit)).scalars())

    def claimable(self, limit: int) -> builtins.list[str]:
        """QUEUED jobs not yet handed to a manager, oldest first."""
        with self.engine.connect() as conn:
            return list(conn.execute(_CLAIMABLE, {"limit": limit}).scalars())

    def claim(self, job_id: str, manager_id: str) -> bool:
        """Mark a QUEUED job as taken by a manager (compare-and-set on manager_id)."""
        values = {"claimed": job_id, "claimed_by": manager_id}
        return bool(self._gate.grouped(job_id, lambda conn: conn.execute(_CLAIM, values).rowcount))

    def running(self) -> builtins.list[tuple[str, str, Phase]]:
        """(job_id, manager_id, phase) of every ACTIVE job handed to a manager."""
        with self.engine.connect() as conn:
            rows = conn.execute(_RUNNING).all()
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
                self._read_chunk(conn, ids[start:start + 500], out)
        return out

    @staticmethod
    def _read_chunk(conn: Connection, chunk: builtins.list[str], out: dict[str, Job]) -> None:
        for row in conn.execute(select(jobs).where(jobs.c.job_id.in_(chunk))).mappings():
            out[row["job_id"]] = job_of(row)
        for r in conn.execute(
                select(parameters.c.job_id, parameters.c.name, parameters.c.value,
                       parameters.c.by_reference, parameters.c.is_post)
                .where(parameters.c.job_id.in_(chunk)).order_by(parameters.c.job_id, parameters.c.name)):
            if r[0] in out:
                out[r[0]].parameters.append(Parameter(*r[1:]))
        for res in conn.execute(
                select(results.c.job_id, results.c.result_id, results.c.file_name, results.c.content_type,
                       results.c.size, results.c.sha256)
                .where(results.c.job_id.in_(chunk)).order_by(results.c.job_id, results.c.result_id)):
            if res[0] in out:
                out[res[0]].results.append(Result(*res[1:]))
