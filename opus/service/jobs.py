"""JobService: the UWS operations on jobs, applying the rules of ``opus.uws``.

Routes call one method each; this module holds no HTTP and no SQL.  It persists through a
JobStore, runs jobs through a Manager and blocks WAIT requests on the Notifier.  Parsing what a
request submits (parameters, uploads, control values) is ``opus.service.submission``; applying
what a job reports is ``opus.service.completion``; the destruction sweep is
``opus.service.maintenance``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from opus.auth.identity import Identity, can_access
from opus.errors import BadRequest, Conflict, Forbidden, IllegalTransition, NotFound
from opus.events.notify import Notifier, Wake, Waiter
from opus.jobdef import JobDefinition, JobDefinitionRegistry
from opus.managers.base import Manager
from opus.observability import metrics
from opus.service.idempotency import HEADER, KeyReused, creation_key
from opus.service.inputs import InputResolver
from opus.service.jobids import new_job_id
from opus.service.submission import (Submission, SubmissionRules, Upload, parse_submission, save_links,
                                     save_uploads)
from opus.service.waitslots import WaitSlots
from opus.settings import Settings
from opus.storage import JobStore
from opus.storage.jobfiles import JobFiles
from opus.storage.jobstore import CreationKey, CreationKeyTaken, DuplicateJobId
from opus.storage.outage import is_outage
from opus.timeutil import parse_instant, parse_int, utcnow
from opus.uws import ABORTABLE, EDITABLE, FINAL, RUNNABLE, RUNNING, Job, JobRef, Parameter, Phase

log = logging.getLogger(__name__)
#: Seconds between re-reads of a waited-on job while the database does not answer.
OUTAGE_RECHECK = 1.0
#: Seconds between two warnings of WAITs answered at once (MAX_HELD_WAITS reached).
AT_ONCE_LOG_INTERVAL = 60.0
#: Counts the unfinished jobs of an owner key (for the quota).
ActiveJobs = Callable[[str | None], int]


class JobService:
    """The jobs of every job definition, as UWS sees them.

    It takes the whole Settings: it reads many of them (default and maximum durations, the
    destruction interval, MAX_WAIT, the jobs directory, and the ``SubmissionRules``).
    """

    def __init__(self, settings: Settings, store: JobStore, registry: JobDefinitionRegistry, manager: Manager,
                 notifier: Notifier, inputs: InputResolver, active_jobs: ActiveJobs | None = None) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.manager = manager
        self.notifier = notifier
        self.inputs = inputs
        #: Counts a caller's unfinished jobs (for the quota); None: no quotas.
        self.active_jobs = active_jobs
        self.rules = SubmissionRules.of(settings)
        #: The WAITs this process may hold (MAX_HELD_WAITS, opus.service.waitslots).
        self.wait_slots = WaitSlots.of(settings.MAX_HELD_WAITS)
        self._at_once_logged = -AT_ONCE_LOG_INTERVAL
        # A change that wakes WAITs on a job: the delivering thread reads the job once for all of
        # them, before they wake (wait_shared takes it from the Wake).
        notifier.prepare_wakes(self._read_for_wake)

    def _read_for_wake(self, job_id: str, wake: Wake) -> None:
        self._woken_job(job_id, wake)

    def _woken_job(self, job_id: str, wake: Wake) -> Job | None:
        """The job as read once after the change ``wake`` stands for (by the delivering thread, or
        by the first waiter when that read failed)."""
        return wake.once("job", lambda: self.store.get(job_id))

    def _parse(self, jobdef: JobDefinition, form: Sequence[tuple[str, str]], uploads: Sequence[Upload],
               identity: Identity, base: str | None, allow_phase: bool = False) -> Submission:
        return parse_submission(jobdef, form, uploads, rules=self.rules, inputs=self.inputs,
                                allow_phase=allow_phase, identity=identity, base=base)

    def _files(self, job_id: str) -> JobFiles:
        return JobFiles.of(self.settings.jobs_dir, job_id)

    # ---- creation and reading ----------------------------------------------------------------------
    def create(self, jobname: str, identity: Identity, form: Sequence[tuple[str, str]],
               uploads: Sequence[Upload] = (), base: str | None = None,
               idempotency_key: str | None = None) -> Job:
        """Create a job: PENDING, or QUEUED when PHASE=RUN was sent, in one INSERT either way.

        Everything is checked before anything is stored: a creation that fails stores no job and
        leaves no file.  With ``idempotency_key`` (``opus.service.idempotency``), a request this
        caller already made with that key returns the job it created instead of a new one."""
        jobdef = self.registry.get(jobname)
        if not identity.may_use(jobname):
            raise Forbidden(f"you may not use the job definition {jobname!r}")
        key = None
        if idempotency_key is not None:
            key = creation_key(identity.owner_key, idempotency_key, jobname, form, uploads)
            earlier = self._created_with(key)
            if earlier is not None:
                return earlier
        self._check_quota(identity)
        job, sub = self._new_job(jobname, jobdef, identity, form, uploads, base)
        try:
            self._insert(job, sub, key)
        except CreationKeyTaken:
            # A concurrent request with the same key won the INSERT: its job is the answer.
            assert key is not None  # only a keyed insert can find its key taken
            earlier = self._created_with(key)
            if earlier is None:
                raise Conflict(f"{HEADER}: the job created with this key was just deleted; "
                               "send the request again") from None
            return earlier
        return job

    def _new_job(self, jobname: str, jobdef: JobDefinition, identity: Identity,
                 form: Sequence[tuple[str, str]], uploads: Sequence[Upload],
                 base: str | None) -> tuple[Job, Submission]:
        """The job a creation request describes, checked (a PHASE=RUN job must be runnable)."""
        sub = self._parse(jobdef, form, uploads, identity, base, allow_phase=True)
        given = {p.name for p in sub.parameters}
        # Defaults filled in: the job's parameter list shows every value the script will receive.
        sub.parameters += [Parameter(n, d.default) for n, d in jobdef.parameters.items()
                           if d.default is not None and n not in given]
        phase = sub.phase or Phase.PENDING
        if phase is Phase.QUEUED:
            _check_runnable(jobdef, sub.parameters, creating=True)
        now = utcnow()
        duration = sub.execution_duration
        if duration is None:
            default = jobdef.execution_duration
            duration = self.rules.cap_duration(self.settings.DEFAULT_EXECUTION_DURATION if default is None
                                               else default)
        destruction = now + timedelta(seconds=self.settings.DESTRUCTION_INTERVAL)
        if sub.destruction is not None:
            destruction = self.rules.cap_destruction(now, sub.destruction)
        job = Job(job_id="", jobname=jobname, phase=phase, creation_time=now,
                  execution_duration=duration, destruction_time=destruction, run_id=sub.run_id,
                  owner_id=identity.name, owner_key=identity.owner_key, quote=_quote(jobdef, now),
                  parameters=sub.parameters, jdl_version=jobdef.version)
        return job, sub

    def _created_with(self, key: CreationKey) -> Job | None:
        """The job created with ``key``, if it still exists; KeyReused (422) if by another request."""
        found = self.store.find_by_key(key.key)
        if found is None:
            return None
        job_id, digest = found
        if digest != key.digest:
            raise KeyReused(f"{HEADER}: this key already created job {job_id} with a different request; "
                            "use a new key for a new request")
        return self.store.get(job_id)

    def _check_quota(self, identity: Identity) -> None:
        if identity.max_active_jobs and self.active_jobs is not None and \
                self.active_jobs(identity.owner_key) >= identity.max_active_jobs:
            raise Forbidden(f"you already have {identity.max_active_jobs} unfinished job(s), your limit: "
                            "wait for some to finish or delete some")

    def _insert(self, job: Job, sub: Submission, key: CreationKey | None) -> None:
        """Draw the job's id, save its files and store it; no file stays when the store refuses."""
        has_files = bool(sub.uploads or sub.links)
        for _attempt in range(5):
            job.job_id = new_job_id()
            files = self._files(job.job_id) if has_files else None  # no path work for a job without files
            try:
                if files is not None:
                    save_uploads(files, sub.uploads, self.rules.max_upload_size)
                    save_links(files, sub.links)
                self.store.create(job, key)
                return
            except DuplicateJobId:
                if files is not None:
                    files.remove()
            except BaseException:
                if files is not None:
                    files.remove()
                raise
        raise RuntimeError("could not draw a unique job id")  # pragma: no cover - 5 collisions of 64 bits

    def get(self, jobname: str, job_id: str, identity: Identity) -> Job:
        """The job, or NotFound (404) / Forbidden (403)."""
        return self._checked(self.store.get(job_id), jobname, job_id, identity)

    @staticmethod
    def _checked(job: Job | None, jobname: str, job_id: str, identity: Identity) -> Job:
        if job is None or job.jobname != jobname:
            raise NotFound(f"no job {job_id!r} in {jobname!r}")
        if not can_access(identity, job.owner_key):
            raise Forbidden(f"job {job_id!r} belongs to someone else")
        return job

    def list(self, jobname: str | None, identity: Identity, phases: Iterable[Phase] = (),
             after: datetime | None = None, last: int | None = None,
             stream: bool = False, before: datetime | None = None, run_id: str | None = None) -> Iterable[JobRef]:
        """The caller's jobs (an admin's: everyone's), newest first; with ``stream``, an iterator
        reading the database in batches (for long lists).  ``before`` and ``run_id``: OPUS's own
        filters (``opus.storage.rows.ListFilter``)."""
        if jobname is not None and not self.registry.known(jobname):
            raise self.registry.unknown(jobname)
        read = self.store.iter_list if stream else self.store.list
        if identity.is_admin:
            return read(jobname, phases, after, last, before=before, run_id=run_id)
        return read(jobname, phases, after, last, owner_key=identity.owner_key, filter_owner=True,
                    before=before, run_id=run_id)

    def wait(self, jobname: str, job_id: str, identity: Identity, seconds: int, phase: Phase | None) -> Job:
        """GET with WAIT: block until the phase changes, at most ``seconds`` (-1: the server maximum).

        A database outage during the wait does not end it: the phase is re-read every
        ``OUTAGE_RECHECK`` seconds until the database answers, the phase changes or time is up."""
        return self.wait_shared(jobname, job_id, identity, seconds, phase)[0]

    def wait_shared(self, jobname: str, job_id: str, identity: Identity, seconds: int,
                    phase: Phase | None) -> tuple[Job, Wake | None]:
        """``wait``, and the change that ended it when one did: every waiter that change woke gets
        the same Job, read once after the change (``Wake.once``), and may share its rendering."""
        if seconds < -1:
            raise BadRequest(f"WAIT: must be an integer >= -1 (-1: the server's maximum), got {seconds}")
        limit = self.settings.MAX_WAIT if seconds < 0 else min(seconds, self.settings.MAX_WAIT)
        if limit <= 0:
            return self.get(jobname, job_id, identity), None
        deadline = time.monotonic() + limit
        with self.notifier.watch(job_id) as waiter:
            job = self.get(jobname, job_id, identity)  # read after registering: no change is missed
            if not job.is_waitable or (phase is not None and job.phase != phase) or self.notifier.stopping:
                return job, None
            if not self.wait_slots.take():  # this process holds its most WAITs: the job as it is
                self._answered_at_once()
                return job, None
            try:
                wake = self._block(waiter, job_id, job.phase, deadline)
            finally:
                self.wait_slots.give()
        if wake is None:
            return self.get(jobname, job_id, identity), None  # a database still away: 503 (opus.server.errors)
        return self._checked(self._woken_job(job_id, wake), jobname, job_id, identity), wake

    def _block(self, waiter: Waiter, job_id: str, start_phase: Phase, deadline: float) -> Wake | None:
        """Wait until the job leaves ``start_phase`` or ``deadline``; the change that ended it, if one did."""
        unsure = False  # the last re-read failed: the database is away
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            woken = waiter.wait(min(remaining, OUTAGE_RECHECK) if unsure else remaining)
            if self.notifier.stopping:
                return None  # the process is stopping: the job as it is now (Notifier.end_waits)
            if woken:
                waiter.event.clear()
                if waiter.phase is not None:
                    if waiter.phase == "DELETED" or waiter.phase != start_phase.value:
                        return waiter.wake
                    continue
            elif not unsure:
                return None  # time is up
            # Woken to re-check (a notification channel came back), or re-checking in an outage.
            try:
                unsure = False
                if self.store.get_phase(job_id) is not start_phase:
                    return None
            except Exception as exc:
                if not is_outage(exc):
                    raise
                unsure = True

    def _answered_at_once(self) -> None:
        """A WAIT beyond MAX_HELD_WAITS: counted, and said in the log at most once a minute."""
        metrics.count(self.settings, "opus_waits_answered_at_once_total")
        now = time.monotonic()
        if now - self._at_once_logged >= AT_ONCE_LOG_INTERVAL:
            self._at_once_logged = now
            log.warning("a WAIT was answered at once: this process already holds %d, its most (%s); give the "
                        "server more threads (gunicorn --threads, mod_wsgi threads=) or processes, or set "
                        "MAX_HELD_WAITS (metric opus_waits_answered_at_once_total)",
                        self.wait_slots.held, self.wait_slots.describe())

    # ---- control -------------------------------------------------------------------------------------
    def run(self, jobname: str, job_id: str, identity: Identity) -> None:
        job = self.get(jobname, job_id, identity)
        if not identity.may_use(jobname):
            raise Forbidden(f"you may not use the job definition {jobname!r}")
        if job.phase in RUNNING:
            return  # RUN is idempotent (CHECKLIST §6.2)
        if job.phase not in RUNNABLE:
            raise IllegalTransition(f"job {job_id} is {job.phase.value}: it cannot be run again")
        self._queue(job, self.registry.get(jobname, job.jdl_version))

    def _queue(self, job: Job, jobdef: JobDefinition) -> None:
        # No callback URL is kept per job: the wrapper reports where the settings say (opus.listen),
        # never to an address taken from the request that queued the job.
        _check_runnable(jobdef, job.parameters)
        if not self.store.set_phase(job.job_id, Phase.QUEUED, RUNNABLE, quote=_quote(jobdef, utcnow())):
            current = self.store.get_phase(job.job_id)
            if current not in RUNNING:
                raise IllegalTransition(f"job {job.job_id} is {current}: it cannot be run")

    def abort(self, jobname: str, job_id: str, identity: Identity) -> None:
        job = self.get(jobname, job_id, identity)
        if job.phase not in ABORTABLE:
            raise IllegalTransition(f"job {job_id} is {job.phase.value}: there is nothing to abort")
        if not self.abort_now(job_id, utcnow()):
            current = self.store.get_phase(job_id)
            raise IllegalTransition(f"job {job_id} is {current}: there is nothing to abort")

    def abort_now(self, job_id: str, when: datetime) -> bool:
        """Move the job to ABORTED and stop its processes; False if it was not abortable."""
        if not self.store.set_phase(job_id, Phase.ABORTED, ABORTABLE, end_time=when):
            return False
        self.manager.abort(job_id, self.store.get_manager_id(job_id))
        return True

    def delete(self, jobname: str, job_id: str, identity: Identity) -> None:
        self.destroy(self.get(jobname, job_id, identity))

    def destroy(self, job: Job) -> None:
        """Forget the job, then stop its processes and remove its files.

        Deleting first means waiters are woken once, by the deletion (404), never by an
        intermediate ABORTED; a dispatcher launching the job meanwhile sees it gone and kills it.
        """
        files = self._files(job.job_id)
        manager_id = self.store.get_manager_id(job.job_id)
        self.store.delete(job.job_id)
        files.remove()
        self.manager.discard(job.job_id)
        if manager_id is not None and job.phase not in FINAL:
            # Files the dying processes write meanwhile are removed once they are gone.
            self.manager.abort(job.job_id, manager_id, then=files.remove)

    # ---- update ----------------------------------------------------------------------------------------
    def set_execution_duration(self, jobname: str, job_id: str, identity: Identity, value: str) -> None:
        seconds = self.rules.cap_duration(parse_int(value, "EXECUTIONDURATION", 0))
        job = self.get(jobname, job_id, identity)
        if not self.store.update_job(job.job_id, EDITABLE, execution_duration=seconds):
            raise IllegalTransition(f"job {job_id} is {self.store.get_phase(job_id)}: "
                                    "executionDuration can only change before the job runs")

    def set_destruction(self, jobname: str, job_id: str, identity: Identity, value: str) -> None:
        wanted = parse_instant(value, "DESTRUCTION")
        job = self.get(jobname, job_id, identity)
        # In any phase: even a finished job's destruction time may move (within the server's limit).
        if not self.store.update_job(job.job_id, None,
                                     destruction_time=self.rules.cap_destruction(job.creation_time, wanted)):
            raise NotFound(f"no job {job_id!r}")

    def set_parameters(self, jobname: str, job_id: str, identity: Identity, form: Sequence[tuple[str, str]],
                       uploads: Sequence[Upload] = (), base: str | None = None) -> None:
        """Add or change parameters (and RUNID/EXECUTIONDURATION/DESTRUCTION) while PENDING."""
        job = self.get(jobname, job_id, identity)
        sub = self._parse(self.registry.get(jobname, job.jdl_version), form, uploads, identity, base)
        if job.phase is not Phase.PENDING:
            raise IllegalTransition(f"job {job_id} is {job.phase.value}: "
                                    "parameters can only change while PENDING")
        if sub.is_empty:
            raise BadRequest("no parameter given")
        save_uploads(self._files(job_id), sub.uploads, self.rules.max_upload_size)
        save_links(self._files(job_id), sub.links)
        fields: dict[str, Any] = {}
        if sub.run_id is not None:
            fields["run_id"] = sub.run_id
        if sub.execution_duration is not None:
            fields["execution_duration"] = sub.execution_duration
        if sub.destruction is not None:
            fields["destruction_time"] = self.rules.cap_destruction(job.creation_time, sub.destruction)
        ok = True
        if sub.parameters:
            ok = self.store.set_parameters(job_id, sub.parameters, [Phase.PENDING])
        if ok and fields:
            ok = self.store.update_job(job_id, [Phase.PENDING], **fields)
        if not ok:
            raise IllegalTransition(f"job {job_id} is no longer PENDING: "
                                    "parameters can only change while PENDING")


def _check_runnable(jobdef: JobDefinition, params: Sequence[Parameter], creating: bool = False) -> None:
    """400 when a required parameter or input has no value, saying which, what an input wants, and,
    for a creation with PHASE=RUN, that no job was made (a newcomer could not tell)."""
    missing = jobdef.missing_required({p.name for p in params})
    if missing:
        named = [f"{n} (an input: upload a file, or give its URL or /store link)" if n in jobdef.used else n
                 for n in missing]
        after = "; no job was created" if creating else ""
        raise BadRequest("cannot run: required parameter(s) missing: " + ", ".join(named) + after)


def _quote(jobdef: JobDefinition, start: datetime) -> datetime | None:
    return start + timedelta(seconds=jobdef.quote) if jobdef.quote is not None else None
