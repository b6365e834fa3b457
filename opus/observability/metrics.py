"""Operational counters of one OPUS server, totalled across its processes, by prometheus_client.

prometheus_client's multiprocess mode keeps the counts of each process in memory-mapped files of
one directory (``<type>_<pid>.db``), ``DATA_DIR/run/metrics``; a scrape, answered by any process,
merges the files of every process of the server: gunicorn workers, mod_wsgi daemon processes.  A
count is a lock and a write into a mapped page (no system call), and is in the total at once.

The life of the directory:
- the counters of a process that is gone stay in its files, so totals never go down when a worker
  is replaced (gunicorn) or Apache restarts gracefully;
- it is cleared when a server starts, so that the files of a killed server do not count: the first
  process of a server finds that no process that wrote there is alive and that their parent
  (gunicorn's master, Apache's parent process) was not its own;
- ``opus_processes`` is a ``livesum`` gauge, 1 per process; the file of a process that is gone is
  removed by ``mark_process_dead``, from gunicorn's ``child_exit`` hook (gunicorn.conf.py) or, for
  the servers without such a hook, by the next scrape.

prometheus_client chooses multiprocess mode for a whole process (``values.ValueClass`` and
``PROMETHEUS_MULTIPROC_DIR``), so a process counts for one directory at a time: ``for_directory``
sets both, and closes the files of the directory the process counted for before, whose
``ServerMetrics`` then counts nothing.  A server process has one directory for its life; only
in-process test servers, each with a directory of its own, switch.

Managers and routes call ``count(settings, name, **labels)``; ``opus.server.metrics`` serves the
totals in the Prometheus text format.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from pathlib import Path
from types import TracebackType

from prometheus_client import Counter, Gauge, Histogram, values
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from opus.settings import Settings

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the request duration histogram; blocking WAITs fill the last ones.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Outcomes of a wrapper's report at /handler/job_event: each is shown, at 0 until it happens.
CALLBACK_OUTCOMES = ("applied", "already", "ignored", "refused", "invalid")
#: The parent process of the server that last started using the directory (see the docstring).
SERVER_FILE = "server"
ENV = "PROMETHEUS_MULTIPROC_DIR"
_FILE_PID = re.compile(r"_(\d+)\.db$")

#: The counters that ``count`` accepts: name as exposed -> (help, label names).
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "opus_callbacks_total": ("Job wrapper reports received at /handler/job_event, by outcome.", ("outcome",)),
    "opus_slurm_end_hints_total": ("SLURM epilog hints received at /handler/job_event, by outcome.",
                                   ("outcome",)),
    "opus_manager_errors_total": ("Jobs an execution manager could not start or submit.", ("manager",)),
    "opus_waits_answered_at_once_total": ("WAITs answered at once because their process held its most "
                                          "(MAX_HELD_WAITS).", ()),
}


class ServerMetrics:
    """This process's counters of one server (one metrics directory), and their totals."""

    def __init__(self, directory: Path):
        """Made by ``for_directory``, once the process counts into ``directory``."""
        self.directory = directory
        self._value_class = values.ValueClass  # whose files are this directory's
        self._lock = threading.Lock()  # no value made or written once closed (its file would be reopened)
        self.closed = False
        self.processes = Gauge("opus_processes", "Server processes of this host whose counters are "
                               "in the totals.", multiprocess_mode="livesum", registry=None)
        self.requests = Counter("opus_http_requests_total", "HTTP requests answered, by method and status.",
                                ("method", "status"), registry=None)
        self.duration = Histogram("opus_http_request_duration_seconds", "Time to answer an HTTP request "
                                  "(blocking WAITs included; the streaming of result files excluded).",
                                  buckets=BUCKETS, registry=None)
        self.counters = {name: Counter(name, text, labels, registry=None)
                         for name, (text, labels) in COUNTERS.items()}
        self._by_method_status: dict[tuple[str, str], Counter] = {}
        self._all: list[MetricWrapperBase] = [self.processes, self.requests, self.duration,
                                              *self.counters.values()]
        self.processes.set(1)
        for outcome in CALLBACK_OUTCOMES:
            self.declare("opus_callbacks_total", outcome=outcome)

    # ---- counting (any thread) ---------------------------------------------------------------------
    def observe_request(self, method: str, status: str, seconds: float) -> None:
        with self._lock:
            if not self.closed:
                counter = self._by_method_status.get((method, status))
                if counter is None:  # labels() validates and locks: once per method and status
                    if len(self._by_method_status) >= 1024:  # a bounded cache, whatever the statuses
                        self._by_method_status.clear()
                    counter = self._by_method_status[(method, status)] = self.requests.labels(method, status)
                counter.inc()
                self.duration.observe(seconds)

    def count(self, name: str, **labels: str) -> None:
        """Add one to the counter ``name`` (one of ``COUNTERS``) with ``labels``."""
        with self._lock:
            if not self.closed:
                counter = self.counters[name]
                (counter.labels(**labels) if labels else counter).inc()

    def declare(self, name: str, **labels: str) -> None:
        """Show the sample of ``name`` with ``labels`` from now on, at 0 until counted."""
        with self._lock:
            if not self.closed:
                self.counters[name].labels(**labels)

    def close(self) -> None:
        """Stop counting and close this process's files (the process counts for another directory)."""
        with self._lock:
            self.closed = True
            self._value_class.close_all_files()

    # ---- the totals ----------------------------------------------------------------------------------
    def collect(self) -> list[Metric]:
        """The families of every process of the server, in declaration order, each present."""
        forget_dead_processes(self.directory)
        # prometheus_client leaves MultiProcessCollector, mark_process_dead and MultiProcessValue untyped.
        collector = MultiProcessCollector(None, str(self.directory))  # type: ignore[no-untyped-call]
        families: list[Metric] = collector.collect()  # type: ignore[no-untyped-call]
        found = {family.name: family for family in families}
        # A family no process has counted yet is still declared (HELP and TYPE, no sample).
        return [found.get(family.name, family) for metric in self._all for family in metric.describe()]


