"""The UWS 1.1 domain: phases, the transition table, and the Job object.

No HTTP, no SQL, no subprocess here: ``opus.service.jobs`` applies these rules through a JobStore and a
Manager.  References are to ``shared/uws/CHECKLIST.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from opus.errors import BadRequest, IllegalTransition


class Phase(str, Enum):
    """The ten UWS execution phases (UWS-41)."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ARCHIVED = "ARCHIVED"

    def __str__(self) -> str:
        return self.value


#: Characters XML 1.0 cannot carry: values holding them are refused (UWS documents must parse).
#: A job's or an entity's id: 16 hexadecimal digits when made here; ``opus migrate`` keeps the original
#: OPUS's ids, which were shorter (6 hexadecimal digits by default): at most 32 of these characters.
ID_PATTERN = "[A-Za-z0-9_-]{1,32}"
ID_RE = re.compile(f"^{ID_PATTERN}\\Z")
NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

#: Phases in which a WAIT may block (UWS-57).
WAITABLE = frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING})
#: Phases of a job that has been committed to run and has not finished.
ACTIVE = frozenset({Phase.QUEUED, Phase.EXECUTING, Phase.HELD, Phase.SUSPENDED})
#: Phases after which nothing runs any more.
FINAL = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED, Phase.ARCHIVED})
#: Phases a job ends in (FINAL without ARCHIVED, which only an ended job reaches).
ENDED = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED})
#: Phases of a job handed to its manager and not yet ended: RUN is a no-op there (CHECKLIST §6.2).
RUNNING = frozenset({Phase.QUEUED, Phase.EXECUTING})
#: Phases from which RUN queues a job.
RUNNABLE = frozenset({Phase.PENDING, Phase.HELD})
#: Phases in which parameters and the execution duration may still be changed.
EDITABLE = frozenset({Phase.PENDING, Phase.HELD})
#: Phases from which ABORT (or an expired destruction time) moves a job to ABORTED.
ABORTABLE = frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING, Phase.HELD, Phase.SUSPENDED, Phase.UNKNOWN})
#: Phases from which a manager's report of a start moves a job to EXECUTING.
STARTABLE = frozenset({Phase.QUEUED, Phase.HELD, Phase.SUSPENDED, Phase.UNKNOWN})
#: Phases from which a manager's report of an end moves a job to COMPLETED, ERROR or ABORTED.
ENDABLE = frozenset({Phase.EXECUTING, Phase.SUSPENDED, Phase.HELD, Phase.UNKNOWN})
#: The phases a job wrapper may report (targets, not sources).
REPORTABLE = frozenset({Phase.EXECUTING, Phase.COMPLETED, Phase.ERROR, Phase.ABORTED})
#: Phases of a job that counts against its owner's limit of unfinished jobs (MAX_ACTIVE_JOBS).
#: UNKNOWN is not counted: nothing is known to run.
UNFINISHED = ACTIVE | {Phase.PENDING}
#: Phases in which a manager still records the id it gave a job: all but ABORTED, since an ABORT
#: that landed first could not stop what it did not know, and the manager cancels it itself.
UNABORTED = frozenset(set(Phase) - {Phase.ABORTED})
#: Phases a job imported from another server (opus migrate) keeps: nothing runs it on arrival, so a
#: job that was QUEUED or EXECUTING there comes in as ERROR, saying why.
AT_REST = FINAL | {Phase.PENDING}

#: The transition table (CHECKLIST §3): target phase -> phases it may be reached from.
#: UNKNOWN may move anywhere (the server re-learns the state), as vollt allows.
#: JobStore.set_phase takes its compare-and-set sources from here: a transition the server makes
#: is in this table or it does not happen.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    # EXECUTING, SUSPENDED: SLURM requeues a job (REQUEUED, preemption); reconciliation follows squeue.
    Phase.QUEUED: frozenset({Phase.PENDING, Phase.HELD, Phase.UNKNOWN, Phase.EXECUTING, Phase.SUSPENDED}),
    Phase.EXECUTING: frozenset({Phase.QUEUED, Phase.HELD, Phase.SUSPENDED, Phase.UNKNOWN}),
    # SUSPENDED, HELD: SLURM (its epilog, the wrapper's report, reconciliation) reports the end of a
    # job the database last saw held or suspended (ENDABLE).
    Phase.COMPLETED: frozenset({Phase.EXECUTING, Phase.UNKNOWN, Phase.SUSPENDED, Phase.HELD}),
    Phase.ERROR: frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING, Phase.SUSPENDED, Phase.HELD,
                            Phase.UNKNOWN}),
    Phase.ABORTED: frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING, Phase.HELD, Phase.SUSPENDED,
                              Phase.UNKNOWN}),
    # SUSPENDED: reconciliation sees a suspended SLURM job held (scontrol hold) since its last look.
    Phase.HELD: frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING, Phase.UNKNOWN, Phase.SUSPENDED}),
    # QUEUED, HELD: reconciliation sees a job suspended that it last saw before it started (squeue is
    # read every SLURM_RECONCILE_MINUTES; the wrapper's EXECUTING report may be lost).
    Phase.SUSPENDED: frozenset({Phase.EXECUTING, Phase.UNKNOWN, Phase.QUEUED, Phase.HELD}),
    Phase.ARCHIVED: frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED}),
    Phase.UNKNOWN: frozenset(set(Phase) - {Phase.ARCHIVED, Phase.UNKNOWN}),
    Phase.PENDING: frozenset(),
}

