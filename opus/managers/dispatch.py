"""DispatchingManager: what every manager that starts wrappers shares.

One process per server host leads (it holds ``run/<name>-manager.lock``; if it dies another takes
over): it reconciles at take-over, then loops, woken by notifications (a job queued, a slot
freed) or by a timer.  ``prepare`` writes what the job wrapper needs into the job's directory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path, PurePath
from typing import IO, Any
from urllib.parse import urlsplit

from opus.auth.identity import job_token
from opus.errors import ConfigurationError
from opus.jobdef import JobDefinition, JobDefinitionRegistry
from opus.jobdef.envnames import reserved_reason
from opus.jobdef.model import SHELLS, multiplicity_range
from opus.listen import NO_CALLBACK_URL, callback_base
from opus.managers import jobrecord, sandbox
from opus.managers.base import Manager, ReportSink
from opus.managers.staging import HTTP_URL, Fetch, InputStager
from opus.settings import Settings
from opus.storage.entitystore import EntityStore
from opus.storage.jobfiles import JobFiles
from opus.storage.jobstore import JobStore
from opus.uws import Job, Parameter

log = logging.getLogger(__name__)
WRAPPER = Path(__file__).resolve().parent / "wrapper.py"
#: The stdlib-only modules the wrapper imports by bare name from its own directory: wherever the
#: wrapper is shipped without the checkout (SLURM over ssh), they travel with it.
WRAPPER_SIBLINGS = ("jobsandbox.py", "jobfetch.py", "jobrecord.py", "jobcallback.py")
#: What ``prepare`` returns: the job, its definition and its files (here).
Prepared = tuple[Job, JobDefinition, JobFiles]


class DispatchingManager(Manager):
    """Leader election, the dispatch loop, and the wrapper's job.json."""

    #: Seconds between loop turns when nothing wakes the dispatcher.
    tick_seconds = 1.0
    #: Seconds between reconciliations after the one at take-over (retried within 5 s when it
    #: fails, e.g. while the database is away); None: only at take-over.
    reconcile_every: float | None = None

    def __init__(self, settings: Settings, store: JobStore, registry: JobDefinitionRegistry,
                 entities: EntityStore | None = None):
        """``entities``: the process's one EntityStore (the composition root's); None builds one."""
        self.settings = settings
        self.store = store
        self.registry = registry
        self.inputs = InputStager(settings, entities if entities is not None else EntityStore(store))
        self._wake = threading.Event()
        self._report_sink: ReportSink | None = None
        self._lock_file: IO[str] | None = None
        self._started_pid: int | None = None
        self._stopping = False

    # ---- background ----------------------------------------------------------------------------
    def start(self, report: ReportSink) -> None:
        if self._started_pid == os.getpid():
            return
        self._started_pid = os.getpid()
        self._report_sink = report
        self._stopping = False
        threading.Thread(target=self._run, name=f"opus-{self.name}-manager", daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    @property
    def leading(self) -> bool:
        return self._lock_file is not None

    def _try_lead(self) -> bool:
        if self._lock_file is not None:
            return True
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.settings.run_dir / f"{self.name}-manager.lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._lock_file = f
        log.info("process %d now dispatches %s jobs", os.getpid(), self.name)
        return True

    def _wait_to_lead(self) -> bool:
        """Block until this process leads (True) or the manager stops (False)."""
        # A follower retries the lock every 2 s, not on each notification (those wake the leader).
        while not self._stopping:
            if self._try_lead():
                break
            time.sleep(2.0)
        return not self._stopping

    def _run(self) -> None:
        if not self._wait_to_lead():
            return
        due = self._reconcile_now(time.monotonic())
        while not self._stopping:
            self._wake.wait(self.tick_seconds)
            self._wake.clear()
            if due is not None and time.monotonic() >= due:
                due = self._reconcile_now(time.monotonic())
            try:
                self.tick()
            except Exception:
                log.exception("%s manager: dispatch failed; retrying", self.name)
                time.sleep(1.0)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _reconcile_now(self, now: float) -> float | None:
        """Reconcile; when to do it again (None: never, the subclass does not ask for it)."""
        try:
            self.reconcile()
        except Exception:
            log.exception("%s manager: reconciliation failed", self.name)
            return None if self.reconcile_every is None else now + min(5.0, self.reconcile_every)
        return None if self.reconcile_every is None else now + self.reconcile_every

    # ---- hooks -------------------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Correct what the database believes about active jobs (at take-over, and as the subclass wants)."""

    def tick(self) -> None:
        """One turn of the dispatch loop."""

    # ---- the wrapper's input -------------------------------------------------------------------------
    def _report(self, job_id: str, report: dict[str, Any]) -> None:
        """Apply a report (the wrapper's, saved, or one the manager writes) through the sink ``start`` got."""
        if self._report_sink is None:
            raise RuntimeError(f"{self.name} manager: a report for job {job_id} before start()")
        self._report_sink(job_id, report)

    def prepare(self, job_id: str, cluster_root: PurePath | None = None) -> Prepared | None:
        """Write job.json and script.sh for the wrapper; returns (job, jobdef, files) or None if gone.

        ``cluster_root``: where the job directory will be when the wrapper runs, if not here.
        """
        job = self.store.get(job_id)
        if job is None:
            return None
        jobdef = self.registry.get(job.jobname, job.jdl_version)
        files = JobFiles.of(self.settings.jobs_dir, job_id)
        files.work.mkdir(parents=True, exist_ok=True)
        files.results.mkdir(parents=True, exist_ok=True)
        # As the original OPUS did: a script saved with CRLF line endings runs (bash reads "\r" as text).
        files.script.write_text(jobdef.script.replace("\r\n", "\n").replace("\r", "\n"))
        # JobFiles only builds paths: a cluster's POSIX path serves as well as a local one.
        seen_from = JobFiles(Path(cluster_root)) if cluster_root is not None else files
        defaults, default_hosts = default_inputs(jobdef, job)
        environment, parameters, fetches = self._parameters(job, jobdef, files, seen_from, defaults)
        spec = {
            "job_id": job_id, "jobname": job.jobname, "token": job_token(self.settings, job_id),
            "manager": self.name,  # the wrapper under SLURM does not wait long for the server
            "callback_url": self._callback_url(), "execution_duration": job.execution_duration,
            "kill_grace": self.settings.KILL_GRACE, "retry_seconds": self.settings.CALLBACK_RETRY_SECONDS,
            "environment": environment, "parameters": parameters,
            "fetch": [vars(f) for f in fetches],
            "fetch_hosts": list(dict.fromkeys(self.inputs.fetch_hosts(jobdef) + default_hosts)),
            "fetch_timeout": self.settings.INPUT_URL_TIMEOUT, "fetch_max_size": self.settings.INPUT_URL_MAX_SIZE,
            "generated": [{"name": g.name, "file": g.file, "content_type": g.content_type,
                           "required": g.is_required}
                          for g in jobdef.generated.values()],
            "sandbox": sandbox.wrapper_config(self.settings, jobdef.network),
            "errexit": jobdef.errexit, "shell": self._shell(jobdef), "variables": result_variables(jobdef),
        }
        tmp = files.root / "job.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f, indent=1)
        os.replace(tmp, files.spec)
        return job, jobdef, files

    def _callback_url(self) -> str:
        """Where the wrapper reports: from the settings or the listening address, never from a
        request (a client's Host would send the job's token anywhere).  No URL known: the job is
        not started (it ends in ERROR with this message)."""
        url = callback_base(self.settings)
        if url is None:
            raise ConfigurationError(NO_CALLBACK_URL)
        return url

    def _shell(self, jobdef: JobDefinition) -> str:
        """The definition's shell environment, else the server's JOB_SHELL."""
        shell = jobdef.shell or self.settings.JOB_SHELL
        if shell not in SHELLS or not shell:
            raise ConfigurationError(f'JOB_SHELL must be "plain" or "login", not {shell!r}')
        return shell

    def _parameters(self, job: Job, jobdef: JobDefinition, files: JobFiles, seen_from: JobFiles,
                    defaults: dict[str, Parameter]) -> tuple[dict[str, str], dict[str, Any], list[Fetch]]:
        """(environment for the script, parameters.json content, inputs to fetch): defaults filled in
        (``defaults``: inputs left to a default that is staged as a client's value would be)."""
        values = {**defaults, **{p.name: p for p in job.parameters}}
        environment: dict[str, str] = {}
        for name, desc in jobdef.parameters.items():
            p = values.get(name)
            value = p.value if p is not None else desc.default
            if value is not None:
                environment[name] = value
        inputs, fetches = self.inputs.plan(jobdef, values, files, seen_from)
        environment.update(inputs)
        everything: dict[str, Any] = {p.name: p.value for p in job.parameters}
        everything.update(environment)
        for name, value in list(everything.items()):
            described = jobdef.parameters.get(name) or jobdef.used.get(name)
            if described is not None and multiplicity_range(described.multiplicity)[1] != 1:
                everything[name] = value.split()
        return environment, everything, fetches

    def replay_or_fail(self, job_id: str, why: str) -> None:
        """The job's wrapper is gone: apply its saved report (report.json, else the report slot), or
        record the job as failed."""
        report = jobrecord.saved_report(JobFiles.of(self.settings.jobs_dir, job_id).root)
        self._report(job_id, report if report is not None else {"phase": "ERROR", "message": why})


def default_inputs(jobdef: JobDefinition, job: Job) -> tuple[dict[str, Parameter], list[str]]:
    """The inputs the client left to a default that is resolved as a client's value would be (the
    original OPUS did so): http(s) URLs, fetched, and identifiers of an input with a URL template,
    fetched through it.  Other defaults reach the script as they are.  Also the hosts of those URLs:
    the definition's author chose them, as a template's host (fetched whatever INPUT_URL_HOSTS says)."""
    given = {p.name for p in job.parameters}
    found: dict[str, Parameter] = {}
    hosts: list[str] = []
    for name, used in jobdef.used.items():
        items = (used.default or "").split()
        if name in given or not items or not (used.url or all(HTTP_URL.match(i) for i in items)):
            continue
        found[name] = Parameter(name, " ".join(items), by_reference=all(HTTP_URL.match(i) for i in items))
        for item in items:
            try:
                host = urlsplit(item).hostname if HTTP_URL.match(item) else None
            except ValueError:
                host = None  # not a URL: its fetch fails, saying so
            if host:
                hosts.append(host)
    return found, hosts


def result_variables(jobdef: JobDefinition) -> dict[str, str]:
    """Each result's file name (pattern) as ``$OPUS_RESULT_<result>`` and, as the original OPUS had it,
    ``$<result>`` (unless a parameter or input has that name, or the name is not one a definition may
    give a variable: ``opus.jobdef.envnames``)."""
    out: dict[str, str] = {}
    for name, gen in jobdef.generated.items():
        if reserved_reason(name) is None:
            out[f"OPUS_RESULT_{name}"] = gen.file
            if name not in jobdef.parameters and name not in jobdef.used:
                out[name] = gen.file
    return out
