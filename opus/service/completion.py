"""CompletionService: applying what a running job reports.

Three sources, one rule set:

* the job wrapper's callback (``wrapper_report``): proven by the job's token, counted in metrics;
* the manager's replays (``apply``): a saved report of a wrapper that could not call back, or an
  ERROR the manager decides itself (a job that could not start, a lost process);
* the SLURM epilog's hint (``epilog_hint``): it holds no secret, so it only asks the manager to
  check the job against its own sources before anything changes.

A report is checked in full before anything moves; a phase changes only by compare-and-set from
the named sets of ``opus.uws``, so a late or repeated report is "already" or "ignored", never an
error.  A final report that lost the race (the job was ABORTED meanwhile) leaves its result files
behind, which nothing would ever serve: they are removed.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from opus.errors import BadRequest, ConfigurationError, Forbidden, NotFound, OpusError
from opus.jobdef import JobDefinition, JobDefinitionRegistry
from opus.jobdef.content_types import result_type
from opus.managers.base import Manager
from opus.observability.logcontext import set_job_id
from opus.storage import JobStore
from opus.storage.entitystore import EntityRows, EntityStore
from opus.storage.jobfiles import JobFiles, read_json
from opus.timeutil import parse_instant, utcnow
from opus.uws import ENDABLE, FINAL, REPORTABLE, STARTABLE, ErrorSummary, Job, Phase, Result

log = logging.getLogger(__name__)
RESULT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}\Z")
#: A report as the wrapper sends it (parsed JSON):
#: {job_id, token, phase, message?, results?, start_time?, end_time?}.
Report = dict[str, Any]
#: Whether a token is the callback token of a job (``opus.auth.identity.check_job_token``).
TokenCheck = Callable[[str, str], bool]
#: Told of every phase change a report made (``opus.service.notifications.Notifications.phase_changed``).
PhaseHook = Callable[[str, Phase], None]


class Count(Protocol):
    """Adds one to a metrics counter (``opus.observability.metrics.count`` bound to the settings)."""

    def __call__(self, name: str, /, **labels: str) -> None: ...


class CompletionService:
    """Moves jobs to EXECUTING and to their end as their wrappers, managers and SLURM report."""

    def __init__(self, store: JobStore, registry: JobDefinitionRegistry, manager: Manager,
                 entities: EntityStore, jobs_dir: Path, verify_token: TokenCheck, count: Count) -> None:
        self.store = store
        self.registry = registry
        self.manager = manager
        self.entities = entities
        self.jobs_dir = jobs_dir
        self.verify_token = verify_token
        self.count = count
        #: Called after each phase change this service made (once: the compare-and-set's winner).
        self.on_phase: PhaseHook | None = None

    # ---- the HTTP callback (opus.server.callback_routes) ------------------------------------------
    def wrapper_report(self, report: Report) -> str:
        """A wrapper's callback: check its token, then ``apply``; returns the outcome."""
        job_id = _job_id(report)
        token = report.get("token")
        if not job_id or not isinstance(token, str) or not self.verify_token(job_id, token):
            self.count("opus_callbacks_total", outcome="refused")
            raise Forbidden("invalid job token")
        try:
            outcome = self.apply(job_id, report)
        except OpusError:
            self.count("opus_callbacks_total", outcome="invalid")
            raise
        self.count("opus_callbacks_total", outcome=outcome)
        log.info("job %s: report %s %s", job_id, report.get("phase"), outcome)
        return outcome

    def epilog_hint(self, report: Report) -> str:
        """The SLURM epilog says a job ended ({job_id, event: slurm_end, slurm_job_id, exit_code}):
        the manager checks that against SLURM before settling the job; returns the outcome."""
        job_id = _job_id(report)
        hint: Callable[[str, str, str], str] | None = getattr(self.manager, "end_hint", None)
        if hint is None:
            raise BadRequest("this server does not run jobs on SLURM")
        if self.store.get_phase(job_id) is None:
            raise NotFound(f"no job {job_id!r}")
        outcome = hint(job_id, str(report.get("slurm_job_id", "")), str(report.get("exit_code", "")))
        self.count("opus_slurm_end_hints_total", outcome=outcome)
        return outcome

    # ---- applying a report ------------------------------------------------------------------------
    def replay(self, job_id: str, report: Report) -> None:
        """``apply`` for the manager (its ``ReportSink``), which has no use for the outcome."""
        self.apply(job_id, report)

    def apply(self, job_id: str, report: Report) -> str:
        """Apply a wrapper report; returns "applied", "already" or "ignored" (idempotent).

        A wrapper reports only EXECUTING, COMPLETED, ERROR or ABORTED; the report is checked in
        full before anything moves.
        """
        target = _target(report)
        found = results_of(report) if target is not Phase.EXECUTING else []
        current = self.store.get_phase(job_id)
        if current is None:
            raise NotFound(f"no job {job_id!r}")
        if current is target:
            return "already"
        if current in FINAL:
            if target is not Phase.EXECUTING:
                self._drop_unserved(job_id)
            return "ignored"
        when = _report_time(report.get("start_time" if target is Phase.EXECUTING else "end_time"))
        if target is Phase.EXECUTING:
            moved = self.store.set_phase(job_id, Phase.EXECUTING, STARTABLE, start_time=when)
        else:
            message = str(report.get("message") or "the job failed")
            started = _report_time(report.get("start_time") or report.get("end_time"))
            moved = self._end(job_id, current, target, found, when, message, started)
            if not moved:
                self._drop_unserved(job_id)
        if moved:
            self._tell(job_id, target)
        return "applied" if moved else "ignored"

    def _tell(self, job_id: str, phase: Phase) -> None:
        """Notifications of the change (``on_phase``): their failure never fails the report."""
        if self.on_phase is None:
            return
        try:
            self.on_phase(job_id, phase)
        except Exception:
            log.exception("job %s: notifying the change to %s failed", job_id, phase.value)

    def _drop_unserved(self, job_id: str) -> None:
        """Remove the files in the job's result directory that are none of its recorded results:
        a final report that lost the race left them, and nothing would ever serve them."""
        job = self.store.get(job_id)
        if job is None or job.phase not in FINAL:
            return
        kept = {r.file_name for r in job.results}
        results = JobFiles.of(self.jobs_dir, job_id).results
        try:
            found = list(results.iterdir())
        except OSError:
            return
        for path in found:
            if path.name not in kept and (path.is_file() or path.is_symlink()):
                path.unlink(missing_ok=True)
                log.info("job %s: removed %s, a result of a report that came too late", job_id, path.name)

    def _end(self, job_id: str, current: Phase, target: Phase, found: list[Result], when: datetime,
             message: str, started: datetime) -> bool:
        self.manager.collect(job_id)  # results first: a job is never COMPLETED without them
        if current is Phase.QUEUED:  # the EXECUTING report was lost: record the start anyway
            self.store.set_phase(job_id, Phase.EXECUTING, [Phase.QUEUED], start_time=started)
        fields: dict[str, Any] = {"end_time": when}
        if target is not Phase.COMPLETED:
            fields["error"] = ErrorSummary(message[:4000], "fatal", True)
        job = self.store.get(job_id)
        # The server decides each result's type (its definition, else OPUS's extension table), never
        # the report: a job could otherwise declare text/html and attack whoever opens the result.
        found = [dataclasses.replace(r, content_type=result_type(self._jobdef(job), r.result_id, r.file_name))
                 for r in found]
        rows = self._entity_rows(job, found) if job is not None else None
        return self.store.complete(job_id, target, ENDABLE, found, entities=rows, **fields)

    def _jobdef(self, job: Job | None) -> JobDefinition | None:
        """The definition the job was made with; None when gone or broken (results are then typed by
        their extension)."""
        if job is None:
            return None
        try:
            return self.registry.get(job.jobname, job.jdl_version)
        except (NotFound, ConfigurationError):
            return None

    def _entity_rows(self, job: Job, found: list[Result]) -> EntityRows:
        """The provenance entities of the job's results and inputs, recorded with its end."""
        files = JobFiles.of(self.jobs_dir, job.job_id)
        uploaded = {p.name for p in job.parameters if p.by_reference and p.value == f"param:{p.name}"}
        inputs = {n: v for n, v in read_json(files.inputs_record, {}).items() if n in uploaded}
        return self.entities.plan_completion(job, found, inputs, read_json(files.fetched_record, []),
                                             read_json(files.linked_record, {}))