#: Every named source set the server moves jobs from, with the targets it moves them to.  Checked
#: at import (below): a named set wider than the table would let a compare-and-set move a job where
#: the table forbids.
NAMED_MOVES: tuple[tuple[str, frozenset[Phase], frozenset[Phase]], ...] = (
    ("RUNNABLE", RUNNABLE, frozenset({Phase.QUEUED})),                # RUN
    ("ABORTABLE", ABORTABLE, frozenset({Phase.ABORTED})),             # ABORT, destruction (archive policy)
    ("STARTABLE", STARTABLE, frozenset({Phase.EXECUTING})),           # a report of a start
    ("ENDABLE", ENDABLE, ENDED),                                      # a report of an end
    ("ENDED", ENDED, frozenset({Phase.ARCHIVED})),                    # archiving
    ("ACTIVE", ACTIVE, ACTIVE),                                       # SLURM reconciliation
)


def _check_named_moves() -> None:
    for name, sources, targets in NAMED_MOVES:
        for target in targets:
            extra = sources - {target} - TRANSITIONS[target]
            if extra:
                raise RuntimeError(f"opus.uws: {name} -> {target.value} is not in TRANSITIONS for "
                                   + ", ".join(sorted(p.value for p in extra)))


_check_named_moves()


def allowed_sources(target: Phase) -> frozenset[Phase]:
    """The phases from which ``target`` may be reached."""
    return TRANSITIONS[target]


def checked_sources(target: Phase, sources: Iterable[Phase] | None) -> frozenset[Phase]:
    """``sources`` (default: the table's) for a move to ``target``; ValueError if any is not in the
    table: a caller asking for more than the table allows is a programming error, never a request's."""
    allowed = TRANSITIONS[target]
    if sources is None:
        return allowed
    wanted = frozenset(sources)
    if not wanted <= allowed:
        raise ValueError(f"{', '.join(sorted(p.value for p in wanted - allowed))} -> {target.value} "
                         "is not in the UWS transition table (opus.uws.TRANSITIONS)")
    return wanted


def check_transition(current: Phase, target: Phase) -> None:
    """Raise IllegalTransition (403) unless ``current`` -> ``target`` is in the table."""
    if current not in TRANSITIONS[target]:
        raise IllegalTransition(f"a job in phase {current.value} cannot go to {target.value}")


def parse_phase(text: str, what: str = "PHASE") -> Phase:
    """A phase from client input (exact, upper case, as the schema requires)."""
    try:
        return Phase(text.strip())
    except (ValueError, AttributeError):
        raise BadRequest(f"{what}: {text!r} is not a UWS phase; expected one of "
                         + ", ".join(p.value for p in Phase)) from None


@dataclass
class Parameter:
    """One job parameter; ``by_reference`` values are URLs (uploads are served by OPUS)."""

    name: str
    value: str
    by_reference: bool = False
    is_post: bool = False


@dataclass
class Result:
    """One result of a job, stored as a file in the job's result area."""

    result_id: str
    file_name: str
    content_type: str = "application/octet-stream"
    size: int | None = None
    sha256: str | None = None


@dataclass
class ErrorSummary:
    """The UWS errorSummary: a message, fatal or transient, with or without a detail document."""

    message: str
    type: str = "fatal"
    has_detail: bool = True


@dataclass
class Job:
    """A UWS job as the domain sees it: plain data, no database session behind it."""

    job_id: str
    jobname: str
    phase: Phase
    creation_time: datetime
    execution_duration: int
    destruction_time: datetime | None
    run_id: str | None = None
    owner_id: str | None = None
    quote: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: ErrorSummary | None = None
    parameters: list[Parameter] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    jdl_version: str | None = None
    manager_id: str | None = None
    #: Whom the job belongs to for access (``opus.auth.identity.can_access``); ``owner_id`` is the owner's
    #: name, for display (UWS ownerId).  None for anonymous jobs.
    owner_key: str | None = None

    @property
    def is_waitable(self) -> bool:
        return self.phase in WAITABLE

    def parameter(self, name: str) -> Parameter | None:
        for p in self.parameters:
            if p.name == name:
                return p
        return None

    def result(self, result_id: str) -> Result | None:
        for r in self.results:
            if r.result_id == result_id:
                return r
        return None


@dataclass(slots=True)
class JobRef:
    """What a job list shows of a job (UWS ShortJobDescription).  The creation instant is kept as
    the list prints it (``2024-05-01T12:00:00.000Z``, UTC): a list of a thousand jobs then makes no
    datetime object at all (``opus.storage.rows.ref_of``)."""

    job_id: str
    jobname: str
    phase: Phase
    run_id: str | None
    owner_id: str | None
    created: str

    @property
    def creation_time(self) -> datetime:
        """The creation instant, aware UTC."""
        return datetime.fromisoformat(self.created)
