"""Domain objects <-> table rows: instants, job fields, and the job-list query.

Instants are stored as naive UTC truncated to milliseconds (``opus.storage.tables`` says why).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Integer, Select, String, and_, bindparam, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from opus.storage.tables import jobs
from opus.timeutil import format_instant
from opus.uws import ErrorSummary, Job, JobRef, Parameter, Phase


def to_db_time(dt: datetime | None) -> datetime | None:
    """Aware UTC -> naive UTC, truncated to milliseconds (what UWS prints)."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


def from_db_time(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.replace(tzinfo=timezone.utc)


def _aware(dt: datetime) -> datetime:
    """A NOT NULL column's instant, made aware."""
    return dt.replace(tzinfo=timezone.utc)


_PHASES = {p.value: p for p in Phase}
#: The job fields a compare-and-set update may write (never the owner, the name or the phase).
JOB_FIELDS = frozenset({
    "start_time", "end_time", "execution_duration", "destruction_time", "quote", "manager_id",
    "callback_url", "run_id", "error", "jdl_version",
})
class uws_instant(FunctionElement[str]):
    """A DateTime column read as the text of a UWS instant, without SQLAlchemy's DateTime conversion
    or a datetime object per row (a list of a thousand jobs): PostgreSQL prints it itself
    (``to_char``, whatever the session's DateStyle); SQLite returns the text SQLAlchemy stored,
    sliced by ``instant_text``; another database's driver returns a datetime, printed by it too."""

    type = String()
    name = "uws_instant"
    inherit_cache = True


@compiles(uws_instant)
def _uws_instant(element: uws_instant, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(uws_instant, "postgresql")
def _uws_instant_postgresql(element: uws_instant, compiler: SQLCompiler, **kw: Any) -> str:
    return f"""to_char({compiler.process(element.clauses, **kw)}, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


#: The job-list columns (the creation time as ``uws_instant`` text, see ``instant_text``).
REF_COLUMNS = (jobs.c.job_id, jobs.c.jobname, jobs.c.phase, jobs.c.run_id, jobs.c.owner_id,
               uws_instant(jobs.c.creation_time).label("creation_time"))


def job_values(fields: Mapping[str, object]) -> dict[str, object]:
    """Domain field values -> column values (TypeError for a name that is not a job field)."""
    unknown = set(fields) - JOB_FIELDS
    if unknown:
        raise TypeError(f"not job fields: {sorted(unknown)}")
    out: dict[str, object] = {}
    for key, value in fields.items():
        if key == "error":
            err = value if isinstance(value, ErrorSummary) else None
            out["error_type"] = err.type if err else None
            out["error_message"] = err.message if err else None
            out["error_has_detail"] = bool(err and err.has_detail)
        elif isinstance(value, datetime):
            out[key] = to_db_time(value)
        else:
            out[key] = value
    return out


def new_job_row(job: Job) -> dict[str, object]:
    """The ``jobs`` row of a new job."""
    if job.owner_id is not None and job.owner_key is None:
        # A named owner without a key would make the job anonymous to can_access: never store that.
        raise ValueError(f"job {job.job_id!r}: owner {job.owner_id!r} without an owner_key")
    return {
        "job_id": job.job_id, "jobname": job.jobname, "phase": job.phase.value,
        "creation_time": to_db_time(job.creation_time), "owner_id": job.owner_id, "owner_key": job.owner_key,
        **job_values({"run_id": job.run_id, "execution_duration": job.execution_duration,
                      "destruction_time": job.destruction_time, "quote": job.quote,
                      "jdl_version": job.jdl_version, "error": job.error}),
    }


def parameter_row(job_id: str, p: Parameter) -> dict[str, object]:
    return {"job_id": job_id, "name": p.name, "value": p.value, "by_reference": p.by_reference,
            "is_post": p.is_post}


def job_of(row: RowMapping | Mapping[str, Any]) -> Job:
    """A ``jobs`` row as a Job (without its parameters and results)."""
    error = None
    if row["error_message"] is not None:
        error = ErrorSummary(row["error_message"], row["error_type"] or "fatal", bool(row["error_has_detail"]))
    return Job(
        job_id=row["job_id"], jobname=row["jobname"], phase=Phase(row["phase"]),
        creation_time=_aware(row["creation_time"]), execution_duration=row["execution_duration"],
        destruction_time=from_db_time(row["destruction_time"]), run_id=row["run_id"],
        owner_id=row["owner_id"], quote=from_db_time(row["quote"]),
        start_time=from_db_time(row["start_time"]), end_time=from_db_time(row["end_time"]),
        error=error, jdl_version=row["jdl_version"], manager_id=row["manager_id"], owner_key=row["owner_key"],
    )


def instant_text(value: str | datetime) -> str:
    """A stored instant (naive UTC) as UWS prints it, ``2024-05-01T12:00:00.000Z``.  ``value`` is what
    the driver returned for ``uws_instant``: that text already (PostgreSQL), SQLAlchemy's SQLite text
    (``2024-05-01 12:00:00.000000``: sliced, the cost of a list of a thousand jobs) or a datetime."""
    if type(value) is str:
        if len(value) == 24 and value[10] == "T" and value[23] == "Z":
            return value
        if len(value) == 26 and value[10] == " " and value[19] == ".":
            return f"{value[:10]}T{value[11:23]}Z"
        value = datetime.fromisoformat(value)  # another text form: parsed, then printed the same way
    assert isinstance(value, datetime)
    return format_instant(value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc))


def ref_of(r: Sequence[Any]) -> JobRef:
    """A row of ``REF_COLUMNS`` as a JobRef."""
    return JobRef(r[0], r[1], _PHASES[r[2]], r[3], r[4], instant_text(r[5]))


@dataclass(frozen=True)
class ListFilter:
    """What a job list asks for beyond the definition and the owner: UWS's PHASE, AFTER and LAST, and
    OPUS's BEFORE (created strictly before) and RUNID (the run id; ``*`` in it matches any characters,
    and then the match ignores case)."""

    phases: tuple[Phase, ...] = ()
    after: datetime | None = None
    last: int | None = None
    before: datetime | None = None
    run_id: str | None = None


def run_id_pattern(run_id: str) -> str:
    """The LIKE pattern of a RUNID with ``*`` wildcards (``\\`` escapes LIKE's own % and _)."""
    escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def list_query(jobname: str | None, wanted: ListFilter, owner_key: str | None, include_archived: bool,
               filter_owner: bool) -> tuple[Select[Any], dict[str, object]]:
    """The job-list query (AND of the criteria, newest first; ``seq`` orders a same-millisecond tie)
    and its parameters.  The statement depends only on which criteria are given: it is built once
    per combination (``_list_statement``), the values are bound at execution."""
    phases = [p.value for p in wanted.phases]
    by_owner = filter_owner or owner_key is not None
    run_id = wanted.run_id
    run_match = None if run_id is None else "like" if "*" in run_id else "exact"
    query = _list_statement(jobname is not None, bool(phases), not phases and not include_archived,
                            wanted.after is not None, (owner_key is None) if by_owner else None,
                            wanted.last is not None, wanted.before is not None, run_match)
    values: dict[str, object] = {"jobname": jobname, "phases": phases, "archived": Phase.ARCHIVED.value,
                                 "after": to_db_time(wanted.after), "owner_key": owner_key, "last": wanted.last,
                                 "before": to_db_time(wanted.before),
                                 "run_id": run_id_pattern(run_id) if run_id and run_match == "like" else run_id}
    return query, values


@functools.lru_cache(maxsize=128)
def _list_statement(by_name: bool, by_phase: bool, no_archived: bool, by_after: bool,
                    anonymous_owner: bool | None, limited: bool, by_before: bool = False,
                    run_match: str | None = None) -> Select[Any]:
    """The list statement for one combination of criteria (``anonymous_owner``: None when the
    owner is not a criterion; ``run_match``: None, "exact" or "like"), with bound parameters named
    as ``list_query``'s values."""
    query = select(*REF_COLUMNS)
    conds: list[ColumnElement[bool]] = []
    if by_name:
        conds.append(jobs.c.jobname == bindparam("jobname"))
    if by_phase:
        conds.append(jobs.c.phase.in_(bindparam("phases", expanding=True)))
    elif no_archived:
        conds.append(jobs.c.phase != bindparam("archived"))
    if by_after:
        conds.append(jobs.c.creation_time > bindparam("after", type_=jobs.c.creation_time.type))
    if by_before:
        conds.append(jobs.c.creation_time < bindparam("before", type_=jobs.c.creation_time.type))
    if run_match == "exact":
        conds.append(jobs.c.run_id == bindparam("run_id"))
    elif run_match == "like":
        conds.append(jobs.c.run_id.ilike(bindparam("run_id"), escape="\\"))
    if anonymous_owner is not None:
        conds.append(jobs.c.owner_key.is_(None) if anonymous_owner else jobs.c.owner_key == bindparam("owner_key"))
    if conds:
        query = query.where(and_(*conds))
    query = query.order_by(jobs.c.creation_time.desc(), jobs.c.seq.desc())
    if limited:
        query = query.limit(bindparam("last", type_=Integer()))
    return query
