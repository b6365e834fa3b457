"""executionDuration enforced from the server's side, for the local manager.

The wrapper stops a job that runs out of time itself; this is the backstop for a wrapper that
cannot (stopped with SIGSTOP, hung, starved).  Each dispatcher turn, for each job the dispatcher
runs or adopted: once its script has run longer than executionDuration + KILL_GRACE + ``MARGIN``
(counted from ``script.pgid``, which the wrapper writes as it starts the script) and the launch
record does not say that the script ended, the job is marked ABORTED with an errorSummary saying
why, then its wrapper's and its script's process groups are killed (SIGKILL: a stopped process
dies too; the sandbox's PID namespace takes every process of the job with it).
"""

from __future__ import annotations

import logging
import os
import signal
import time

from opus.errors import OpusError
from opus.managers import jobrecord
from opus.managers.base import ReportSink
from opus.settings import Settings
from opus.storage.jobfiles import JobFiles, read_json

log = logging.getLogger(__name__)
#: Seconds given to the wrapper beyond the limit and its grace before the server steps in.
MARGIN = 2.0


class Overtime:
    """Finds the jobs past their executionDuration whose wrapper did not stop them, and stops them."""

    def __init__(self, settings: Settings, report: ReportSink) -> None:
        self.settings = settings
        self.report = report
        self._limits: dict[str, float] = {}
        self._stopped: set[str] = set()

    def check(self, running: dict[str, int]) -> None:
        """``running``: job id -> wrapper pid (its process group) of each job this dispatcher runs."""
        for job_id in set(self._limits) - set(running):
            del self._limits[job_id]
            self._stopped.discard(job_id)
        now = time.time()
        for job_id, pid in running.items():
            files = JobFiles.of(self.settings.jobs_dir, job_id)
            limit = self._limit(job_id, files)
            if not limit or job_id in self._stopped:
                continue
            try:
                started = files.script_pgid.stat().st_mtime
            except OSError:
                continue  # the script has not started
            if now < started + limit + self.settings.KILL_GRACE + MARGIN:
                continue
            if any("ended" in item for item in jobrecord.lines(files.root)):
                continue  # the script ended in time; the wrapper is collecting or reporting
            self._stopped.add(job_id)
            self.stop(job_id, pid, files, limit)

    def _limit(self, job_id: str, files: JobFiles) -> float:
        if job_id not in self._limits:
            self._limits[job_id] = float(read_json(files.spec, {}).get("execution_duration") or 0)
        return self._limits[job_id]

    def stop(self, job_id: str, pid: int, files: JobFiles, limit: float) -> None:
        log.warning("job %s: past its executionDuration of %g s and its wrapper did not stop it: "
                    "stopping it", job_id, limit)
        try:
            self.report(job_id, {"phase": "ABORTED", "message": (
                f"executionDuration of {limit:g} s exceeded: the job was stopped by the server "
                "(its wrapper did not stop it)")})
        except OpusError:
            pass  # deleted meanwhile: its processes go all the same
        groups = [pid]
        try:
            groups.append(int(files.script_pgid.read_text()))
        except (OSError, ValueError):
            pass
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
