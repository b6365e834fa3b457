"""Shared pieces of the OPUS benchmarks: the HTTP client, percentiles, error counting, /proc readings."""

from __future__ import annotations

import collections
import http.client
import math
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
JOBNAME = "dummy"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FINAL_PHASES = {"COMPLETED", "ERROR", "ABORTED", "ARCHIVED"}
PHASE_RE = re.compile(rb"<uws:phase>([A-Z]+)</uws:phase>")
JOBREF_RE = re.compile(rb'<uws:jobref id="([^"]+)"')

HTTP_TIMEOUT = 60.0      # seconds, every ordinary request

CLIENT_APPROACH = ("raw http.client keep-alive connections, one per client thread, opened before the clock "
                   "starts (requests.Session costs ~6x the client CPU per POST: ~1.9 ms vs ~0.3 ms)")


class BenchError(Exception):
    """The benchmark could not be carried out (the server failed, an answer was wrong...)."""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---- errors: every unexpected status or exception is counted --------------------------------------------
class ErrorLog:
    """Counts every unexpected answer or exception of the run; any of them fails the run."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}

    def add(self, key: str, example: str = "") -> None:
        with self._lock:
            self.counts[key] += 1
            self.examples.setdefault(key, example[:300])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        return {"total": self.total, "by_kind": dict(self.counts), "examples": dict(self.examples)}


ERRORS = ErrorLog()


def _route(path: str) -> str:
    """The path with job ids and query strings folded, for counting errors by kind."""
    path = path.split("?", 1)[0]
    return re.sub(r"/[0-9a-f]{16}(?=/|$)", "/<id>", path)


# ---- statistics -------------------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 3), "p90_ms": round(percentile(ms, 90), 3),
            "p99_ms": round(percentile(ms, 99), 3), "min_ms": round(min(ms), 3), "max_ms": round(max(ms), 3),
            "mean_ms": round(sum(ms) / len(ms), 3)}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def raise_nofile(wanted: int) -> int:
    """Raise this process's soft limit of open files towards ``wanted`` (up to the hard limit)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):
        return -1


# ---- the client -------------------------------------------------------------------------------------------
class Client:
    """One keep-alive HTTP/1.1 connection to the server (http.client: cheap on the client CPU)."""

    def __init__(self, port: int, timeout: float = HTTP_TIMEOUT):
        self.port = port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            ERRORS.add(f"{method} {_route(path)}: {type(exc).__name__}", str(exc))
            raise BenchError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if resp.will_close:
            self.conn.close()  # the next request reconnects
        return resp.status, resp, data

    def expect(self, status: int, method: str, path: str, body: str | None = None,
               headers: dict | None = None) -> tuple[http.client.HTTPResponse, bytes]:
        got, resp, data = self.request(method, path, body, headers)
        if got != status:
            ERRORS.add(f"{method} {_route(path)}: HTTP {got} (expected {status})", repr(data[:300]))
            raise BenchError(f"{method} {path}: expected {status}, got {got}: {data[:300]!r}")
        return resp, data

    def close(self) -> None:
        self.conn.close()


def job_path(location: str) -> str:
    """The path of a job from the absolute Location of a 303."""
    path = urlsplit(location).path
    if not path.startswith(f"/rest/{JOBNAME}/"):
        ERRORS.add("POST /rest/<job>: unexpected Location", location)
        raise BenchError(f"unexpected Location {location!r}")
    return path


def create_job(client: Client, text: str) -> str:
    resp, _ = client.expect(303, "POST", f"/rest/{JOBNAME}", urlencode({"text": text}), FORM)
    return job_path(resp.getheader("Location") or "")


# ---- /proc: CPU, memory, threads --------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid: int) -> float:
    """utime + stime of one process, seconds (0 if it is gone or /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, ValueError, IndexError):
        return 0.0


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process, from one pass over /proc."""
    out: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    out[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return out


def children(pid: int) -> list[int]:
    return [p for p, parent in _parents().items() if parent == pid]


def descendants(pid: int) -> list[int]:
    """Children, grandchildren...: the workers, and their SQLite writer and job launcher processes
    (whose CPU is the server's too)."""
    parents = _parents()
    out, todo = [], [pid]
    while todo:
        of = todo.pop()
        found = [p for p, parent in parents.items() if parent == of]
        out += found
        todo += found
    return out


def proc_status(pid: int, *fields: str) -> dict[str, int]:
    """Numeric fields of /proc/<pid>/status (VmRSS, VmHWM in kB; Threads), missing ones left out."""
    out = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                name, _, rest = line.partition(b":")
                key = name.decode()
                if key in fields:
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


class CpuMeter:
    """CPU seconds used by this client process and by the server's processes over a span: the gunicorn
    master, its workers and their own processes (SQLite writers, the job launcher; not the jobs,
    which are sessions of their own but still the launcher's children, so counted when running)."""

    def __init__(self, server_pid: int | None):
        self.server_pid = server_pid

    def _server(self) -> float:
        if self.server_pid is None:
            return 0.0
        return sum(proc_cpu(p) for p in [self.server_pid, *descendants(self.server_pid)])

    def __enter__(self):
        self.s0 = self._server()  # the /proc scan stays out of the timed span
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.client = time.process_time() - self.c0
        self.server = self._server() - self.s0
        return False

    def as_dict(self) -> dict:
        wall = max(self.wall, 1e-9)
        return {"wall_s": round(self.wall, 3), "client_cpu_s": round(self.client, 3),
                "client_cpu_pct": round(100 * self.client / wall, 1), "server_cpu_s": round(self.server, 3),
                "server_cpu_pct": round(100 * self.server / wall, 1)}


class RssSampler:
    """Samples VmRSS of the given processes every ``interval`` s in a thread; the peak of each.

    Sampling (rather than VmHWM, the process's all-time high-water mark) sees the peak of this
    span even when an earlier request had pushed the worker higher; VmHWM is read too, before and
    after, and reported: a rise of it during the span is a peak the sampler could not miss.
    """

    def __init__(self, pids: list[int], interval: float = 0.002):
        self.pids = pids
        self.interval = interval
        self.before = {p: proc_status(p, "VmRSS", "VmHWM") for p in pids}
        self.peak = {p: self.before[p].get("VmRSS", 0) for p in pids}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.pids:
                rss = proc_status(p, "VmRSS").get("VmRSS", 0)
                if rss > self.peak[p]:
                    self.peak[p] = rss
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self.after = {p: proc_status(p, "VmRSS", "VmHWM") for p in self.pids}
        return False


# ---- the machine -------------------------------------------------------------------------------------------
def cpu_times() -> list[int] | None:
    """The aggregate 'cpu' line of /proc/stat (user nice system idle iowait irq softirq steal ...)."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def machine_use(before: list[int] | None, after: list[int] | None) -> dict:
    """Whole-machine CPU busy and steal percentages between two /proc/stat samples."""
    if not before or not after or len(before) < 8 or len(after) < 8:
        return {}
    delta = [a - b for a, b in zip(after, before)]
    total = sum(delta[:8]) or 1
    idle = delta[3] + delta[4]
    return {"machine_busy_pct": round(100 * (total - idle) / total, 1), "steal_pct": round(100 * delta[7] / total, 1)}


def loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
