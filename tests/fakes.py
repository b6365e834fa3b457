"""A fake execution back end: jobs run as Python functions in this process, no wrapper, no subprocess.

``FakeManager`` implements the Manager interface the way the real managers do, seen from the
server: it claims QUEUED jobs from the JobStore, reports EXECUTING, writes the job's files as the
wrapper does (``stdout.log``, ``stderr.log``, the declared results moved from ``work/`` into
``results/`` with size and SHA-256, ``report.json``) and reports COMPLETED, ERROR or ABORTED through
the report sink the server gave ``start`` -- the real completion code.  Only the script is replaced:
each job definition used by API tests has a Python behaviour below that does what its script does.

For tests that are not about execution.  Execution itself (the wrapper, the sandbox, SLURM, process
groups, restarts) is tested against the real managers (tests/test_manager_contract.py and others).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from opus.errors import OpusError
from opus.managers.base import Manager
from opus.storage.jobfiles import JobFiles
from opus.storage.outage import is_outage
from opus.uws import Phase


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FakeRun:
    """What a behaviour sees of its job: parameter values (uploads as paths), its work directory,
    its output streams, and a way to pass time that an abort or the execution duration cuts short."""

    job_id: str
    values: dict[str, str]
    work: Path
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # seconds of executionDuration (None: unlimited)
    timed_out: bool = False

    def sleep(self, seconds: float) -> bool:
        """Pass ``seconds``; False when stopped (ABORT) or out of executionDuration first."""
        limit = seconds if self.deadline is None else min(seconds, self.deadline)
        if self.stop.wait(limit):
            return False
        if self.deadline is not None and seconds > self.deadline:
            self.timed_out = True
            return False
        return True


#: A job definition's script in Python: returns the exit status.
Behaviour = Callable[[FakeRun], int]


def _dummy(run: FakeRun) -> int:
    (run.work / "output.txt").write_text(run.values.get("text", "") + "\n")
    return 0


def _copy(run: FakeRun) -> int:
    data = Path(run.values["infile"]).read_bytes()
    (run.work / "copy.dat").write_bytes(data)
    (run.work / "size.txt").write_text(f"{len(data)}\n")
    return 0


def _fail(run: FakeRun) -> int:
    run.stdout.append("starting\n")
    run.stderr.append(run.values.get("message", "") + "\n")
    return int(run.values.get("status", "3"))


def _sleep(run: FakeRun) -> int:
    run.stdout.append(f"sleeping {run.values.get('seconds', '10')} s\n")
    if not run.sleep(float(run.values.get("seconds", "10"))):
        return -15
    (run.work / "done.txt").write_text("done\n")
    return 0


def _types(run: FakeRun) -> int:
    for kind in ("string", "int", "long", "float", "double", "boolean", "anyURI", "dateTime"):
        (run.work / f"{kind}.txt").write_text(run.values.get(f"p_{kind}", ""))
    source = run.values.get("p_file")
    (run.work / "file.dat").write_bytes(Path(source).read_bytes() if source else b"")
    return 0


#: The scripts of jdl/*.json that API tests run, as Python.
BEHAVIOURS: dict[str, Behaviour] = {"dummy": _dummy, "copy": _copy, "fail": _fail, "sleep": _sleep,
                                    "types": _types}


class FakeManager(Manager):
    """Runs each claimed job in a thread of this process (see the module docstring)."""

    name = "fake"

    def __init__(self, settings: Any, store: Any, registry: Any,
                 behaviours: dict[str, Behaviour] | None = None):
        self.settings = settings
        self.store = store
        self.registry = registry
        self.behaviours = dict(BEHAVIOURS if behaviours is None else behaviours)
        self._report: Callable[[str, dict], Any] | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._runs: dict[str, tuple[FakeRun, threading.Thread]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ---- the Manager interface -------------------------------------------------------------------
    def start(self, report: Callable[[str, dict], Any]) -> None:
        if self._thread is not None:
            return
        self._report = report
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="opus-fake-manager", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        with self._lock:
            runs = list(self._runs.values())
        for run, _thread in runs:
            run.stop.set()
        for _run, thread in runs:
            if thread.ident is not None:  # registered by _launch, maybe not started yet
                thread.join(5)
        if self._thread is not None:
            self._thread.join(5)  # no turn of the loop after the server's engine is gone
            self._thread = None

    def is_alive(self) -> bool:
        return True

    def running(self) -> set[str]:
        """The jobs whose behaviour is running now."""
        with self._lock:
            return set(self._runs)

    def abort(self, job_id: str, manager_id: str | None, then: Callable[[], None] | None = None) -> None:
        with self._lock:
            running = self._runs.get(job_id)
        if running is None:
            if then is not None:
                then()
            return
        running[0].stop.set()
        if then is not None:
            threading.Thread(target=lambda: (running[1].join(), then()), daemon=True).start()

    # ---- dispatching -----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            try:
                self._turn()
            except Exception as exc:  # as the real dispatcher: a database outage skips a turn
                if not is_outage(exc):
                    raise

    def _turn(self) -> None:
        free = self.settings.max_running_jobs - len(self.store.running())
        if free <= 0:
            return
        for job_id in self.store.claimable(free):
            if self.store.claim(job_id, f"fake:{job_id}"):
                self._launch(job_id)

    def _launch(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is None:
            return
        files = JobFiles.of(self.settings.jobs_dir, job_id)
        files.work.mkdir(parents=True, exist_ok=True)
        files.results.mkdir(parents=True, exist_ok=True)
        values = {p.name: (str(files.uploads / p.name) if p.by_reference and p.value == f"param:{p.name}"
                           else p.value) for p in job.parameters}
        run = FakeRun(job_id, values, files.work, deadline=job.execution_duration or None)
        thread = threading.Thread(target=self._execute, args=(job, run, files), daemon=True)
        with self._lock:
            self._runs[job_id] = (run, thread)
        thread.start()

    def _execute(self, job: Any, run: FakeRun, files: JobFiles) -> None:
        try:
            self._send(job.job_id, {"phase": "EXECUTING", "start_time": _now_iso()})
            if self.store.get_phase(job.job_id) is not Phase.EXECUTING:
                return  # aborted or deleted before it started
            self._send(job.job_id, self._run(job, run, files))
        finally:
            with self._lock:
                self._runs.pop(job.job_id, None)
            self._wake.set()

    def _run(self, job: Any, run: FakeRun, files: JobFiles) -> dict:
        """Run the behaviour and build the final report as the wrapper does."""
        behaviour = self.behaviours.get(job.jobname)
        if behaviour is None:
            return {"phase": "ERROR", "message": f"the fake manager has no behaviour for {job.jobname!r}"}
        try:
            code = behaviour(run)
        except Exception as exc:  # a job the fake cannot run (e.g. inputs it does not stage) ends, visibly
            return {"phase": "ERROR", "message": f"the fake manager could not run the job: {exc!r}"}
        files.stdout.write_text("".join(run.stdout))
        files.stderr.write_text("".join(run.stderr))
        if run.timed_out:
            return {"phase": "ABORTED", "message":
                    f"executionDuration of {job.execution_duration} s exceeded: the job was stopped"}
        if run.stop.is_set():
            return {"phase": "ABORTED", "message": "the job was stopped by signal SIGTERM"}
        found, missing = self._collect(job, files)
        if code != 0:
            tail = f": {run.stderr[-1].strip()}" if run.stderr else ""
            return {"phase": "ERROR", "message": f"the job's script failed (exit status {code}){tail}",
                    "results": found}
        if missing:
            return {"phase": "ERROR", "results": found,
                    "message": "the job's script did not produce " + ", ".join(missing)}
        return {"phase": "COMPLETED", "results": found}

    def _collect(self, job: Any, files: JobFiles) -> tuple[list[dict], list[str]]:
        """The declared results moved from work/ to results/, as the wrapper's ``collect``."""
        jobdef = self.registry.get(job.jobname, job.jdl_version)
        found, missing = [], []
        for generated in jobdef.generated.values():
            pattern = generated.file
            is_glob = any(c in pattern for c in "*?[")
            matches = sorted(glob.glob(glob.escape(str(files.work)) + "/" + pattern)) if is_glob else \
                ([str(files.work / pattern)] if (files.work / pattern).is_file() else [])
            if not matches and generated.is_required:
                missing.append(f"{generated.name} ({pattern})")
            for path in map(Path, matches):
                dest = files.results / path.name
                shutil.move(str(path), dest)
                found.append({"result_id": path.name if is_glob else generated.name, "file_name": path.name,
                              "content_type": generated.content_type or "application/octet-stream",
                              "size": dest.stat().st_size,
                              "sha256": hashlib.sha256(dest.read_bytes()).hexdigest()})
        return found, missing

    def _send(self, job_id: str, report: dict) -> None:
        """Keep the report where the wrapper keeps it (final ones), then apply it through the server."""
        assert self._report is not None
        if report["phase"] != "EXECUTING":
            report.setdefault("end_time", _now_iso())
            files = JobFiles.of(self.settings.jobs_dir, job_id)
            if files.root.is_dir():
                tmp = files.root / "report.json.tmp"
                tmp.write_text(json.dumps(report))
                os.replace(tmp, files.report)
        try:
            self._report(job_id, report)
        except OpusError:
            pass  # the job was deleted meanwhile, as a real wrapper's callback would find
