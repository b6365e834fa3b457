"""LocalManager: runs jobs on the server host, the embedded default.

One process per server host dispatches (see ``DispatchingManager``).  It starts the job wrapper
for each QUEUED job, in a session of its own (so it survives a worker restart and can be killed
as a group), up to MAX_RUNNING_JOBS at once.
Any process can abort a job: it signals the process groups recorded for it.

**Exactly once.**  Before a wrapper starts, the job's launch record is created and locked
(``jobrecord.launch``; the wrapper makes it durable before the script starts); the wrapper
inherits the lock and holds it for its whole life.
Whenever the dispatcher finds a job it does not run itself (at take-over, a wrapper that died, a
job left ``starting`` by a process that died), ``_settle`` decides from that record: a saved report
is applied; a live holder is adopted; a job whose script never started is launched again; anything
else ends in ERROR and is never run a second time.

**The launcher** (``LOCAL_PREFORK``, ``opus.managers.launcher``): the dispatching process keeps a
process that has imported the wrapper and forks one per job, about 30 ms faster than a new
interpreter.  A launcher that is not there, not ready or refuses: the wrapper is started as a new
interpreter.  A launcher that got the request but did not answer may have forked it: the job is
then settled from its launch record like an interrupted launch (adopted, or queued again if no
wrapper holds the record).  A new launcher replaces a dead one, after a growing pause.

The dispatcher also enforces executionDuration from outside (``opus.managers.overtime``): a wrapper
that cannot stop its job in time (stopped, hung) has the job killed for it.
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
from typing import Protocol

from opus.errors import BadRequest, OpusError
from opus.jobdef import JobDefinitionRegistry
from opus.managers import jobrecord
from opus.managers.dispatch import WRAPPER, DispatchingManager
from opus.managers.jobsandbox import group_members
from opus.managers.launcher import Launcher, MaybeStarted, NotStarted
from opus.managers.overtime import Overtime
from opus.managers.sandbox import SandboxProbe
from opus.observability import metrics
from opus.settings import Settings
from opus.storage.entitystore import EntityStore
from opus.storage.jobfiles import JobFiles
from opus.storage.jobstore import JobStore
from opus.uws import FINAL, RUNNING, Phase

#: How the wrapper starts: imported as a module (``wrapper.py`` beside its sibling modules), not run
#: as a script.  A script run as ``__main__`` is compiled at every start; a module's bytecode is
#: cached in ``__pycache__``: about 10 ms less per job start (bench/README.md).  The first argument
#: after the code is the wrapper's directory, which it takes off ``sys.argv`` before ``main``.
WRAPPER_COMMAND = (sys.executable, "-I", "-S", "-c",
                   "import sys; sys.path.insert(0, sys.argv.pop(1)); import wrapper; "
                   "sys.exit(wrapper.main(sys.argv))",
                   str(WRAPPER.parent))

#: Seconds between two starts of the wrapper launcher (one that dies is replaced, not in a loop).
LAUNCHER_RETRY = 1.0
LAUNCHER_RETRY_MAX = 300.0


class Wrapped(Protocol):
    """A running wrapper: a ``subprocess.Popen`` or one the launcher forked (``launcher.Forked``)."""
    pid: int

    def wait(self, timeout: float | None = None) -> int | None: ...


log = logging.getLogger(__name__)
STARTING = "local:starting"
#: The errorSummary of a job whose launch a server's death interrupted after its script may have run.
STOPPED_WHILE_LAUNCHING = ("the server stopped while launching the job, and its wrapper ended without "
                           "reporting; it was not run again")
#: ... and of a job whose wrapper ended without a report.
ENDED_WITHOUT_REPORT = "the job's wrapper process ended without reporting; it was not run again"


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
    #: A job left "starting" or under a dead wrapper by a failure in this very process (the database
    #: away when a launch ended) is settled within this many seconds, not at the next restart.
    reconcile_every = 30.0

    def __init__(self, settings: Settings, store: JobStore, registry: JobDefinitionRegistry,
                 entities: EntityStore | None = None):
        super().__init__(settings, store, registry, entities)
        self._children: dict[str, Wrapped] = {}
        #: The pre-forked launcher of wrappers (``LOCAL_PREFORK``), started by the first turn.
        self._launcher: Launcher | None = None
        self._launcher_due = 0.0
        self._launcher_failures = 0
        self._launcher_lock = threading.Lock()
        self._adopted: dict[str, int] = {}
        #: Jobs whose launch record is held by a wrapper that has not noted its pid yet: settled later.
        self._unsure: set[str] = set()
        self.overtime = Overtime(settings, self._report)
        self.sandbox_probe = SandboxProbe(settings)
        self._said_problem: str | None = None

    def is_alive(self) -> bool:
        return WRAPPER.is_file() and self.problem() is None

    def problem(self) -> str | None:
        """Why jobs cannot be started on this host (the job sandbox does not work), or None."""
        return self.sandbox_probe.problem()

    # ---- dispatching ---------------------------------------------------------------------------
    def tick(self) -> None:
        self._keep_launcher()
        self._check_adopted()
        for job_id in list(self._unsure):
            self._unsure.discard(job_id)
            if self.store.get_phase(job_id) in RUNNING:
                self._settle_safely(job_id, STARTING)
            else:  # aborted or deleted meanwhile: stop what that launch started
                self.abort(job_id, None)
        running_here = {job_id: proc.pid for job_id, proc in list(self._children.items())}
        self.overtime.check({**self._adopted, **running_here})
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
        if jobrecord.launch_state(JobFiles.of(self.settings.jobs_dir, job_id).root).recorded:
            self._settle(job_id, STARTING)  # launched before: never prepared or started again
            return
        prepared = self.prepare(job_id)
        if prepared is None:
            return
        _job, _jobdef, files = prepared
        launch_fd = jobrecord.launch(files.root)  # recorded before the wrapper exists
        try:
            with open(files.wrapper_log, "ab") as logf:
                proc = self._start_wrapper(files, launch_fd, logf.fileno())
        finally:
            os.close(launch_fd)  # the wrapper holds the lock from now on
        if proc is None:  # the launcher may have started it: the launch record says, next turn
            self._unsure.add(job_id)
            return
        self._children[job_id] = proc
        self.store.update_job(job_id, manager_id=f"local:{proc.pid}")
        threading.Thread(target=self._reap, args=(job_id, proc), daemon=True).start()
        # An ABORT or DELETE that landed between claim and launch could not signal anything: do it now.
        phase = self.store.get_phase(job_id)
        if phase is None:
            self.abort(job_id, f"local:{proc.pid}", then=files.remove)
        elif phase not in RUNNING:
            self.abort(job_id, f"local:{proc.pid}")

    def _start_wrapper(self, files: JobFiles, launch_fd: int, log_fd: int) -> Wrapped | None:
        """Start the job's wrapper: forked by the launcher (``LOCAL_PREFORK``), else as a new
        interpreter.  None: the launcher failed after it got the request, so a wrapper may run."""
        launcher = self._launcher
        if launcher is not None:
            try:
                forked = launcher.spawn(["wrapper.py", str(files.spec)], str(files.root), launch_fd, log_fd)
                self._launcher_failures = 0
                return forked
            except NotStarted as exc:
                log.warning("job %s: %s; its wrapper is started as a new process", files.root.name, exc)
                if not launcher.alive():
                    self._drop_launcher()
            except MaybeStarted as exc:
                log.warning("job %s: %s; settled from its launch record", files.root.name, exc)
                self._drop_launcher()
                return None
        return subprocess.Popen(
            [*WRAPPER_COMMAND, str(files.spec), f"--launch-fd={launch_fd}"],
            stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, close_fds=True, pass_fds=(launch_fd,),
            start_new_session=True, cwd=files.root)

    def _keep_launcher(self) -> None:
        """Start the launcher if it should run and does not (a new one after a failure waits
        LAUNCHER_RETRY seconds, doubled at each failure in a row, up to LAUNCHER_RETRY_MAX)."""
        with self._launcher_lock:  # not while ``stop`` runs: no launcher is left behind
            if not self.settings.LOCAL_PREFORK or self._stopping:
                return
            if self._launcher is not None:
                if self._launcher.alive():
                    return
                self._drop_launcher()
            if time.monotonic() < self._launcher_due:
                return
            try:
                self._launcher = Launcher()
            except OSError as exc:
                log.warning("the job wrapper launcher cannot start: %s", exc)
                self._drop_launcher()

    def _drop_launcher(self) -> None:
        launcher, self._launcher = self._launcher, None
        if launcher is not None:
            launcher.close()
        self._launcher_failures += 1
        self._launcher_due = time.monotonic() + min(LAUNCHER_RETRY * 2 ** (self._launcher_failures - 1),
                                                    LAUNCHER_RETRY_MAX)

    def stop(self) -> None:
        with self._launcher_lock:
            super().stop()
            launcher, self._launcher = self._launcher, None
        if launcher is not None:
            launcher.close()

    def _reap(self, job_id: str, proc: Wrapped) -> None:
        proc.wait()
        self._children.pop(job_id, None)
        self._after_exit(job_id)
        self._wake.set()

    def _after_exit(self, job_id: str) -> None:
        """The wrapper is gone: settle a job that still looks active.  A job already ended gets its
        late report replayed too, so that results it lost the race with are removed."""
        phase = self.store.get_phase(job_id)
        if phase in RUNNING:
            self._settle(job_id, None)
        elif phase in FINAL:
            report = jobrecord.saved_report(JobFiles.of(self.settings.jobs_dir, job_id).root)
            if report is not None:
                self._report(job_id, report)

    def _settle(self, job_id: str, manager_id: str | None) -> None:
        """Decide for an active job that no child of this process runs (see the module docstring).
        ``manager_id`` is STARTING when a launch was interrupted (the job may then be launched again
        if its script never started)."""
        files = JobFiles.of(self.settings.jobs_dir, job_id)
        state = jobrecord.launch_state(files.root)
        report = jobrecord.saved_report(files.root)
        if report is not None:
            try:
                self._report(job_id, report)  # the wrapper may still retry its callback: "already"
            except BadRequest as exc:
                self._report(job_id, {"phase": "ERROR",
                                      "message": f"the job's saved report is invalid: {exc}"})
        elif state.live and state.wrapper_pid is None:
            self._unsure.add(job_id)  # a wrapper is starting: look again next turn
        elif state.live and state.wrapper_pid is not None:
            self._adopt(job_id, state.wrapper_pid)
        elif not state.recorded and (pid := _pid_of(manager_id)) is not None and _group_alive(pid):
            self._adopt(job_id, pid)  # a wrapper started before launch records existed
        elif manager_id == STARTING and not state.script_started:
            if state.recorded:
                jobrecord.forget(files.root)
            if not self.store.update_job(job_id, [Phase.QUEUED], manager_id=None):  # launch again
                self._report(job_id, {"phase": "ERROR", "message": "the job's wrapper ended before "
                                      "starting its script, and the job could not be queued again"})
        else:
            self._kill_script(files)
            why = STOPPED_WHILE_LAUNCHING if manager_id == STARTING else ENDED_WITHOUT_REPORT
            self._report(job_id, {"phase": "ERROR", "message": why})

    def _adopt(self, job_id: str, pid: int) -> None:
        self.store.update_job(job_id, RUNNING, manager_id=f"local:{pid}")
        self._adopted[job_id] = pid

    def _kill_script(self, files: JobFiles) -> None:
        """SIGKILL what is left of a job whose wrapper is gone (its script's process group)."""
        try:
            os.killpg(int(files.script_pgid.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass

    # ---- abort and reconciliation --------------------------------------------------------------------
    def abort(self, job_id: str, manager_id: str | None, then: Callable[[], None] | None = None) -> None:
        pid = _pid_of(manager_id)
        if pid is None:  # a launch under way, or interrupted: its wrapper may be alive all the same
            state = jobrecord.launch_state(JobFiles.of(self.settings.jobs_dir, job_id).root)
            pid = state.wrapper_pid if state.live else None
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
        """At take-over: wrappers started by an earlier process are adopted or their end replayed;
        a launch it interrupted is settled from the job's launch record."""
        for job_id, manager_id, _phase in self.store.running():
            if job_id not in self._children and job_id not in self._adopted and job_id not in self._unsure:
                self._settle_safely(job_id, manager_id)

    def _settle_safely(self, job_id: str, manager_id: str | None) -> None:
        try:
            self._settle(job_id, manager_id)
        except OpusError as exc:  # deleted meanwhile, or a report that cannot apply: the others go on
            log.warning("job %s: cannot settle it: %s", job_id, exc)

    def _check_adopted(self) -> None:
        for job_id, pid in list(self._adopted.items()):
            if not _group_alive(pid):
                del self._adopted[job_id]
                self._after_exit(job_id)
