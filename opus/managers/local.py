"""LocalManager: runs jobs on the server host, the embedded default.

One process per server host dispatches (see ``DispatchingManager``).  It starts the job wrapper
for each QUEUED job, in a session of its own (so it survives a worker restart and can be killed
as a group), up to MAX_RUNNING_JOBS at once.
Any process can abort a job: it signals the process groups recorded for it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from opus.errors import OpusError
from opus.jobdef import JobDefinitionRegistry
from opus.managers.dispatch import WRAPPER, DispatchingManager
from opus.managers.jobsandbox import group_members
from opus.managers.sandbox import SandboxProbe
from opus.observability import metrics
from opus.settings import Settings
from opus.storage.entitystore import EntityStore
from opus.storage.jobfiles import JobFiles
from opus.storage.jobstore import JobStore
from opus.uws import RUNNING, Phase

log = logging.getLogger(__name__)
STARTING = "local:starting"


def _pid_of(manager_id: str | None) -> int | None:
    if manager_id and manager_id.startswith("local:") and manager_id[6:].isdigit():
        return int(manager_id[6:])
    return None


def _group_alive(pgid: int) -> bool:
    """True if a non-zombie process is in the group (zombies are gone for our purpose)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return any(state != b"Z" for _pid, state in group_members(pgid))
    except FileNotFoundError:  # no /proc: trust killpg
        return True


class LocalManager(DispatchingManager):
    name = "local"

    def __init__(self, settings: Settings, store: JobStore, registry: JobDefinitionRegistry,
                 entities: EntityStore | None = None):
        super().__init__(settings, store, registry, entities)
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._adopted: dict[str, int] = {}
        self.sandbox_probe = SandboxProbe(settings)
        self._said_problem: str | None = None

    def is_alive(self) -> bool:
        return WRAPPER.is_file() and self.problem() is None

    def problem(self) -> str | None:
        """Why jobs cannot be started on this host (the job sandbox does not work), or None."""
        return self.sandbox_probe.problem()

    # ---- dispatching ---------------------------------------------------------------------------
    def tick(self) -> None:
        self._check_adopted()
        running = len(self.store.running())
        free = self.settings.max_running_jobs - running
        if free <= 0:
            return
        problem = self.problem()
        if problem != self._said_problem:
            if problem:
                log.error("jobs are not started: the job sandbox does not work on this host: %s "
                          "(JOB_SANDBOX = 'none' runs them unsandboxed)", problem)
            else:
                log.info("the job sandbox works: starting jobs")
            self._said_problem = problem
        if problem:
            return  # queued jobs wait (not lost) until the sandbox works
        for job_id in self.store.claimable(free):
            if not self.store.claim(job_id, STARTING):
                continue
            try:
                self._launch(job_id)
            except Exception as exc:
                if self.store.get_phase(job_id) is None:
                    continue  # deleted while it was being started: nothing to report
                log.exception("job %s: cannot start", job_id)
                metrics.count(self.settings, "opus_manager_errors_total", manager="local")
                try:
                    self._report(job_id, {"phase": "ERROR", "message": f"the job could not be started: {exc}"})
                except OpusError:
                    pass  # deleted meanwhile

    def _launch(self, job_id: str) -> None:
        prepared = self.prepare(job_id)
        if prepared is None:
            return
        _job, _jobdef, files = prepared
        with open(files.wrapper_log, "ab") as logf:
            proc = subprocess.Popen([sys.executable, "-I", "-S", str(WRAPPER), str(files.spec)],
                                    stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, close_fds=True,
                                    start_new_session=True, cwd=files.root)
        self._children[job_id] = proc
        self.store.update_job(job_id, manager_id=f"local:{proc.pid}")
        threading.Thread(target=self._reap, args=(job_id, proc), daemon=True).start()
        # An ABORT or DELETE that landed between claim and launch could not signal anything: do it now.
        phase = self.store.get_phase(job_id)
        if phase is None:
            self.abort(job_id, f"local:{proc.pid}", then=files.remove)
        elif phase not in RUNNING:
            self.abort(job_id, f"local:{proc.pid}")

    def _reap(self, job_id: str, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._children.pop(job_id, None)
        self._after_exit(job_id)
        self._wake.set()

    def _after_exit(self, job_id: str) -> None:
        """The wrapper is gone: if the job still looks active, replay its report or mark it lost."""
        if self.store.get_phase(job_id) in RUNNING:
            self.replay_or_fail(job_id, "the job's wrapper process ended without reporting")

    # ---- abort and reconciliation --------------------------------------------------------------------
    def abort(self, job_id: str, manager_id: str | None, then: Callable[[], None] | None = None) -> None:
        pid = _pid_of(manager_id)
        if pid is None:
            if then is not None:
                then()
            return  # not started yet: the dispatcher checks the phase after launching
        files = JobFiles.of(self.settings.jobs_dir, job_id)
        groups = [pid]
        try:
            groups.append(int(files.script_pgid.read_text()))
        except (OSError, ValueError):
            pass
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

        def backstop() -> None:
            deadline = time.monotonic() + self.settings.KILL_GRACE + 1.0
            while time.monotonic() < deadline and any(_group_alive(g) for g in groups):
                time.sleep(0.05)
            for g in groups:
                try:
                    os.killpg(g, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if then is not None:
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline and any(_group_alive(g) for g in groups):
                    time.sleep(0.05)
                then()

        threading.Thread(target=backstop, daemon=True).start()

    def reconcile(self) -> None:
        """At take-over: wrappers started by an earlier process are adopted or their end replayed."""
        for job_id, manager_id, _phase in self.store.running():
            if job_id in self._children:
                continue
            if manager_id == STARTING:
                # Claimed by a process that died before launching: hand it back to the queue.
                self.store.update_job(job_id, [Phase.QUEUED], manager_id=None)
                continue
            pid = _pid_of(manager_id)
            if pid is not None and _group_alive(pid):
                self._adopted[job_id] = pid
            else:
                self._after_exit(job_id)

    def _check_adopted(self) -> None:
        for job_id, pid in list(self._adopted.items()):
            if not _group_alive(pid):
                del self._adopted[job_id]
                self._after_exit(job_id)
