"""SlurmManager: runs jobs on a SLURM cluster with sbatch; learns their end without polling.

* ``PHASE=RUN`` only queues the job; the dispatcher (one per host) calls ``sbatch`` off the request
  path.  A refused job (bad partition, ...) ends in ERROR with sbatch's words; a scheduler out of
  reach is an outage, not a job error: jobs stay QUEUED and one clock retries for all, without cap.
* Exactly once: sbatch runs under a lock in the job's directory that it inherits, with
  ``--comment=opus:<job id>``.  A job left ``slurm:submitting`` is looked up by its OPUS id
  (``squeue -t all``, the jobcomp log's WorkDir) and its report.json before any new sbatch.
* The wrapper reports the job's phases; ``scripts/opus-slurm-epilog`` (EpilogSlurmctld) reports
  every end, spooling to ``DATA_DIR/slurm-spool`` what it cannot POST; the jobcomp log is followed
  as it grows.  Reconciliation (at take-over, after MinJobAge, every SLURM_RECONCILE_MINUTES)
  applies saved reports and asks ``squeue`` once for all jobs: never one query per job.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opus.jobdef import JobDefinitionRegistry
from opus.managers import jobrecord
from opus.managers.base import CachedCheck, ReportSink
from opus.managers.cluster import ClusterAccess, Unreachable
from opus.managers.dispatch import WRAPPER, WRAPPER_SIBLINGS, DispatchingManager
from opus.managers.slurm_records import (Backoff, EpilogSpool, JobcompFollower, Queue, SubmitLock, is_transient,
                                         parse_queue)
from opus.managers.slurm_states import (COMPLETING, END_MESSAGES, batch_script, has_ended, min_job_age, phase_of,
                                        sbatch_arguments, slurm_id_of)
from opus.observability import metrics
from opus.settings import Settings
from opus.storage.entitystore import EntityStore
from opus.storage.jobfiles import JobFiles
from opus.storage.jobstore import JobStore
from opus.uws import ENDED, FINAL, UNABORTED, Phase

log = logging.getLogger(__name__)
SUBMITTING = "slurm:submitting"

class SlurmManager(DispatchingManager):
    name = "slurm"

    def __init__(self, settings: Settings, store: JobStore, registry: JobDefinitionRegistry,
                 entities: EntityStore | None = None):
        super().__init__(settings, store, registry, entities)
        self._next_reconcile = 0.0
        self.cluster = ClusterAccess(settings)
        self.user = settings.SLURM_SSH_USER if settings.SLURM_SSH_HOST and settings.SLURM_SSH_USER \
            else pwd.getpwuid(os.getuid()).pw_name
        self.outage = Backoff()  # the one clock of a scheduler outage
        jobs_root = self.cluster.job_root(settings.jobs_dir.absolute() / "x").parent
        self.jobcomp = JobcompFollower(settings.SLURM_JOBCOMP_LOG, str(jobs_root))
        self.spool = EpilogSpool(Path(settings.DATA_DIR) / "slurm-spool")
        self.availability = CachedCheck(self._probe)
        self._took_over = False
        self._uncertain: set[str] = set()  # sbatch timed out: may have worked; checked when SLURM answers
        self._completing: dict[str, float] = {}  # SLURM id -> when reconciliation first saw it COMPLETING

    # ---- commands -----------------------------------------------------------------------------
    def command(self, name: str, *args: str, timeout: float = 60,
                pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
        return self.cluster.run(name, *args, timeout=timeout, pass_fds=pass_fds)

    def _probe(self) -> str | None:
        if self.outage.active:
            return f"the SLURM controller does not answer: {self.outage.reason}"
        try:
            done = self.command("squeue", "-h", "-u", self.user, "-o", "%i", timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"squeue failed: {exc}"
        return None if done.returncode == 0 else f"squeue failed: {(done.stderr or done.stdout).strip()[:300]}"

    def is_alive(self) -> bool:
        """Cached (a few seconds; the dispatcher's own commands refresh it): never a command per request."""
        return self.availability.problem() is None

    def problem(self) -> str | None:
        return self.availability.problem()

    # ---- the loop ------------------------------------------------------------------------------
    def start(self, report: ReportSink) -> None:
        self.spool.create()
        super().start(report)

    def tick(self) -> None:
        self.follow_records()
        if self.outage.active and (not self.outage.due() or not self._reconcile()):
            return  # one check for the outage, whatever the number of jobs waiting
        for job_id in self.store.claimable(200):
            if self._stopping:
                return
            if self.store.claim(job_id, SUBMITTING) and not self.submit(job_id):
                return  # the scheduler is out of reach: the others wait for the same outage to end
        if time.monotonic() >= self._next_reconcile:
            self._reconcile()

    def _reconcile_soon(self, seconds: float = 2.0) -> None:
        self._next_reconcile = min(self._next_reconcile, time.monotonic() + seconds)

    # ---- submission ------------------------------------------------------------------------------
    def _prepare_files(self, job_id: str) -> list[str] | None:
        """Write what the job needs (and copy it to the cluster): sbatch's arguments, or None if gone."""
        local_root = JobFiles.of(self.settings.jobs_dir, job_id).root
        root = self.cluster.job_root(local_root)
        try:
            prepared = self.prepare(job_id, root if self.cluster.copies_files else None)
            if prepared is None:
                return None
            job, jobdef, files = prepared
            (files.root / "callback_url").write_text(self._callback_url())  # for the epilog: no secret
            (files.root / "batch.sh").write_text(batch_script(self.settings, self.cluster.copies_files, root))
            if self.cluster.copies_files:
                shutil.copyfile(WRAPPER, files.root / "wrapper.py")
                for sibling in WRAPPER_SIBLINGS:
                    shutil.copyfile(WRAPPER.with_name(sibling), files.root / sibling)
                self.cluster.push(files.root)
        except Unreachable:
            raise
        except Exception as exc:
            log.exception("job %s: cannot prepare", job_id)
            self._report(job_id, {"phase": "ERROR", "message": f"the job could not be prepared: {exc}"})
            return None
        return [*sbatch_arguments(self.settings, job, jobdef, root), f"{root}/batch.sh"]

    def submit(self, job_id: str) -> bool:
        """sbatch one claimed job.  False when the scheduler is out of reach: the job stays claimed
        (QUEUED, ``slurm:submitting``) and is looked up by its OPUS id before any new sbatch."""
        try:
            args = self._prepare_files(job_id)
        except Unreachable as exc:
            return self._out_of_reach(str(exc))
        if args is None:
            return True
        with SubmitLock(JobFiles.of(self.settings.jobs_dir, job_id).root) as lock:
            if lock.fd is None:  # an sbatch of a dead dispatcher still runs for it: reconciliation decides
                self._reconcile_soon()
                return True
            try:  # sbatch inherits the lock: it stays held as long as sbatch runs, even if we die
                done = self.command("sbatch", *args, pass_fds=(lock.fd,))
            except subprocess.TimeoutExpired:
                error, transient = "sbatch did not answer within 60 s", True
                self._uncertain.add(job_id)
            except OSError as exc:
                error, transient = f"sbatch could not be run: {exc}", False
            else:
                if done.returncode == 0 and done.stdout.strip():
                    self.outage.reset()
                    self.availability.note(None)
                    self._submitted(job_id, done.stdout.strip().split(";")[0])
                    return True
                error = (done.stderr or done.stdout).strip() or f"sbatch exited with status {done.returncode}"
                transient = is_transient(error, done.returncode)
        if transient:
            return self._out_of_reach(error)
        log.warning("job %s: sbatch refused it: %s", job_id, error)
        metrics.count(self.settings, "opus_manager_errors_total", manager="slurm")
        self._report(job_id, {"phase": "ERROR", "message": f"SLURM refused the job: {error}"})
        return True

    def _out_of_reach(self, error: str) -> bool:
        """A transient failure: one outage for every job (False, for ``submit``)."""
        if not self.outage.active:
            log.warning("SLURM is out of reach (%s): jobs stay QUEUED until it answers again", error)
        self.outage.failed(error)
        self.availability.note(f"the SLURM controller does not answer: {error}")
        metrics.count(self.settings, "opus_manager_errors_total", manager="slurm")
        return False

    def _submitted(self, job_id: str, slurm_id: str) -> None:
        # Recorded unless the job was aborted meanwhile (compare-and-set): an ABORT that lands later
        # reads this id and cancels the SLURM job itself, so every SLURM job is cancelled exactly once.
        recorded = self.store.update_job(job_id, UNABORTED, manager_id=f"slurm:{slurm_id}")
        log.info("job %s: submitted as SLURM job %s", job_id, slurm_id)
        phase = self.store.get_phase(job_id)
        if phase is None:
            # Deleted while sbatch ran (or just after): cancel, then remove what the job wrote.
            self.abort(job_id, f"slurm:{slurm_id}", then=JobFiles.of(self.settings.jobs_dir, job_id).remove)
        elif not recorded:
            # Aborted while sbatch ran: nobody else knows this SLURM id.
            self.abort(job_id, f"slurm:{slurm_id}")

    # ---- files on the cluster -------------------------------------------------------------------------
    def collect(self, job_id: str) -> None:
        self.cluster.pull(JobFiles.of(self.settings.jobs_dir, job_id).root)

    def discard(self, job_id: str) -> None:
        if self.cluster.copies_files:
            try:
                self.cluster.remove(JobFiles.of(self.settings.jobs_dir, job_id).root)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.warning("job %s: cannot remove its directory on the cluster: %s", job_id, exc)

    # ---- abort --------------------------------------------------------------------------------------
    def abort(self, job_id: str, manager_id: str | None, then: Callable[[], None] | None = None) -> None:
        slurm_id = slurm_id_of(manager_id)
        if slurm_id is not None:
            try:
                done = self.command("scancel", slurm_id, timeout=30)
                if done.returncode != 0:
                    log.warning("job %s: scancel %s: %s", job_id, slurm_id, done.stderr.strip())
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.warning("job %s: scancel %s failed: %s", job_id, slurm_id, exc)
        if then is not None:
            # Files written by the dying job meanwhile are removed after SLURM's kill sequence.
            timer = threading.Timer(self.settings.KILL_GRACE + 2.0 if slurm_id else 0.0, then)
            timer.daemon = True
            timer.start()

    # ---- the end of a job: the epilog, its spool, the jobcomp log ------------------------------------------
    def end_hint(self, job_id: str, slurm_id: str, exit_code: str, may_query: bool = True) -> str:
        """The epilog says SLURM job ``slurm_id`` (of ``job_id``) ended; verify, then settle the job."""
        if self.store.get_manager_id(job_id) != f"slurm:{slurm_id}":
            return "ignored"
        phase = self.store.get_phase(job_id)
        if phase is None or phase in FINAL:
            return "already"
        if self.cluster.copies_files:
            self.collect(job_id)
        if self._saved_report(job_id) is not None:
            self.job_ended(job_id, slurm_id, "")
            return "applied"
        # No report: the wrapper could not speak.  The jobcomp log says how the job ended (slurmctld
        # writes it before running the epilog); without one, squeue says whether it really did.
        state, code = self.jobcomp.state_of(slurm_id)
        if not state:
            if not may_query:
                self._reconcile_soon()
                return "ignored"
            try:
                done = self.command("squeue", "-h", "-j", slurm_id, "-o", "%T", timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                return "ignored"
            seen = done.stdout.strip()
            # While the epilog runs, squeue says COMPLETING: the job has ended.
            if done.returncode == 0 and seen and not has_ended(seen):
                return "ignored"
            state = seen if seen and seen != COMPLETING else "FAILED"
        self.job_ended(job_id, slurm_id, state, code or exit_code)
        return "applied"

    def follow_records(self) -> None:
        """Hints the epilog spooled, and jobcomp lines added since the last turn (no scheduler command)."""
        for hint in self.spool.drain():
            try:
                self.end_hint(hint.job_id, hint.slurm_id, hint.exit_code, may_query=False)
            except Exception:
                log.exception("job %s: cannot apply a spooled epilog hint", hint.job_id)
        for ended in self.jobcomp.new():
            manager_id = self.store.get_manager_id(ended.job_id)
            if manager_id == f"slurm:{ended.slurm_id}":
                self.job_ended(ended.job_id, ended.slurm_id, ended.state, ended.exit_code)
            elif manager_id == SUBMITTING:
                self._reconcile_soon(0)

    def job_ended(self, job_id: str, slurm_id: str, state: str, exit_code: str = "") -> None:
        """EpilogSlurmctld (or reconciliation) says SLURM job ``slurm_id`` ended in ``state``."""
        phase = self.store.get_phase(job_id)
        if phase is None or phase in FINAL:
            return
        try:
            self.collect(job_id)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("job %s: cannot copy its files back: %s", job_id, exc)
        report = self._saved_report(job_id)
        if report is not None:  # the wrapper finished: its report is the truth
            self._report(job_id, report)
            return
        if state.split()[:1] == [COMPLETING]:  # over, but squeue cannot say how; the jobcomp log can
            known, code = self.jobcomp.state_of(slurm_id)
            if known:
                state, exit_code = known, code or exit_code
            elif time.monotonic() - self._completing.setdefault(slurm_id, time.monotonic()) < 60:
                self._reconcile_soon(5)  # its report, jobcomp line or final state comes within seconds
                return
        self._completing.pop(slurm_id, None)
        base = state.split()[0].rstrip("+") if state else ""
        target = Phase.ERROR if base == COMPLETING else phase_of(state) or Phase.ERROR
        if target not in ENDED:
            return  # not ended after all
        if target is Phase.COMPLETED:
            target = Phase.ERROR  # ended "successfully" but the wrapper never reported
        message = END_MESSAGES.get(base, f"the SLURM job ended in state {state or 'unknown'}")
        if exit_code and exit_code not in ("0:0", "0"):
            message += f" (exit code {exit_code})"
        self._report(job_id, {"phase": target.value, "message": f"{message} (SLURM job {slurm_id})"})

    def _saved_report(self, job_id: str) -> dict[str, Any] | None:
        """The wrapper's final report (report.json, or its slot on a full disk), if it left one."""
        return jobrecord.saved_report(JobFiles.of(self.settings.jobs_dir, job_id).root)

    # ---- reconciliation -------------------------------------------------------------------------------------
    def reconcile(self) -> None:
        """At take-over: spooled hints and the jobcomp log first, then every active job at once, and
        once more after MinJobAge (jobs that SLURM was still finishing)."""
        first = not self._took_over
        self._took_over = True
        if first:
            self.jobcomp.poll()
            self.follow_records()
        if self._reconcile() and first:  # scontrol only when SLURM answers: never a wait at start
            self._reconcile_soon(min_job_age(self.command) + 30)

    def _reconcile(self) -> bool:
        """Saved reports, then one ``squeue -t all`` for every job; False if SLURM did not answer."""
        self._next_reconcile = time.monotonic() + self.settings.SLURM_RECONCILE_MINUTES * 60
        active = [(j, m, p) for j, m, p in self.store.running()
                  if m.startswith("slurm:") and not self._settled_by_report(j)]
        if not active and not self.outage.active:
            return True
        # Whose sbatch may still be running is decided before squeue: one that ends later is seen next time.
        free = {j for j, m, _ in active if m == SUBMITTING and not SubmitLock.held(self.settings.jobs_dir / j)}
        try:
            done = self.command("squeue", "-h", "-u", self.user, "-t", "all", "-o", "%i|%T|%r|%k", timeout=60)
            error = "" if done.returncode == 0 else (done.stderr or done.stdout).strip() or "squeue failed"
        except (OSError, subprocess.TimeoutExpired) as exc:
            done, error = None, f"squeue failed: {exc}"
        if done is None or done.returncode != 0:
            log.warning("reconciliation: %s", error)
            if self.outage.active or done is None or is_transient(error, done.returncode):
                self.outage.failed(error)
                self.availability.note(f"the SLURM controller does not answer: {error}")
            return False
        if self.outage.active:
            log.warning("SLURM answers again after an outage of %.0f s", self.outage.ended())
        self.availability.note(None)
        queue = parse_queue(done.stdout)
        self._cancel_strays(queue, {j for j, _, _ in active})
        for job_id, manager_id, phase in active:
            if manager_id == SUBMITTING:
                self._settle_submitting(job_id, phase, queue, job_id in free)
            else:
                self._settle(job_id, manager_id, phase, queue)
        return True

    def _cancel_strays(self, queue: Queue, active: set[str]) -> None:
        """An sbatch that timed out may have worked: if its job was aborted or deleted since, cancel."""
        for job_id in self._uncertain - active:
            for slurm_id in queue.by_opus_id.get(job_id, []):
                if not has_ended(queue.jobs[slurm_id][0]):
                    log.warning("job %s: cancelling SLURM job %s, submitted by an sbatch that timed out",
                                job_id, slurm_id)
                    self.abort(job_id, f"slurm:{slurm_id}")
        self._uncertain.clear()

    def _settled_by_report(self, job_id: str) -> bool:
        """An active job whose wrapper left its final report (on a shared filesystem): apply it."""
        if self.cluster.copies_files:
            return False
        report = self._saved_report(job_id)
        if report is None:
            return False
        self._report(job_id, report)
        return True

    def _settle_submitting(self, job_id: str, phase: Phase, queue: Queue, free: bool) -> None:
        """A job claimed for sbatch by a dispatcher that died or lost the scheduler: adopt its SLURM
        job if there is one, or queue it for submission again; never two SLURM jobs for one."""
        found = queue.by_opus_id.get(job_id) or self.jobcomp.of_job(job_id)
        if found:
            if len(found) > 1:
                log.error("job %s: several SLURM jobs carry its id: %s", job_id, ", ".join(found))
            self._submitted(job_id, found[0])
            self._settle(job_id, f"slurm:{found[0]}", phase, queue)
        elif not free:
            self._reconcile_soon()
        else:  # never reached SLURM: submit it again
            self.store.update_job(job_id, [Phase.QUEUED], manager_id=None)
            self.wake()

    def _settle(self, job_id: str, manager_id: str, phase: Phase, queue: Queue) -> None:
        slurm_id = slurm_id_of(manager_id)
        if slurm_id is None:
            return
        if slurm_id in queue.jobs:
            state, reason = queue.jobs[slurm_id]
            target = phase_of(state, reason)
            if has_ended(state):
                self.job_ended(job_id, slurm_id, state)
            elif target is not None and target is not phase:
                # squeue is the truth for a job SLURM holds: any ACTIVE -> ACTIVE move is in the
                # table (opus.uws.NAMED_MOVES checks it), compare-and-set from what we last saw.
                self.store.set_phase(job_id, target, [phase])
            return
        state, exit_code = self.jobcomp.state_of(slurm_id)
        self.job_ended(job_id, slurm_id, state or "FAILED", exit_code)
