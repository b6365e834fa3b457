"""MaintenanceService: the destruction sweep, and the loop that runs it in one process per host.

Jobs past their destruction time are destroyed, or archived when DESTRUCTION_POLICY is "archive"
(the record stays, its results go).  Every serving process starts the loop; a file lock lets one
of them sweep at a time, the others wait to take over.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from datetime import datetime
from pathlib import Path

from opus.managers.base import Manager
from opus.service.jobs import JobService
from opus.storage import JobStore
from opus.storage.jobfiles import JobFiles
from opus.timeutil import utcnow
from opus.uws import FINAL

log = logging.getLogger(__name__)


class MaintenanceService:
    """Destroys or archives expired jobs, on request (``destroy_expired``) or every ``interval`` s."""

    def __init__(self, store: JobStore, manager: Manager, jobs: JobService, jobs_dir: Path, run_dir: Path,
                 archive: bool, interval: int) -> None:
        self.store = store
        self.manager = manager
        self.jobs = jobs
        self.jobs_dir = jobs_dir
        self.run_dir = run_dir
        #: DESTRUCTION_POLICY == "archive": keep the record of expired jobs, remove their results.
        self.archive = archive
        #: MAINTENANCE_INTERVAL: seconds between sweeps; 0: no loop.
        self.interval = interval
        self._stop = threading.Event()

    # ---- the sweep ---------------------------------------------------------------------------------
    def destroy_expired(self, now: datetime | None = None, batch: int = 500) -> int:
        """Destroy (or archive, per DESTRUCTION_POLICY) every job past its destruction time."""
        now = now or utcnow()
        done = 0
        seen: set[str] = set()
        while True:
            ids = [i for i in self.store.expired(now, batch, skip_archived=self.archive) if i not in seen]
            if not ids:
                return done
            seen.update(ids)
            if not self.archive:
                gone = self._delete_finished(ids)
                done += len(gone)
                ids = [i for i in ids if i not in gone]
            for job_id in ids:
                if self._expire_one(job_id, now):
                    done += 1

    def _delete_finished(self, ids: list[str]) -> set[str]:
        """Delete the finished jobs of ``ids``: they go in one transaction per batch; only
        unfinished ones need the one-by-one path that stops their processes first."""
        gone: set[str] = set()
        # Transactions of 100 jobs hold the (SQLite) write lock a few milliseconds each.
        for start in range(0, len(ids), 100):
            for job_id in self.store.delete_finished(ids[start:start + 100]):
                JobFiles.of(self.jobs_dir, job_id).remove()
                self.manager.discard(job_id)
                gone.add(job_id)
        return gone

    def _expire_one(self, job_id: str, now: datetime) -> bool:
        """Destroy or archive one job; False if it is gone or that failed (logged, retried next sweep)."""
        job = self.store.get(job_id)
        if job is None:
            return False
        try:
            if self.archive:
                if job.phase not in FINAL:
                    self.jobs.abort_now(job_id, now)
                self.store.archive(job_id)
                JobFiles.of(self.jobs_dir, job_id).remove_results()
                self.manager.discard(job_id)
            else:
                self.jobs.destroy(job)
            return True
        except Exception:
            log.exception("job %s: destruction failed", job_id)
            return False

    # ---- the loop ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the loop in a thread of this process (nothing when the interval is 0)."""
        if self.interval:
            self._stop.clear()
            threading.Thread(target=self._loop, name="opus-maintenance", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "maintenance.lock", "a+") as lock:
            while not self._stop.is_set():
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    self._stop.wait(self.interval)
            while not self._stop.is_set():
                try:
                    count = self.destroy_expired()
                    if count:
                        log.info("maintenance: %d expired job(s) destroyed", count)
                except Exception:
                    log.exception("maintenance failed; will retry")
                self._stop.wait(self.interval)
