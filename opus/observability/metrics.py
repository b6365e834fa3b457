"""Operational counters of one OPUS server, totalled across its processes.

Each process counts in memory (a lock and a few dict updates per event: no I/O on the request
path).  A daemon thread writes the counters of a process, when they changed, at most once a second
to ``DATA_DIR/run/metrics/<pid>.json`` (write + rename, so readers never see half a file).
``collect`` sums the files of every process that uses the same ``DATA_DIR`` on this host:
gunicorn workers, mod_wsgi daemon processes.  The files of processes that are gone are folded into
``retired.json`` and removed, so the totals never go down when a worker is replaced; they are
totals since the directory was created (remove it to start again from zero).  A count is at most
one second late in the total of another process.

Managers and routes call ``count(settings, name, **labels)``.  ``opus.server.metrics`` renders
the totals in the Prometheus text format.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import logging
import os
import secrets
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the request duration histogram; blocking WAITs fill the last ones.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
FLUSH_INTERVAL = 1.0
REQUESTS = "opus_http_requests_total"
RETIRED = "retired.json"


class ProcessMetrics:
    """The counters of this process for one data directory."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one writer at a time: the file never goes back in time
        self._reset()

    def _reset(self) -> None:
        self.pid = os.getpid()
        self.instance = secrets.token_hex(8)
        self.counters: dict[tuple[str, tuple], float] = {}  # (name, ((label, value), ...)) -> value
        self.requests: dict[tuple[str, str], int] = {}      # (method, status) -> count
        self.buckets = [0] * (len(BUCKETS) + 1)              # per bucket (not cumulative); last: +Inf
        self.duration_sum = 0.0
        self.dirty = True
        self.written = False

    # ---- counting (any thread) ---------------------------------------------------------------------
    def observe_request(self, method: str, status: str, seconds: float) -> None:
        i = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            key = (method, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            self.buckets[i] += 1
            self.duration_sum += seconds
            self.dirty = True

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + amount
            self.dirty = True

    # ---- the shared file ---------------------------------------------------------------------------
    def snapshot(self) -> dict:
        with self._lock:
            counters = [[name, dict(labels), value] for (name, labels), value in self.counters.items()]
            counters += [[REQUESTS, {"method": m, "status": s}, n] for (m, s), n in self.requests.items()]
            self.dirty = False
            return {"pid": self.pid, "instance": self.instance, "counters": counters,
                    "histogram": {"bounds": list(BUCKETS), "buckets": list(self.buckets),
                                  "sum": self.duration_sum}}

    def flush(self, force: bool = False) -> None:
        """Write this process's file if anything changed (or ``force``)."""
        if not (self.dirty or force):
            return
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.written:
            # A file left under our pid by an earlier process (pid reuse): keep its counts.
            with _directory_lock(self.directory):
                path = self.directory / f"{self.pid}.json"
                old = _read(path)
                if old is not None and old.get("instance") != self.instance:
                    _retire(self.directory, [old])
                _write(path, self.snapshot())
            self.written = True
            return
        _write(self.directory / f"{self.pid}.json", self.snapshot())


class Totals:
    """Counters and the request histogram summed over processes."""

    def __init__(self):
        self.counters: dict[tuple[str, tuple], float] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.duration_sum = 0.0
        self.processes = 0

    def add(self, data: dict) -> None:
        for name, labels, value in data.get("counters", []):
            key = (name, tuple(sorted(labels.items())))
            self.counters[key] = self.counters.get(key, 0) + value
        hist = data.get("histogram") or {}
        if hist.get("bounds") == list(BUCKETS):  # written by another version of OPUS otherwise: skipped
            self.buckets = [a + b for a, b in zip(self.buckets, hist["buckets"])]
            self.duration_sum += hist["sum"]

    def as_file(self) -> dict:
        return {"instance": "retired",
                "counters": [[name, dict(labels), value] for (name, labels), value in self.counters.items()],
                "histogram": {"bounds": list(BUCKETS), "buckets": self.buckets, "sum": self.duration_sum}}


# ---- files -----------------------------------------------------------------------------------------
class _directory_lock:
    def __init__(self, directory: Path):
        self.path = directory / ".lock"

    def __enter__(self):
        self.file = open(self.path, "a+")
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.file.close()  # releases the lock


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("metrics: cannot read %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)


def _retire(directory: Path, files: list[dict]) -> None:
    """Fold the counts of processes that are gone into retired.json (under the directory lock)."""
    totals = Totals()
    old = _read(directory / RETIRED)
    if old is not None:
        totals.add(old)
    for data in files:
        totals.add(data)
    _write(directory / RETIRED, totals.as_file())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def collect(own: ProcessMetrics) -> Totals:
    """The totals of every process of this data directory (``own`` written first, so it is current)."""
    own.flush(force=True)
    directory = own.directory
    totals = Totals()
    with _directory_lock(directory):
        gone = []
        for path in sorted(directory.glob("*.json")):
            if path.name == RETIRED:
                continue
            data = _read(path)
            try:
                pid = int(path.stem)
            except ValueError:
                continue
            if data is None:
                continue
            if _alive(pid):
                totals.add(data)
                totals.processes += 1
            else:
                gone.append((path, data))
        if gone:
            _retire(directory, [data for _, data in gone])
            for path, _ in gone:
                path.unlink(missing_ok=True)
        retired = _read(directory / RETIRED)
        if retired is not None:
            totals.add(retired)
    return totals


# ---- the process-wide registry -------------------------------------------------------------------------
_instances: dict[str, ProcessMetrics] = {}
_registry_lock = threading.Lock()
_flusher_pid: int | None = None


def for_directory(directory: Path) -> ProcessMetrics:
    """This process's counters for the metrics directory ``directory`` (made once)."""
    key = str(directory)
    metrics = _instances.get(key)
    if metrics is None:
        with _registry_lock:
            metrics = _instances.setdefault(key, ProcessMetrics(Path(directory)))
            _start_flusher()
    return metrics


def for_settings(settings) -> ProcessMetrics:
    return for_directory(settings.run_dir / "metrics")


def count(settings, name: str, **labels: str) -> None:
    """Add one to the counter ``name`` with ``labels`` (e.g. from a manager's error path)."""
    try:
        for_settings(settings).count(name, **labels)
    except Exception:  # counting must never break what is counted
        log.exception("metrics: cannot count %s", name)


def _start_flusher() -> None:
    global _flusher_pid
    if _flusher_pid == os.getpid():
        return
    _flusher_pid = os.getpid()
    threading.Thread(target=_flush_loop, name="opus-metrics", daemon=True).start()


def _flush_loop() -> None:
    stop = threading.Event()
    while not stop.wait(FLUSH_INTERVAL):
        for metrics in list(_instances.values()):
            try:
                metrics.flush()
            except Exception as exc:
                log.warning("metrics: cannot write %s: %s", metrics.directory, exc)


def _after_fork_in_child() -> None:
    # A forked process counts for itself from zero; its parent's counts stay the parent's.
    global _flusher_pid, _registry_lock
    _registry_lock = threading.Lock()
    _flusher_pid = None
    for metrics in _instances.values():
        metrics._lock = threading.Lock()
        metrics._flush_lock = threading.Lock()
        metrics._reset()
    if _instances:
        _start_flusher()


os.register_at_fork(after_in_child=_after_fork_in_child)
