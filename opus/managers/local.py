"""LocalManager: runs jobs on the server host, the embedded default.

One process per server host dispatches (whichever worker holds ``run/local-manager.lock``; if it
dies another takes over).  It starts the job wrapper for each QUEUED job, in a session of its own
(so it survives a worker restart and can be killed as a group), up to MAX_RUNNING_JOBS at once.
Any process can abort a job: it signals the process groups recorded for it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..jobfiles import JobFiles
from ..security import job_token
from ..uws import Phase
from .base import Manager, ReportSink

log = logging.getLogger(__name__)
WRAPPER = Path(__file__).resolve().parent / "wrapper.py"
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
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        fields = f.read().rsplit(b")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == pgid and fields[0] != b"Z":
                    return True
        return False
    except FileNotFoundError:  # no /proc: trust killpg
        return True


class LocalManager(Manager):
    name = "local"

    def __init__(self, settings, store, registry):
        self.settings = settings
        self.store = store
        self.registry = registry
        self._wake = threading.Event()
        self._report: ReportSink | None = None
        self._children: dict[str, subprocess.Popen] = {}
        self._adopted: dict[str, int] = {}
        self._lock_file = None
        self._started_pid: int | None = None
        self._stopping = False

    # ---- background ----------------------------------------------------------------------------
    def start(self, report: ReportSink) -> None:
        if self._started_pid == os.getpid():
            return
        self._started_pid = os.getpid()
        self._report = report
        self._stopping = False
        threading.Thread(target=self._run, name="opus-local-manager", daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def is_alive(self) -> bool:
        return WRAPPER.is_file()

    def _try_lead(self) -> bool:
        if self._lock_file is not None:
            return True
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.settings.run_dir / "local-manager.lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._lock_file = f
        log.info("process %d now dispatches local jobs", os.getpid())
        return True

    def _run(self) -> None:
        while not self._stopping:
            if self._try_lead():
                break
            self._wake.wait(2.0)
            self._wake.clear()
        if self._stopping:
            return
        try:
            self._reconcile()
        except Exception:
            log.exception("local manager: reconciliation failed")
        while not self._stopping:
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self._check_adopted()
                self._dispatch()
            except Exception:
                log.exception("local manager: dispatch failed; retrying")
                time.sleep(1.0)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # ---- dispatching ---------------------------------------------------------------------------
    def _dispatch(self) -> None:
        running = len(self.store.running())
        free = self.settings.max_running_jobs - running
        if free <= 0:
            return
        for job_id in self.store.claimable(free):
            if not self.store.claim(job_id, STARTING):
                continue
            try:
                self._launch(job_id)
            except Exception as exc:
                log.exception("job %s: cannot start", job_id)
                self._report(job_id, {"phase": "ERROR", "message": f"the job could not be started: {exc}"})

    def _launch(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is None:
            return
        jobdef = self.registry.get(job.jobname)
        files = JobFiles.of(self.settings.jobs_dir, job_id)
        files.work.mkdir(parents=True, exist_ok=True)
        files.results.mkdir(parents=True, exist_ok=True)
        files.script.write_text(jobdef.script)
        environment, parameters = self._parameters(job, jobdef, files)
        spec = {
            "job_id": job_id, "jobname": job.jobname, "token": job_token(self.settings, job_id),
            "callback_url": self._callback_url(job_id), "execution_duration": job.execution_duration,
            "kill_grace": self.settings.KILL_GRACE, "retry_seconds": self.settings.CALLBACK_RETRY_SECONDS,
            "environment": environment, "parameters": parameters,
            "generated": [{"name": g.name, "file": g.file, "content_type": g.content_type}
                          for g in jobdef.generated.values()],
        }
        files.spec.write_text(json.dumps(spec, indent=1))
        os.chmod(files.spec, 0o600)
        with open(files.wrapper_log, "ab") as logf:
            proc = subprocess.Popen([sys.executable, "-I", "-S", str(WRAPPER), str(files.spec)],
                                    stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, close_fds=True,
                                    start_new_session=True, cwd=files.root)
        self._children[job_id] = proc
        self.store.update_job(job_id, list(Phase), manager_id=f"local:{proc.pid}")
        threading.Thread(target=self._reap, args=(job_id, proc), daemon=True).start()
        # An ABORT or DELETE that landed between claim and launch could not signal anything: do it now.
        phase = self.store.get_phase(job_id)
        if phase is None:
            self.abort(job_id, f"local:{proc.pid}", then=files.remove)
        elif phase not in (Phase.QUEUED, Phase.EXECUTING):
            self.abort(job_id, f"local:{proc.pid}")

    def _callback_url(self, job_id: str) -> str:
        s = self.settings
        row_url = self.store.get_callback_url(job_id)
        return s.CALLBACK_URL or s.BASE_URL or row_url or "http://127.0.0.1:8080"

    @staticmethod
    def _parameters(job, jobdef, files: JobFiles) -> tuple[dict, dict]:
        """(environment for the script, parameters.json content): defaults filled in."""
        values = {p.name: p for p in job.parameters}
        environment: dict[str, str] = {}
        everything: dict[str, str] = {}
        for name, desc in jobdef.parameters.items():
            p = values.get(name)
            value = p.value if p is not None else desc.default
            if value is not None:
                environment[name] = value
        for name, used in jobdef.used.items():
            p = values.get(name)
            if p is not None and p.by_reference and p.value.startswith("param:"):
                environment[name] = str(files.upload(name))
            elif p is not None:
                environment[name] = p.value
            elif used.default is not None:
                environment[name] = used.default
        for p in job.parameters:
            everything[p.name] = str(files.upload(p.name)) if p.value.startswith("param:") and p.by_reference \
                else p.value
        for name, value in environment.items():
            everything.setdefault(name, value)
        return environment, everything

    def _reap(self, job_id: str, proc: subprocess.Popen) -> None:
        proc.wait()
        self._children.pop(job_id, None)
        self._after_exit(job_id)
        self._wake.set()

    def _after_exit(self, job_id: str) -> None:
        """The wrapper is gone: if the job still looks active, replay its report or mark it lost."""
        phase = self.store.get_phase(job_id)
        if phase is None or phase not in (Phase.QUEUED, Phase.EXECUTING):
            return
        files = JobFiles.of(self.settings.jobs_dir, job_id)
        try:
            report = json.loads(files.report.read_text())
        except (OSError, ValueError):
            report = {"phase": "ERROR", "message": "the job's wrapper process ended without reporting"}
        self._report(job_id, report)

    # ---- abort and reconciliation --------------------------------------------------------------------
    def abort(self, job_id: str, manager_id: str | None, then=None) -> None:
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

        def backstop():
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

    def _reconcile(self) -> None:
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