# ---- the directory ---------------------------------------------------------------------------------
class _DirectoryLock:
    """An exclusive flock on ``directory/.lock``: one process at a time starts using the directory."""

    def __init__(self, directory: Path):
        self.path = directory / ".lock"

    def __enter__(self) -> _DirectoryLock:
        self.file = open(self.path, "a+")
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.file.close()  # releases the lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _writers(directory: Path, pattern: str = "*.db") -> set[int]:
    """The pids that files matching ``pattern`` belong to."""
    pids = set()
    for path in directory.glob(pattern):
        match = _FILE_PID.search(path.name)
        if match:
            pids.add(int(match.group(1)))
    return pids


def _clear_if_a_new_server(directory: Path) -> None:
    """Remove the files of a server that is gone (under the directory lock)."""
    parent = str(os.getppid())
    server_file = directory / SERVER_FILE
    try:
        previous = server_file.read_text().strip()
    except FileNotFoundError:
        previous = ""
    if previous == parent:
        return  # a worker replaced by its master: the counts go on
    others = _writers(directory) - {os.getpid()}
    if not any(_alive(pid) for pid in others):
        for path in directory.glob("*.db"):
            path.unlink(missing_ok=True)
    server_file.write_text(parent)


def forget_dead_processes(directory: Path) -> None:
    """Remove the live gauges of the processes that are gone (their counters stay)."""
    for pid in _writers(directory, "gauge_live*.db"):
        if not _alive(pid):
            process_exited(directory, pid)


def process_exited(directory: Path, pid: int) -> None:
    """``pid`` is gone: prometheus_client's bookkeeping (gunicorn.conf.py's ``child_exit``)."""
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]  # untyped in prometheus_client


def directory_of(settings: Settings) -> Path:
    return settings.run_dir / "metrics"


# ---- the process-wide registry -------------------------------------------------------------------------
_current: ServerMetrics | None = None
_registry_lock = threading.Lock()


def for_directory(directory: Path) -> ServerMetrics:
    """This process's counters for the metrics directory ``directory`` (see the module docstring)."""
    global _current
    current = _current
    if current is not None and current.directory == directory:
        return current
    with _registry_lock:
        if _current is not None and _current.directory == directory:
            return _current
        if _current is not None:
            _current.close()
        directory.mkdir(parents=True, exist_ok=True)
        with _DirectoryLock(directory):
            _clear_if_a_new_server(directory)
            os.environ[ENV] = str(directory)  # read by prometheus_client when it opens a file
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]  # (untyped)
            _current = ServerMetrics(directory)  # its files are made here, under the lock
        return _current


def for_settings(settings: Settings) -> ServerMetrics:
    return for_directory(directory_of(settings))


def count(settings: Settings, name: str, **labels: str) -> None:
    """Add one to the counter ``name`` with ``labels`` (e.g. from a manager's error path)."""
    try:
        for_settings(settings).count(name, **labels)
    except Exception:  # counting must never break what is counted
        log.exception("metrics: cannot count %s", name)
