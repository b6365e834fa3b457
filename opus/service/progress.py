"""Where an active job stands beyond its phase, for the web client's job page: its place in the
queue of jobs waiting for the local manager, or the SLURM job it was handed to.

Read from the database only: no process is signalled and no SLURM command is run for a page view.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opus.storage.jobfiles import JobFiles
from opus.storage.jobstore import JobStore
from opus.uws import Job, Phase

#: How far down the queue a position is counted; a job further back is "more than" this.
QUEUE_SCAN = 10_000


def progress_of(store: JobStore, manager: str, job: Job, jobs_dir: Path) -> dict[str, Any]:
    """``{"phase", "manager", "queuePosition", "queueScanned", "handedTo", "slurmJobId", "stdoutSize",
    "stderrSize"}``.

    ``queuePosition``: 1 for the next job to start, among the QUEUED jobs no manager has taken yet
    (oldest first, every definition and owner, since they share the slots); None when the job is
    not waiting there, or is further back than ``queueScanned`` jobs.  ``handedTo`` says what took
    it: "starting" (the local manager is starting it), "local" (running), "submitting" (to SLURM) or
    "slurm" with ``slurmJobId``.  The sizes (bytes) of what the job printed so far, where this host
    sees them (None otherwise), tell a client when to fetch a tail of ``…/stdout`` with a Range."""
    answer: dict[str, Any] = {"phase": job.phase.value, "manager": manager, "queuePosition": None,
                              "queueScanned": QUEUE_SCAN, "handedTo": None, "slurmJobId": None,
                              **_sizes(JobFiles.of(jobs_dir, job.job_id).root)}
    if job.phase is not Phase.QUEUED and job.phase is not Phase.EXECUTING:
        return answer
    manager_id = job.manager_id or ""
    if not manager_id:
        if job.phase is Phase.QUEUED:
            waiting = store.claimable(QUEUE_SCAN)
            if job.job_id in waiting:
                answer["queuePosition"] = waiting.index(job.job_id) + 1
        return answer
    kind, _, rest = manager_id.partition(":")
    if kind == "slurm":
        if rest.isdigit():
            answer["handedTo"], answer["slurmJobId"] = "slurm", rest
        else:
            answer["handedTo"] = "submitting"
    elif kind == "local":
        answer["handedTo"] = "local" if rest.isdigit() else "starting"
    return answer


def _sizes(root: Path) -> dict[str, int | None]:
    sizes: dict[str, int | None] = {}
    for which in ("stdout", "stderr"):
        try:
            sizes[f"{which}Size"] = (root / f"{which}.log").stat().st_size
        except OSError:
            sizes[f"{which}Size"] = None
    return sizes