def _job_id(report: Report) -> str:
    job_id = str(report.get("job_id") or "")
    if job_id:
        set_job_id(job_id)  # on the log lines of this request
    return job_id


def _target(report: Report) -> Phase:
    try:
        target = Phase(str(report.get("phase", "")))
    except ValueError:
        raise BadRequest(f"phase {report.get('phase')!r} is not a UWS phase") from None
    if target not in REPORTABLE:
        raise BadRequest(f"a job report may say EXECUTING, COMPLETED, ERROR or ABORTED, not {target.value}")
    return target


def results_of(report: Report) -> list[Result]:
    """The results a report declares, each checked (names that stay in the result directory)."""
    raw = report.get("results") or []
    if not isinstance(raw, list):
        raise BadRequest("'results' must be a list")
    found = [_result(item) for item in raw]
    if len({r.result_id for r in found}) != len(found):
        raise BadRequest("result ids must be unique")
    return found


def _result(item: object) -> Result:
    if not isinstance(item, dict):
        raise BadRequest("each result must be an object")
    rid, fname = _plain_name(item, "result_id"), _plain_name(item, "file_name")
    size = item.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise BadRequest(f"result size {size!r} is not a byte count")
    ctype, digest = item.get("content_type"), item.get("sha256")
    if ctype is not None and (not isinstance(ctype, str) or len(ctype) > 255):
        raise BadRequest("result content_type must be a short string")
    if digest is not None and (not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise BadRequest("result sha256 must be 64 hex digits")
    return Result(rid, fname, ctype or "application/octet-stream", size, digest)


def _plain_name(item: dict[str, Any], what: str) -> str:
    value = item.get(what)
    if not isinstance(value, str) or not RESULT_NAME.match(value) or value in (".", ".."):
        raise BadRequest(f"result {what} {value!r} is not a plain file name")
    return value


def _report_time(value: object) -> datetime:
    if value:
        try:
            return parse_instant(str(value), "time")
        except BadRequest:
            pass
    return utcnow()
