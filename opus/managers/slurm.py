"""SlurmManager: runs jobs on a SLURM cluster with sbatch; learns their end without polling.

* ``PHASE=RUN`` only queues the job; the dispatcher (one per host) calls ``sbatch`` off the
  request path, retrying transient failures, and records the SLURM id.  A refused submission
  (bad partition, ...) puts the job in ERROR with sbatch's own words.
* The job wrapper (the same as the local manager's) reports EXECUTING/COMPLETED/ERROR/ABORTED.
* ``scripts/opus-slurm-epilog``, run by slurmctld as EpilogSlurmctld, reports the end of every
  job, which covers what the wrapper cannot say (cancelled before it started, node failure, out of
  memory, SIGKILL at the time limit).
* Reconciliation, at take-over and every SLURM_RECONCILE_MINUTES, asks ``squeue`` once for all
  jobs and reads the jobcomp log: never one query per job.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePath

from opus.jobdef import JobDefinition, JobDefinitionRegistry
from opus.jobdef.slurm_options import sbatch_flags
from opus.managers.cluster import ClusterAccess
from opus.managers.dispatch import WRAPPER, WRAPPER_SIBLINGS, DispatchingManager
from opus.observability import metrics
from opus.settings import Settings
from opus.storage.entitystore import EntityStore
from opus.storage.jobfiles import JobFiles
from opus.storage.jobstore import JobStore
from opus.uws import ENDED, FINAL, UNABORTED, Job, Phase

log = logging.getLogger(__name__)
SUBMITTING = "slurm:submitting"

#: SLURM job states -> UWS phases (one table; CHECKLIST §3).
SLURM_STATES: dict[str, Phase] = {
    "PENDING": Phase.QUEUED, "CONFIGURING": Phase.QUEUED, "REQUEUED": Phase.QUEUED,
    "REQUEUE_FED": Phase.QUEUED, "REQUEUE_HOLD": Phase.HELD, "RESV_DEL_HOLD": Phase.HELD,
    "RUNNING": Phase.EXECUTING, "COMPLETING": Phase.EXECUTING, "STAGE_OUT": Phase.EXECUTING,
    "RESIZING": Phase.EXECUTING, "SIGNALING": Phase.EXECUTING,
    "SUSPENDED": Phase.SUSPENDED, "STOPPED": Phase.SUSPENDED,
    "COMPLETED": Phase.COMPLETED,
    "FAILED": Phase.ERROR, "NODE_FAIL": Phase.ERROR, "OUT_OF_MEMORY": Phase.ERROR, "BOOT_FAIL": Phase.ERROR,
    "SPECIAL_EXIT": Phase.ERROR,
    "CANCELLED": Phase.ABORTED, "TIMEOUT": Phase.ABORTED, "DEADLINE": Phase.ABORTED, "PREEMPTED": Phase.ABORTED,
    "REVOKED": Phase.ABORTED,
}
#: Why a SLURM job ended, for the errorSummary when the wrapper could not say.
END_MESSAGES = {
    "CANCELLED": "the SLURM job was cancelled",
    "TIMEOUT": "the SLURM job reached its time limit and was killed",
    "DEADLINE": "the SLURM job reached its deadline",
    "PREEMPTED": "the SLURM job was preempted",
    "NODE_FAIL": "the node running the SLURM job failed",
    "OUT_OF_MEMORY": "the SLURM job ran out of memory",
    "BOOT_FAIL": "the node for the SLURM job failed to boot",
    "FAILED": "the SLURM job failed",
    "COMPLETED": "the SLURM job ended without the wrapper's report",
}
HELD_REASONS = {"JobHeldUser", "JobHeldAdmin"}
TRANSIENT = ("Unable to contact slurm controller", "Socket timed out", "Zero Bytes were transmitted",
             "Connection refused", "temporarily unavailable", "Slurm temporarily unable", "Communication")


_JOBCOMP_ID = re.compile(r"^JobId=(\d+)\s")
_JOBCOMP_STATE = re.compile(r"\sJobState=(\S+)")
_JOBCOMP_EXIT = re.compile(r"\sExitCode=(\S+)")


def slurm_id_of(manager_id: str | None) -> str | None:
    if manager_id and manager_id.startswith("slurm:") and manager_id[6:].isdigit():
        return manager_id[6:]
    return None


def phase_of(state: str, reason: str = "") -> Phase | None:
    """UWS phase of a SLURM state as squeue, sacct or jobcomp print it (e.g. "CANCELLED by 0")."""
    base = state.split()[0].rstrip("+") if state else ""
    phase = SLURM_STATES.get(base)
    if phase is Phase.QUEUED and reason in HELD_REASONS:
        return Phase.HELD
    return phase


class SlurmManager(DispatchingManager):
    name = "slurm"

    def __init__(self, settings: Settings, store: JobStore, registry: JobDefinitionRegistry,
                 entities: EntityStore | None = None):
        super().__init__(settings, store, registry, entities)
        self._next_reconcile = 0.0
        self.cluster = ClusterAccess(settings)
        self.user = settings.SLURM_SSH_USER if settings.SLURM_SSH_HOST and settings.SLURM_SSH_USER \
            else pwd.getpwuid(os.getuid()).pw_name

    # ---- commands -----------------------------------------------------------------------------
    def command(self, name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.cluster.run(name, *args, timeout=timeout)

    def is_alive(self) -> bool:
        try:
            return self.command("squeue", "-h", "-u", self.user, "-o", "%i", timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    # ---- the loop ------------------------------------------------------------------------------
    def tick(self) -> None:
        for job_id in self.store.claimable(200):
            if self._stopping:
                return
            if self.store.claim(job_id, SUBMITTING):
                self.submit(job_id)
        if time.monotonic() >= self._next_reconcile:
            self.reconcile()

    # ---- submission ------------------------------------------------------------------------------
    def sbatch_arguments(self, job: Job, jobdef: JobDefinition, root: PurePath) -> list[str]:
        """Every sbatch option of a job: fixed ones, then checked resources (never raw text)."""
        args = ["--parsable", f"--job-name=opus-{job.jobname}", f"--chdir={root}",
                f"--output={root}/slurm.log", f"--error={root}/slurm.log",
                f"--comment=opus:{job.job_id}", "--kill-on-invalid-dep=yes"]
        if job.execution_duration > 0:
            minutes = math.ceil((job.execution_duration + self.settings.SLURM_TIME_MARGIN) / 60)
            args.append(f"--time={minutes}")
        options = {"partition": self.settings.SLURM_PARTITION or "", "account": self.settings.SLURM_ACCOUNT or ""}
        options.update(jobdef.slurm)
        for p in job.parameters:
            if p.name.startswith("slurm_"):
                options[p.name[len("slurm_"):]] = p.value
        return args + sbatch_flags(options)

    def batch_script(self, root: PurePath) -> str:
        if self.cluster.copies_files:  # the wrapper travels with the job
            python, wrapper = self.settings.SLURM_PYTHON or "python3", f"{root}/wrapper.py"
        else:
            python, wrapper = self.settings.SLURM_PYTHON or sys.executable, str(WRAPPER)
        return ("#!/bin/bash\n# OPUS job wrapper: parameters travel in job.json, never through this script.\n"
                f"exec {shlex.quote(python)} -I -S {shlex.quote(wrapper)} {shlex.quote(f'{root}/job.json')}\n")

    def submit(self, job_id: str) -> None:
        local_root = JobFiles.of(self.settings.jobs_dir, job_id).root
        root = self.cluster.job_root(local_root)
        try:
            prepared = self.prepare(job_id, root if self.cluster.copies_files else None)
            if prepared is None:
                return
            job, jobdef, files = prepared
            (files.root / "callback_url").write_text(self._callback_url())  # for the epilog: no secret
            (files.root / "batch.sh").write_text(self.batch_script(root))
            if self.cluster.copies_files:
                shutil.copyfile(WRAPPER, files.root / "wrapper.py")
                for sibling in WRAPPER_SIBLINGS:
                    shutil.copyfile(WRAPPER.with_name(sibling), files.root / sibling)
                self.cluster.push(files.root)
        except Exception as exc:
            log.exception("job %s: cannot prepare", job_id)
            self._report(job_id, {"phase": "ERROR", "message": f"the job could not be prepared: {exc}"})
            return
        args = [*self.sbatch_arguments(job, jobdef, root), f"{root}/batch.sh"]
        error = ""
        for attempt in range(self.settings.SLURM_SUBMIT_RETRIES + 1):
            try:
                done = self.command("sbatch", *args)
            except subprocess.TimeoutExpired:
                error, transient = "sbatch did not answer within 60 s", True
            except OSError as exc:
                error, transient = f"sbatch could not be run: {exc}", False
            else:
                if done.returncode == 0 and done.stdout.strip():
                    slurm_id = done.stdout.strip().split(";")[0]
                    self._submitted(job_id, slurm_id)
                    return
                error = (done.stderr or done.stdout).strip() or f"sbatch exited with status {done.returncode}"
                transient = any(t.lower() in error.lower() for t in TRANSIENT)
            if not transient or attempt == self.settings.SLURM_SUBMIT_RETRIES or self._stopping:
                break
            log.warning("job %s: sbatch failed (%s); retry %d", job_id, error, attempt + 1)
            time.sleep(min(2 ** attempt, 30))
        log.warning("job %s: sbatch refused it: %s", job_id, error)
        metrics.count(self.settings, "opus_manager_errors_total", manager="slurm")
        self._report(job_id, {"phase": "ERROR", "message": f"SLURM refused the job: {error}"})

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

    # ---- the end of a job, from the epilog -----------------------------------------------------------------
    def end_hint(self, job_id: str, slurm_id: str, exit_code: str) -> str:
        """The epilog says SLURM job ``slurm_id`` (of ``job_id``) ended; verify, then settle the job."""
        if self.store.get_manager_id(job_id) != f"slurm:{slurm_id}":
            return "ignored"
        phase = self.store.get_phase(job_id)
        if phase is None or phase in FINAL:
            return "already"
        files = JobFiles.of(self.settings.jobs_dir, job_id)
        if self.cluster.copies_files:
            self.collect(job_id)
        if files.report.is_file():
            self.job_ended(job_id, slurm_id, "")
            return "applied"
        # No report: the wrapper could not speak.  The jobcomp log says how the job ended (slurmctld
        # writes it before running the epilog); without one, squeue says whether it really did.
        state, code = self.read_jobcomp().get(slurm_id, ("", ""))
        if not state:
            try:
                done = self.command("squeue", "-h", "-j", slurm_id, "-o", "%T", timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                return "ignored"
            seen = done.stdout.strip()
            # While the epilog runs, squeue says COMPLETING: the job has ended.
            if done.returncode == 0 and seen and seen != "COMPLETING" and \
                    phase_of(seen) not in ENDED:
                return "ignored"
            state = seen if seen and seen != "COMPLETING" else "FAILED"
        self.job_ended(job_id, slurm_id, state, code or exit_code)
        return "applied"

    def job_ended(self, job_id: str, slurm_id: str, state: str, exit_code: str = "") -> None:
        """EpilogSlurmctld (or reconciliation) says SLURM job ``slurm_id`` ended in ``state``."""
        phase = self.store.get_phase(job_id)
        if phase is None or phase in FINAL:
            return
        files = JobFiles.of(self.settings.jobs_dir, job_id)
        try:
            self.collect(job_id)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("job %s: cannot copy its files back: %s", job_id, exc)
        try:
            report = json.loads(files.report.read_text())
        except (OSError, ValueError):
            report = None
        if report is not None:  # the wrapper finished: its report is the truth
            self._report(job_id, report)
            return
        base = state.split()[0].rstrip("+") if state else ""
        target = phase_of(state) or Phase.ERROR
        if target not in ENDED:
            return  # not ended after all
        if target is Phase.COMPLETED:
            target = Phase.ERROR  # ended "successfully" but the wrapper never reported
        message = END_MESSAGES.get(base, f"the SLURM job ended in state {state or 'unknown'}")
        if exit_code and exit_code not in ("0:0", "0"):
            message += f" (exit code {exit_code})"
        self._report(job_id, {"phase": target.value, "message": f"{message} (SLURM job {slurm_id})"})

    # ---- reconciliation -------------------------------------------------------------------------------------
    def reconcile(self) -> None:
        """One squeue for all our jobs; jobs SLURM no longer knows are settled from reports/jobcomp."""
        self._next_reconcile = time.monotonic() + self.settings.SLURM_RECONCILE_MINUTES * 60
        active = [(j, m, p) for j, m, p in self.store.running() if m.startswith("slurm:")]
        if not active:
            return
        try:
            done = self.command("squeue", "-h", "-u", self.user, "-o", "%i|%T|%r|%k", timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("reconciliation: squeue failed: %s", exc)
            return
        if done.returncode != 0:
            log.warning("reconciliation: squeue failed: %s", done.stderr.strip())
            return
        queue: dict[str, tuple[str, str]] = {}
        by_comment: dict[str, str] = {}
        for line in done.stdout.splitlines():
            parts = line.strip().split("|", 3)
            if len(parts) == 4:
                queue[parts[0]] = (parts[1], parts[2])
                if parts[3].startswith("opus:"):
                    by_comment[parts[3][5:]] = parts[0]
        completions = None
        for job_id, manager_id, phase in active:
            slurm_id = slurm_id_of(manager_id)
            if manager_id == SUBMITTING:
                if job_id in by_comment:  # sbatch succeeded before the last dispatcher died
                    self._submitted(job_id, by_comment[job_id])
                else:
                    self.store.update_job(job_id, [Phase.QUEUED], manager_id=None)
                continue
            if slurm_id is None:
                continue
            if slurm_id in queue:
                state, reason = queue[slurm_id]
                target = phase_of(state, reason)
                if target in ENDED:
                    self.job_ended(job_id, slurm_id, state)
                elif target is not None and target is not phase:
                    # squeue is the truth for a job SLURM holds: any ACTIVE -> ACTIVE move is in the
                    # table (opus.uws.NAMED_MOVES checks it), compare-and-set from what we last saw.
                    self.store.set_phase(job_id, target, [phase])
                continue
            if completions is None:
                completions = self.read_jobcomp()
            state, exit_code = completions.get(slurm_id, ("", ""))
            self.job_ended(job_id, slurm_id, state or "FAILED", exit_code)

    def read_jobcomp(self) -> dict[str, tuple[str, str]]:
        """SLURM id -> (JobState, ExitCode) from the jobcomp/filetxt log, if configured."""
        path = self.settings.SLURM_JOBCOMP_LOG
        out: dict[str, tuple[str, str]] = {}
        if not path:
            return out
        try:
            text = Path(path).read_text(errors="replace")
        except OSError as exc:
            log.warning("reconciliation: cannot read %s: %s", path, exc)
            return out
        for line in text.splitlines():
            # Name= and WorkDir= may hold spaces: pick the fields by pattern, not by splitting.
            job = _JOBCOMP_ID.match(line)
            if job:
                state = _JOBCOMP_STATE.search(line)
                code = _JOBCOMP_EXIT.search(line)
                out[job.group(1)] = (state.group(1) if state else "", code.group(1) if code else "")
        return out
