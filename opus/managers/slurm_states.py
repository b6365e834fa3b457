"""What OPUS says to SLURM (sbatch's arguments, the batch script) and how it reads SLURM's answers (job
states as UWS phases, why a job ended when its wrapper could not say, MinJobAge)."""

from __future__ import annotations

import math
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import PurePath

from opus.jobdef import JobDefinition
from opus.jobdef.slurm_options import sbatch_flags
from opus.managers.dispatch import WRAPPER
from opus.settings import Settings
from opus.uws import ENDED, Job, Phase

#: The job has ended; slurmctld is running the epilog or cleaning up (no final state in squeue).
COMPLETING = "COMPLETING"

#: SLURM job states -> UWS phases (one table; CHECKLIST §3).  COMPLETING is an end (see job_ended).
SLURM_STATES: dict[str, Phase] = {
    "PENDING": Phase.QUEUED, "CONFIGURING": Phase.QUEUED, "REQUEUED": Phase.QUEUED,
    "REQUEUE_FED": Phase.QUEUED, "REQUEUE_HOLD": Phase.HELD, "RESV_DEL_HOLD": Phase.HELD,
    "RUNNING": Phase.EXECUTING, "STAGE_OUT": Phase.EXECUTING,
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
    COMPLETING: "the SLURM job ended without the wrapper's report",
}
#: MinJobAge when scontrol cannot say (SLURM's default).
DEFAULT_MIN_JOB_AGE = 300.0
HELD_REASONS = {"JobHeldUser", "JobHeldAdmin"}


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


def has_ended(state: str) -> bool:
    """Whether squeue's state says the SLURM job is over (COMPLETING included)."""
    base = state.split()[0].rstrip("+") if state.split() else ""
    return base == COMPLETING or phase_of(state) in ENDED


def sbatch_arguments(settings: Settings, job: Job, jobdef: JobDefinition, root: PurePath) -> list[str]:
    """Every sbatch option of a job: fixed ones, then checked resources (never raw text)."""
    args = ["--parsable", f"--job-name=opus-{job.jobname}", f"--chdir={root}",
            f"--output={root}/slurm.log", f"--error={root}/slurm.log",
            f"--comment=opus:{job.job_id}", "--kill-on-invalid-dep=yes"]
    if job.execution_duration > 0:
        minutes = math.ceil((job.execution_duration + settings.SLURM_TIME_MARGIN) / 60)
        args.append(f"--time={max(minutes, 1)}")
    options = {"partition": settings.SLURM_PARTITION or "", "account": settings.SLURM_ACCOUNT or ""}
    options.update(jobdef.slurm)
    for p in job.parameters:
        if p.name.startswith("slurm_"):
            options[p.name[len("slurm_"):]] = p.value
    return args + sbatch_flags(options)


def batch_script(settings: Settings, copies_files: bool, root: PurePath) -> str:
    """The batch script: exec the wrapper (shipped with the job when the cluster shares no files)."""
    if copies_files:  # the wrapper travels with the job
        python, wrapper = settings.SLURM_PYTHON or "python3", f"{root}/wrapper.py"
    else:
        python, wrapper = settings.SLURM_PYTHON or sys.executable, str(WRAPPER)
    return ("#!/bin/bash\n# OPUS job wrapper: parameters travel in job.json, never through this script.\n"
            f"exec {shlex.quote(python)} -I -S {shlex.quote(wrapper)} {shlex.quote(f'{root}/job.json')}\n")


def min_job_age(command: Callable[..., subprocess.CompletedProcess[str]]) -> float:
    """SLURM's MinJobAge (s): how long squeue still shows an ended job (``scontrol show config``)."""
    try:
        done = command("scontrol", "show", "config", timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_MIN_JOB_AGE
    for line in done.stdout.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "MinJobAge" and value.split() and value.split()[0].isdigit():
            return float(value.split()[0])
    return DEFAULT_MIN_JOB_AGE
