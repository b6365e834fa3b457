"""JobList: the UWS operations on jobs, applying the rules of ``opus.uws``.

Routes call one method each; this module holds no HTTP and no SQL.  It persists through a
JobStore, runs jobs through a Manager and blocks WAIT requests on the Notifier.  Parsing what a
request submits (parameters, uploads, control values) is in ``opus.service.submission``, mixed in.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from opus.jobdef.content_types import result_type
from opus.errors import BadRequest, ConfigurationError, Forbidden, IllegalTransition, NotFound
from opus.service.inputs import InputResolver
from opus.jobdef import JobDefinition
from opus.storage.jobfiles import JobFiles, read_json
from opus.auth.identity import Identity, can_access
from opus.storage.entitystore import EntityStore
from opus.storage.jobstore import DuplicateJobId
from opus.service.submission import PARAM_NAME, Submission, SubmissionParsing, Upload  # noqa: F401 - re-exported
from opus.timeutil import parse_instant, parse_int, utcnow
from opus.uws import FINAL, ErrorSummary, Job, Parameter, Phase, Result
log = logging.getLogger(__name__)
ABORTABLE = frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING, Phase.HELD, Phase.SUSPENDED, Phase.UNKNOWN})


class JobList(SubmissionParsing):
    """The jobs of every job definition, as UWS sees them."""

    def __init__(self, settings, store, registry, manager, notifier, active_jobs=None):
        #: Counts a caller's unfinished jobs (for the quota); None: no quotas.
        self.active_jobs = active_jobs
        self.settings = settings
        self.store = store
        self.registry = registry
        self.manager = manager
        self.notifier = notifier
        self.entities = EntityStore(store)
        self.inputs = InputResolver(settings, self.entities)

    # ---- creation and reading ----------------------------------------------------------------------
    def create(self, jobname: str, identity: Identity, form: Sequence[tuple[str, str]],
               uploads: Sequence[Upload] = (), base: str | None = None) -> Job:
        """Create a job (PENDING, or QUEUED when PHASE=RUN was sent)."""
        jobdef = self.registry.get(jobname)
        if not identity.may_use(jobname):
            raise Forbidden(f"you may not use the job definition {jobname!r}")
        if identity.max_active_jobs and self.active_jobs is not None and \
                self.active_jobs(identity.owner_key) >= identity.max_active_jobs:
            raise Forbidden(f"you already have {identity.max_active_jobs} unfinished job(s), your limit: "
                            "wait for some to finish or delete some")
        sub = self.parse(jobdef, form, uploads, allow_phase=True, identity=identity, base=base)
        uploads = sub.uploads
        given = {p.name for p in sub.parameters}
        # Defaults filled in: the job's parameter list shows every value the script will receive.
        sub.parameters += [Parameter(n, d.default) for n, d in jobdef.parameters.items()
                           if d.default is not None and n not in given]
        now = utcnow()
        duration = sub.execution_duration
        if duration is None:
            default = jobdef.execution_duration
            duration = self.cap_duration(self.settings.DEFAULT_EXECUTION_DURATION if default is None else default)
        destruction = now + timedelta(seconds=self.settings.DESTRUCTION_INTERVAL)
        if sub.destruction is not None:
            destruction = self.cap_destruction(now, sub.destruction)
        job = Job(job_id="", jobname=jobname, phase=Phase.PENDING, creation_time=now,
                  execution_duration=duration, destruction_time=destruction, run_id=sub.run_id,
                  owner_id=identity.name, owner_key=identity.owner_key, quote=self._quote(jobdef, now),
                  parameters=sub.parameters,
                  jdl_version=jobdef.version)
        for _attempt in range(5):
            job.job_id = secrets.token_hex(8)
            files = JobFiles.of(self.settings.jobs_dir, job.job_id)
            if uploads or sub.links:
                try:
                    self._save_uploads(files, uploads)
                    self._save_links(files, sub.links)
                except BaseException:
                    files.remove()
                    raise
            try:
                self.store.create(job)
                break
            except DuplicateJobId:
                if uploads or sub.links:
                    files.remove()
        else:  # pragma: no cover - 5 collisions of 64 random bits
            raise RuntimeError("could not draw a unique job id")
        if sub.phase is Phase.QUEUED:
            self._queue(job, jobdef)
        return job

    @staticmethod
    def _quote(jobdef: JobDefinition, start: datetime) -> datetime | None:
        return start + timedelta(seconds=jobdef.quote) if jobdef.quote is not None else None

    def get(self, jobname: str, job_id: str, identity: Identity) -> Job:
        """The job, or NotFound (404) / Forbidden (403)."""
        job = self.store.get(job_id)
        if job is None or job.jobname != jobname:
            raise NotFound(f"no job {job_id!r} in {jobname!r}")
        if not can_access(identity, job.owner_key):
            raise Forbidden(f"job {job_id!r} belongs to someone else")
        return job

    def list(self, jobname: str | None, identity: Identity, phases: Iterable[Phase] = (),
             after: datetime | None = None, last: int | None = None, stream: bool = False):
        """The caller's jobs (an admin's: everyone's), newest first; with ``stream``, an iterator
        reading the database in batches (for long lists)."""
        if jobname is not None and not self.registry.known(jobname):
            raise NotFound(f"no job definition named {jobname[:64]!r}")
        read = self.store.iter_list if stream else self.store.list
        if identity.is_admin:
            return read(jobname, phases, after, last)
        return read(jobname, phases, after, last, owner_key=identity.owner_key, filter_owner=True)

    def wait(self, jobname: str, job_id: str, identity: Identity, seconds: int, phase: Phase | None) -> Job:
        """GET with WAIT: block until the phase changes, at most ``seconds`` (-1: the server maximum)."""
        limit = self.settings.MAX_WAIT if seconds < 0 else min(seconds, self.settings.MAX_WAIT)
        if limit <= 0:
            return self.get(jobname, job_id, identity)
        deadline = time.monotonic() + limit
        with self.notifier.watch(job_id) as waiter:
            job = self.get(jobname, job_id, identity)  # read after registering: no change is missed
            if not job.is_waitable or (phase is not None and job.phase != phase):
                return job
            start_phase = job.phase
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not waiter.wait(remaining):
                    break
                waiter.event.clear()
                if waiter.phase is None:  # woken to re-check (a notification channel came back)
                    if self.store.get_phase(job_id) is start_phase:
                        continue
                    break
                if waiter.phase == "DELETED" or waiter.phase != start_phase.value:
                    break
        return self.get(jobname, job_id, identity)

    # ---- control -------------------------------------------------------------------------------------
    def run(self, jobname: str, job_id: str, identity: Identity) -> None:
        job = self.get(jobname, job_id, identity)
        if not identity.may_use(jobname):
            raise Forbidden(f"you may not use the job definition {jobname!r}")
        if job.phase in (Phase.QUEUED, Phase.EXECUTING):
            return  # RUN is idempotent (CHECKLIST §6.2)
        if job.phase not in (Phase.PENDING, Phase.HELD):
            raise IllegalTransition(f"job {job_id} is {job.phase.value}: it cannot be run again")
        self._queue(job, self.registry.get(jobname, job.jdl_version))

    def _queue(self, job: Job, jobdef: JobDefinition) -> None:
        # No callback URL is kept per job: the wrapper reports where the settings say (opus.listen),
        # never to an address taken from the request that queued the job.
        present = {p.name for p in job.parameters}
        missing = jobdef.missing_required(present)
        if missing:
            raise BadRequest("cannot run: required parameter(s) missing: " + ", ".join(missing))
        if not self.store.set_phase(job.job_id, Phase.QUEUED, [Phase.PENDING, Phase.HELD],
                                    quote=self._quote(jobdef, utcnow())):
            current = self.store.get_phase(job.job_id)
            if current not in (Phase.QUEUED, Phase.EXECUTING):
                raise IllegalTransition(f"job {job.job_id} is {current}: it cannot be run")

    def abort(self, jobname: str, job_id: str, identity: Identity) -> None:
        job = self.get(jobname, job_id, identity)
        if job.phase not in ABORTABLE:
            raise IllegalTransition(f"job {job_id} is {job.phase.value}: there is nothing to abort")
        if not self.store.set_phase(job_id, Phase.ABORTED, ABORTABLE, end_time=utcnow()):
            current = self.store.get_phase(job_id)
            raise IllegalTransition(f"job {job_id} is {current}: there is nothing to abort")
        self.manager.abort(job_id, self.store.get(job_id).manager_id)

    def delete(self, jobname: str, job_id: str, identity: Identity) -> None:
        job = self.get(jobname, job_id, identity)
        self._destroy(job)

    def _destroy(self, job: Job) -> None:
        """Forget the job, then stop its processes and remove its files.

        Deleting first means waiters are woken once, by the deletion (404), never by an
        intermediate ABORTED; a dispatcher launching the job meanwhile sees it gone and kills it.
        """
        files = JobFiles.of(self.settings.jobs_dir, job.job_id)
        manager_id = self.store.get_manager_id(job.job_id)
        self.store.delete(job.job_id)
        files.remove()
        self.manager.discard(job.job_id)
        if manager_id is not None and job.phase not in FINAL:
            # Files the dying processes write meanwhile are removed once they are gone.
            self.manager.abort(job.job_id, manager_id, then=files.remove)

    def set_execution_duration(self, jobname: str, job_id: str, identity: Identity, value: str) -> None:
        seconds = self.cap_duration(parse_int(value, "EXECUTIONDURATION", 0))
        job = self.get(jobname, job_id, identity)
        if not self.store.update_job(job.job_id, [Phase.PENDING, Phase.HELD], execution_duration=seconds):
            raise IllegalTransition(f"job {job_id} is {self.store.get_phase(job_id)}: "
                                    "executionDuration can only change before the job runs")

    def set_destruction(self, jobname: str, job_id: str, identity: Identity, value: str) -> None:
        wanted = parse_instant(value, "DESTRUCTION")
        job = self.get(jobname, job_id, identity)
        if not self.store.update_job(job.job_id, list(Phase), destruction_time=self.cap_destruction(
                job.creation_time, wanted)):
            raise NotFound(f"no job {job_id!r}")

    def set_parameters(self, jobname: str, job_id: str, identity: Identity, form: Sequence[tuple[str, str]],
                       uploads: Sequence[Upload] = (), base: str | None = None) -> None:
        """Add or change parameters (and RUNID/EXECUTIONDURATION/DESTRUCTION) while PENDING."""
        job = self.get(jobname, job_id, identity)
        jobdef = self.registry.get(jobname, job.jdl_version)
        sub = self.parse(jobdef, form, uploads, identity=identity, base=base)
        if job.phase is not Phase.PENDING:
            raise IllegalTransition(f"job {job_id} is {job.phase.value}: parameters can only change while PENDING")
        if not sub.parameters and sub.run_id is None and sub.execution_duration is None and sub.destruction is None:
            raise BadRequest("no parameter given")
        self._save_uploads(JobFiles.of(self.settings.jobs_dir, job_id), sub.uploads)
        self._save_links(JobFiles.of(self.settings.jobs_dir, job_id), sub.links)
        fields = {}
        if sub.run_id is not None:
            fields["run_id"] = sub.run_id
        if sub.execution_duration is not None:
            fields["execution_duration"] = sub.execution_duration
        if sub.destruction is not None:
            fields["destruction_time"] = self.cap_destruction(job.creation_time, sub.destruction)
        ok = True
        if sub.parameters:
            ok = self.store.set_parameters(job_id, sub.parameters, [Phase.PENDING])
        if ok and fields:
            ok = self.store.update_job(job_id, [Phase.PENDING], **fields)
        if not ok:
            raise IllegalTransition(f"job {job_id} is no longer PENDING: parameters can only change while PENDING")

    # ---- reports from the job wrapper (callbacks, replays) ---------------------------------------------------
    def apply_report(self, job_id: str, report: dict) -> str:
        """Apply a wrapper report; returns "applied", "already" or "ignored" (idempotent).

        A wrapper reports only EXECUTING, COMPLETED, ERROR or ABORTED; the report is checked in
        full before anything moves.
        """
        try:
            target = Phase(str(report.get("phase", "")))
        except ValueError:
            raise BadRequest(f"phase {report.get('phase')!r} is not a UWS phase") from None
        if target not in REPORTABLE:
            raise BadRequest(f"a job report may say EXECUTING, COMPLETED, ERROR or ABORTED, not {target.value}")
        found = _results_of(report) if target is not Phase.EXECUTING else []
        current = self.store.get_phase(job_id)
        if current is None:
            raise NotFound(f"no job {job_id!r}")
        if current is target:
            return "already"
        if current in FINAL:
            return "ignored"
        when = _report_time(report.get("start_time" if target is Phase.EXECUTING else "end_time"))
        if target is Phase.EXECUTING:
            moved = self.store.set_phase(job_id, Phase.EXECUTING, [Phase.QUEUED, Phase.HELD, Phase.SUSPENDED,
                                                                    Phase.UNKNOWN], start_time=when)
            return "applied" if moved else "ignored"
        self.manager.collect(job_id)  # results first: a job is never COMPLETED without them
        if current is Phase.QUEUED:  # the EXECUTING report was lost: record the start anyway
            self.store.set_phase(job_id, Phase.EXECUTING, [Phase.QUEUED], start_time=when)
        fields: dict = {"end_time": when}
        if target is not Phase.COMPLETED:
            fields["error"] = ErrorSummary(str(report.get("message") or "the job failed")[:4000], "fatal", True)
        also = None
        job = self.store.get(job_id)
        # The server decides each result's type (its definition, else OPUS's extension table), never
        # the report: a job could otherwise declare text/html and attack whoever opens the result.
        found = self._typed_results(job, found)
        if job is not None:
            files = JobFiles.of(self.settings.jobs_dir, job_id)
            uploaded = {p.name for p in job.parameters if p.by_reference and p.value == f"param:{p.name}"}
            rows, uses = self.entities.plan_completion(
                job, found, {n: v for n, v in read_json(files.inputs_record, {}).items() if n in uploaded},
                read_json(files.fetched_record, []), read_json(files.linked_record, {}))
            also = lambda conn: self.entities.record(conn, rows, uses)  # noqa: E731
        moved = self.store.complete(job_id, target, [Phase.EXECUTING, Phase.SUSPENDED, Phase.HELD, Phase.UNKNOWN],
                                    found, also=also, **fields)
        return "applied" if moved else "ignored"

    def _typed_results(self, job: Job | None, found: list[Result]) -> list[Result]:
        """``found`` with the content types of ``opus.jobdef.content_types.result_type``."""
        jobdef = None
        if job is not None:
            try:
                jobdef = self.registry.get(job.jobname, job.jdl_version)
            except (NotFound, ConfigurationError):
                jobdef = None  # gone or broken: every result is typed by its extension
        return [dataclasses.replace(r, content_type=result_type(jobdef, r.result_id, r.file_name)) for r in found]

    # ---- maintenance -------------------------------------------------------------------------------------
    def destroy_expired(self, now: datetime | None = None, batch: int = 500) -> int:
        """Destroy (or archive, per DESTRUCTION_POLICY) every job past its destruction time."""
        now = now or utcnow()
        archive = self.settings.DESTRUCTION_POLICY == "archive"
        done = 0
        seen: set[str] = set()
        while True:
            ids = [i for i in self.store.expired(now, batch, skip_archived=archive) if i not in seen]
            if not ids:
                return done
            seen.update(ids)
            if not archive:
                # Finished jobs go in one transaction per batch; only unfinished ones need the
                # one-by-one path that stops their processes first.
                # Transactions of 100 jobs hold the (SQLite) write lock a few milliseconds each.
                gone: set[str] = set()
                for start in range(0, len(ids), 100):
                    for job_id in self.store.delete_finished(ids[start:start + 100]):
                        JobFiles.of(self.settings.jobs_dir, job_id).remove()
                        self.manager.discard(job_id)
                        gone.add(job_id)
                done += len(gone)
                ids = [i for i in ids if i not in gone]
            for job_id in ids:
                job = self.store.get(job_id)
                if job is None:
                    continue
                try:
                    if archive:
                        if job.phase not in FINAL:
                            if self.store.set_phase(job_id, Phase.ABORTED, ABORTABLE, end_time=now):
                                self.manager.abort(job_id, self.store.get(job_id).manager_id)
                        self.store.archive(job_id)
                        files = JobFiles.of(self.settings.jobs_dir, job_id)
                        files.remove_results()
                        self.manager.discard(job_id)
                    else:
                        self._destroy(job)
                    done += 1
                except Exception:
                    log.exception("job %s: destruction failed", job_id)


REPORTABLE = frozenset({Phase.EXECUTING, Phase.COMPLETED, Phase.ERROR, Phase.ABORTED})
RESULT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}\Z")


def _results_of(report: dict) -> list[Result]:
    """The results a report declares, each checked (names that stay in the result directory)."""
    raw = report.get("results") or []
    if not isinstance(raw, list):
        raise BadRequest("'results' must be a list")
    found = []
    for item in raw:
        if not isinstance(item, dict):
            raise BadRequest("each result must be an object")
        rid, fname = item.get("result_id"), item.get("file_name")
        for what, value in (("result_id", rid), ("file_name", fname)):
            if not isinstance(value, str) or not RESULT_NAME.match(value) or value in (".", ".."):
                raise BadRequest(f"result {what} {value!r} is not a plain file name")
        size = item.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise BadRequest(f"result size {size!r} is not a byte count")
        ctype, digest = item.get("content_type"), item.get("sha256")
        if ctype is not None and (not isinstance(ctype, str) or len(ctype) > 255):
            raise BadRequest("result content_type must be a short string")
        if digest is not None and (not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise BadRequest("result sha256 must be 64 hex digits")
        found.append(Result(rid, fname, ctype or "application/octet-stream", size, digest))
    if len({r.result_id for r in found}) != len(found):
        raise BadRequest("result ids must be unique")
    return found


def _report_time(value) -> datetime:
    if value:
        try:
            return parse_instant(str(value), "time")
        except BadRequest:
            pass
    return utcnow()
