#!/usr/bin/env python3
"""OPUS benchmark on SLURM: the real server (gunicorn, MANAGER = "slurm") against the real cluster.

    .venv/bin/python bench/slurm.py [--json FILE] [--quick] [--jobs N] [--keep]

Needs a running SLURM cluster on this machine (``bash scripts/slurm-cluster.sh status``) whose
EpilogSlurmctld is OPUS's epilog and whose jobcomp log is /var/log/slurm/jobcomp.log.  One run
creates ``/var/tmp/opus-bench-<random>`` (mode 0755, so that slurmctld's epilog can read each job's
``callback_url``) holding DATA_DIR and the settings file, runs ``opus init``, starts gunicorn
(2 workers) on a free 127.0.0.1 port with the server start-up of bench/run.py, and measures

1. POST PHASE=RUN latency (``dummy`` jobs created PENDING first; only the RUN POST is timed): it
   must not wait for sbatch;
2. the end of a job's script -> COMPLETED seen by a client holding ``WAIT=30&PHASE=EXECUTING``
   (``sleep`` jobs, seconds=1; the script's end is the job's endTime, which the wrapper takes when
   the script has finished; same machine, same clock);
3. wall time of K ``sleep 1`` jobs through OPUS vs the same K through raw ``sbatch --wrap``
   (waiting until ``squeue`` no longer lists them, polled every 0.2 s), and the same for one job.

Where the time goes is read afterwards from slurmctld's log (submit/start/end of each SLURM job,
millisecond time stamps), the jobcomp log (which SLURM job ran which OPUS job), the server's log
(INFO: when each report was applied) and gunicorn's access log (server-side time of each request).

Everything is cleaned up at the end, also on errors and Ctrl-C: this run's SLURM jobs that are left
(OPUS's, recognised by their working directory under this run's DATA_DIR, and the raw ones, by
their name ``opus-bench-raw-<random>``) are cancelled, gunicorn is stopped, the directory removed.
Other users' SLURM jobs are never touched.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode, urlsplit


def _load_run_module():
    """bench/run.py, imported under its own name (bench/ is not a package)."""
    name = "opus_bench_run"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


R = _load_run_module()
BenchError, Client, log, percentile = R.BenchError, R.Client, R.log, R.percentile
HOST, FORM, REPO = R.HOST, R.FORM, R.REPO

JOBCOMP_LOG = "/var/log/slurm/jobcomp.log"
SLURMCTLD_LOG = "/var/log/slurm/slurmctld.log"
DATA_ROOT = "/var/tmp"
WAIT_SECONDS = 30                      # the WAIT= of every blocking GET
JOB_DEADLINE = 180.0                   # one job must reach a final phase within this
IDLE_TIMEOUT = 60.0                    # our SLURM jobs must have left squeue within this between steps
SQUEUE_POLL = 0.2                      # the raw baseline's polling interval
FINAL_PHASES = {"COMPLETED", "ERROR", "ABORTED", "ARCHIVED"}
PHASE_RE = re.compile(rb"<uws:phase>([A-Z]+)</uws:phase>")
START_RE = re.compile(rb"<uws:startTime>([^<]+)</uws:startTime>")
END_RE = re.compile(rb"<uws:endTime>([^<]+)</uws:endTime>")
ERROR_RE = re.compile(rb"<uws:message>([^<]*)</uws:message>")

FULL = dict(run_jobs=100, wait_jobs=30, batch_jobs=20, single_reps=3, warmup=2)
QUICK = dict(run_jobs=10, wait_jobs=4, batch_jobs=4, single_reps=1, warmup=1)

TARGETS = {"post_run_p99_ms": 20.0, "end_to_seen_p50_ms": 300.0, "batch_ratio": 1.2}


# ---- small helpers ------------------------------------------------------------------------------------
def summary_ms(seconds: list[float]) -> dict | None:
    return R.summary_ms(seconds) if seconds else None


def median(values: list[float]) -> float | None:
    return percentile(values, 50) if values else None


def parse_utc(text: bytes | str) -> float:
    """A UWS instant (``2026-11-27T06:09:11.486Z``) -> epoch seconds."""
    if isinstance(text, bytes):
        text = text.decode()
    return datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def parse_local(text: str, fmt: str) -> float:
    """A local-time stamp (slurmctld's log, Python's asctime) -> epoch seconds."""
    return datetime.strptime(text, fmt).timestamp()


def job_path_of(location: str, jobname: str) -> str:
    path = urlsplit(location).path
    if not path.startswith(f"/rest/{jobname}/"):
        raise BenchError(f"unexpected Location {location!r}")
    return path


def create(client: Client, jobname: str, fields: dict) -> tuple[str, float]:
    """POST a new job; returns (its path, client epoch time just before the POST)."""
    t = time.time()
    resp, _ = client.expect(303, "POST", f"/rest/{jobname}", urlencode(fields), FORM)
    return job_path_of(resp.getheader("Location") or "", jobname), t


class Chase:
    """Follow one job through blocking WAITs until it is final; remember when each phase was seen."""

    def __init__(self, path: str):
        self.path = path
        self.seen: dict[str, float] = {}      # phase -> client epoch time of the answer that first said it
        self.phase: str | None = None
        self.body = b""
        self.final_sent = self.final_got = None  # the request whose answer was the final phase
        self.final_asked = None                  # the PHASE= that request waited on

    def run(self, client: Client, deadline: float) -> "Chase":
        for _ in range(1000):  # bounded: each turn ends on a phase change or after WAIT s
            if time.monotonic() > deadline:
                raise BenchError(f"{self.path} was still {self.phase} at the deadline")
            url = self.path if self.phase is None else f"{self.path}?WAIT={WAIT_SECONDS}&PHASE={self.phase}"
            sent = time.time()
            _, body = client.expect(200, "GET", url)
            got = time.time()
            m = PHASE_RE.search(body)
            if not m:
                raise BenchError(f"GET {url}: no phase in {body[:200]!r}")
            asked, self.phase, self.body = self.phase, m.group(1).decode(), body
            self.seen.setdefault(self.phase, got)
            if self.phase in FINAL_PHASES:
                self.final_sent, self.final_got, self.final_asked = sent, got, asked
                return self
        raise BenchError(f"{self.path}: too many WAIT turns")

    def times(self) -> tuple[float | None, float | None]:
        s, e = START_RE.search(self.body), END_RE.search(self.body)
        return (parse_utc(s.group(1)) if s else None, parse_utc(e.group(1)) if e else None)

    def require_completed(self) -> None:
        if self.phase != "COMPLETED":
            m = ERROR_RE.search(self.body)
            raise BenchError(f"{self.path} ended {self.phase}, not COMPLETED"
                             + (f": {m.group(1).decode(errors='replace')}" if m else ""))


# ---- SLURM -------------------------------------------------------------------------------------------------
def slurm(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(args)} did not answer within {timeout:.0f} s") from None
    except OSError as exc:
        raise BenchError(f"{args[0]} cannot be run: {exc}") from None


def cluster_check() -> dict:
    """The cluster must be up, with OPUS's epilog and the jobcomp log; returns what was found."""
    if not shutil.which("sinfo"):
        raise BenchError("no SLURM commands: start the cluster "
                         "(bash scripts/slurm-cluster.sh start, as root)")
    done = slurm("sinfo", "-h", "-o", "%T %c")
    states = done.stdout.split()
    if done.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc")) for s in states[0::2]):
        raise BenchError(f"no usable SLURM node: {done.stdout.strip()} {done.stderr.strip()}")
    config = slurm("scontrol", "show", "config").stdout
    found = {}
    for key in ("EpilogSlurmctld", "JobCompType", "JobCompLoc", "SchedulerParameters", "MinJobAge",
                "SlurmctldLogFile", "SLURM_VERSION"):
        m = re.search(rf"^{key}\s*=\s*(.*)$", config, re.MULTILINE)
        found[key] = m.group(1).strip() if m else None
    if not found["EpilogSlurmctld"] or found["EpilogSlurmctld"] == "(null)":
        raise BenchError("the cluster has no EpilogSlurmctld (OPUS's epilog is expected)")
    if found["JobCompLoc"] != JOBCOMP_LOG:
        raise BenchError(f"the cluster's JobCompLoc is {found['JobCompLoc']}, not {JOBCOMP_LOG}")
    try:
        found["cpus"] = int(states[1])
    except (IndexError, ValueError):
        found["cpus"] = None
    return found


class Ours:
    """Which SLURM jobs belong to this run: OPUS's (working directory under our DATA_DIR), raw ones (name)."""

    def __init__(self, data_dir: Path, raw_name: str):
        self.prefix = str(data_dir) + "/"
        self.raw_name = raw_name

    def queue(self) -> tuple[list[str], list[str]]:
        """(our SLURM ids still in squeue, ids of other users' or other runs' jobs)."""
        done = slurm("squeue", "-h", "-a", "-o", "%i|%j|%Z")
        if done.returncode != 0:
            raise BenchError(f"squeue failed: {done.stderr.strip()}")
        ours, others = [], []
        for line in done.stdout.splitlines():
            parts = line.strip().split("|", 2)
            if len(parts) != 3:
                continue
            mine = parts[1] == self.raw_name or (parts[2] + "/").startswith(self.prefix)
            (ours if mine else others).append(parts[0])
        return ours, others

    def wait_gone(self, timeout: float = IDLE_TIMEOUT) -> float:
        """Wait until squeue shows none of our jobs (COMPLETING included); returns the seconds waited."""
        t0 = time.monotonic()
        while True:
            ours, _ = self.queue()
            if not ours:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise BenchError(f"our SLURM jobs {ours[:10]} were still in squeue after {timeout:.0f} s")
            time.sleep(0.1)

    def cancel(self) -> list[str]:
        ours, _ = self.queue()
        if ours:
            slurm("scancel", *ours)
        return ours


def schedstat(pids: list[int]) -> dict[str, tuple[int, int]]:
    """"pid/tid" -> (ns on a CPU, ns waiting on a run queue) of every thread of ``pids`` (schedstat)."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    run, wait = f.read().split()[:2]
                out[f"{pid}/{tid}"] = (int(run), int(wait))
            except (OSError, ValueError):
                continue
    return out


def cpu_pressure() -> float | None:
    """Microseconds during which some runnable task waited for a CPU, since boot (/proc/pressure/cpu)."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(re.search(r"total=(\d+)", f.readline()).group(1))
    except (OSError, AttributeError, ValueError):
        return None


def cpu_pressure_avg() -> dict:
    """The share of the last 10 s and 60 s during which some task waited for a CPU, % (/proc/pressure/cpu)."""
    try:
        with open("/proc/pressure/cpu") as f:
            line = f.readline()
        return {k: float(v) for k, v in re.findall(r"(avg10|avg60)=([\d.]+)", line)}
    except (OSError, ValueError):
        return {}


class LogTail:
    """The part of a log file written since this object was made."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.offset = self.path.stat().st_size
        except OSError:
            self.offset = 0

    def read(self) -> str:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(self.offset if size >= self.offset else 0)  # rotated (copytruncate): from the start
                return f.read().decode(errors="replace")
        except OSError:
            return ""


_CTLD_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\] (.*)$")


def slurmctld_events(text: str) -> dict[str, dict]:
    """SLURM id -> {submit, start, end} (epoch seconds) from slurmctld's log (LogTimeFormat=iso8601_ms)."""
    out: dict[str, dict] = {}
    for line in text.splitlines():
        m = _CTLD_LINE.match(line)
        if not m:
            continue
        msg = m.group(2)
        for kind, pattern in (("submit", r"_slurm_rpc_submit_batch_job: JobId=(\d+) "),
                              ("start", r"sched: Allocate JobId=(\d+) "),
                              ("start", r"_start_job: Started JobId=(\d+) "),
                              ("end", r"_job_complete: JobId=(\d+) WEXITSTATUS")):
            e = re.search(pattern, msg)
            if e:
                when = parse_local(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
                out.setdefault(e.group(1), {}).setdefault(kind, when)
    return out


def jobcomp_workdirs(text: str, jobs_dir: Path) -> dict[str, str]:
    """OPUS job id -> SLURM id, from the jobcomp lines whose WorkDir is one of our job directories."""
    out = {}
    prefix = str(jobs_dir) + "/"
    for line in text.splitlines():
        jid = re.match(r"^JobId=(\d+)\s", line)
        wd = re.search(r"\sWorkDir=(.*?) ReservationName=", line)
        if jid and wd and wd.group(1).startswith(prefix):
            out[wd.group(1)[len(prefix):].split("/")[0]] = jid.group(1)
    return out


_SERVER_LOG = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \d+ INFO opus\S*: job (\w+): "
                         r"(?:report (\w+) (\w+)|submitted as SLURM job (\d+))")


def server_events(text: str) -> dict[str, dict]:
    """OPUS job id -> {submitted (sbatch returned), applied_<PHASE>} from the server's INFO log."""
    out: dict[str, dict] = {}
    for line in text.splitlines():
        m = _SERVER_LOG.match(line)
        if not m:
            continue
        t = parse_local(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        rec = out.setdefault(m.group(2), {})
        if m.group(5):
            rec.setdefault("submitted", t)
            rec["slurm_id"] = m.group(5)
        elif m.group(4) == "applied":
            rec.setdefault(f"applied_{m.group(3)}", t)
    return out


_ACCESS = re.compile(r'"(\w+) (\S+) HTTP/[\d.]+" (\d+) (\d+) <(\d+)>$')
_LEADER = re.compile(r"^\S+ \S+ (\d+) INFO opus\S*: process \d+ now dispatches")


def access_times(text: str) -> list[tuple[str, str, int, float, str]]:
    """(method, path, status, server-side seconds, worker pid) from the access log
    ('"%(r)s" %(s)s %(D)s %(p)s')."""
    out = []
    for line in text.splitlines():
        m = _ACCESS.search(line.strip())
        if m:
            out.append((m.group(1), m.group(2), int(m.group(3)), int(m.group(4)) / 1e6, m.group(5)))
    return out


def dispatcher_pids(text: str) -> set[str]:
    """The workers that led the SLURM dispatcher (ran sbatch), from the server's INFO log."""
    return {m.group(1) for m in map(_LEADER.match, text.splitlines()) if m}


# ---- the server --------------------------------------------------------------------------------------------
BENCH_CONF = '''# Written by bench/slurm.py: the repository's gunicorn.conf.py, plus two logs for the bench:
# each worker's slow garbage collections (generation >= 1 or >= 2 ms), and for every request the
# CPU time and run-queue wait of the thread that served it (from /proc/self/task/<tid>/schedstat).
import os as _bench_os
import threading as _bench_threading
import time as _bench_time

exec(compile(open(@CONF@).read(), @CONF@, "exec"))
_bench_hooks = {name: globals().get(name) for name in ("post_fork", "pre_request", "post_request")}
_bench_local = _bench_threading.local()
_bench_logs = {}


def _bench_log(kind):
    key = (kind, _bench_os.getpid())
    if key not in _bench_logs:
        _bench_logs[key] = open(@DIR@ + "/%s.%d.log" % key, "a", buffering=1)
    return _bench_logs[key]


def _bench_schedstat():
    try:
        with open("/proc/self/task/%d/schedstat" % _bench_threading.get_native_id()) as f:
            run, wait = f.read().split()[:2]
        return int(run), int(wait)
    except (OSError, ValueError):
        return 0, 0


def post_fork(server, worker):
    if _bench_hooks["post_fork"] is not None:
        _bench_hooks["post_fork"](server, worker)
    import gc

    began = [0.0, 0.0]

    def _gc(phase, info):
        if phase == "start":
            began[0], began[1] = _bench_time.perf_counter(), _bench_time.time()
            return
        took = _bench_time.perf_counter() - began[0]
        if info["generation"] >= 1 or took >= 0.002:
            _bench_log("gc").write("%.4f %d %.3f\\n" % (began[1], info["generation"], took * 1000))

    gc.callbacks.append(_gc)


def pre_request(worker, req):
    if _bench_hooks["pre_request"] is not None:
        _bench_hooks["pre_request"](worker, req)
    _bench_local.start = (_bench_time.time(), _bench_time.perf_counter(), _bench_time.thread_time(),
                          *_bench_schedstat())


def post_request(worker, req, environ, resp):
    if _bench_hooks["post_request"] is not None:
        _bench_hooks["post_request"](worker, req, environ, resp)
    start = getattr(_bench_local, "start", None)
    if start is None:
        return
    run, wait = _bench_schedstat()
    _bench_log("requests").write("%.4f %s %s %.3f %.3f %.3f %d\\n" % (
        start[0], req.method, req.path, (_bench_time.perf_counter() - start[1]) * 1000,
        (_bench_time.thread_time() - start[2]) * 1000, (wait - start[4]) / 1e6,
        _bench_threading.get_native_id()))
'''


class SlurmServer(R.Server):
    """bench/run.py's Server with MANAGER = "slurm", an INFO log, a timed access log and a GC log."""

    def __init__(self, workdir: Path, workers: int):
        super().__init__(workdir, None, workers)
        self.access_log = workdir / "access.log"
        self.diag_dir = workdir / "diag"
        self.gunicorn_conf = workdir / "gunicorn-bench.conf.py"

    def write_settings(self) -> None:
        super().write_settings()
        with open(self.settings_file, "a") as f:
            f.write("# bench/slurm.py\n"
                    'MANAGER = "slurm"\n'
                    f"SLURM_JOBCOMP_LOG = {JOBCOMP_LOG!r}\n"
                    'LOG_LEVEL = "INFO"  # when each job was submitted and each report applied\n')

    def gc_pauses(self) -> list[tuple[float, int, float, str]]:
        """(epoch start, generation, ms, worker pid) of every logged collection."""
        out = []
        for f in sorted(self.diag_dir.glob("gc.*.log")):
            pid = f.name.split(".")[1]
            for line in f.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 3:
                    out.append((float(parts[0]), int(parts[1]), float(parts[2]), pid))
        return out

    def request_log(self) -> dict[str, dict]:
        """"METHOD path" -> the last served request's {start, wall_ms, cpu_ms, runqueue_ms, tid, pid}, from
        the pre_request/post_request hooks (the serving thread's own CPU time and run-queue wait)."""
        out = {}
        for f in sorted(self.diag_dir.glob("requests.*.log")):
            pid = f.name.split(".")[1]
            for line in f.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 7:
                    out[f"{parts[1]} {parts[2]}"] = {
                        "start": float(parts[0]), "wall_ms": float(parts[3]), "cpu_ms": float(parts[4]),
                        "runqueue_ms": float(parts[5]), "tid": parts[6], "pid": pid}
        return out

    def start(self) -> None:
        self.diag_dir.mkdir(exist_ok=True)
        self.gunicorn_conf.write_text(BENCH_CONF.replace("@CONF@", repr(str(REPO / "gunicorn.conf.py")))
                                      .replace("@DIR@", repr(str(self.diag_dir))))
        env = dict(os.environ, OPUS_SETTINGS=str(self.settings_file))
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(self.gunicorn_conf),
               "--bind", f"{HOST}:{self.port}", "--workers", str(self.workers),
               "--access-logfile", str(self.access_log), "--access-logformat", '"%(r)s" %(s)s %(D)s %(p)s',
               *R._no_control_socket(), "opus.wsgi:application"]
        with open(self.log_file, "ab") as logf:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=logf, start_new_session=True, preexec_fn=R._pdeathsig)
        self.wait_ready()


# ---- the measurements --------------------------------------------------------------------------------------
class Bench:
    def __init__(self, server: SlurmServer, sizes: dict, ours: Ours, cpus: int | None):
        self.server = server
        self.port = server.port
        self.sizes = sizes
        self.ours = ours
        self.cpus = cpus
        self.results: dict[str, dict] = {}
        self.records: dict[str, list[dict]] = {}   # step -> per-job client-side records
        self.raw_ids: dict[str, list[str]] = {}    # step -> raw SLURM ids
        self.others_seen: dict[str, int] = {}
        self.ctld = LogTail(SLURMCTLD_LOG)
        self.jobcomp = LogTail(JOBCOMP_LOG)

    def client(self) -> Client:
        return Client(self.port, timeout=WAIT_SECONDS + 15)

    def note_others(self, step: str) -> None:
        _, others = self.ours.queue()
        self.others_seen[step] = len(others)
        if others:
            log(f"warning: {len(others)} other SLURM job(s) in the queue during '{step}' "
                f"({', '.join(others[:5])}): they share the {self.cpus} CPUs and distort the figures")

    # -- warm-up -------------------------------------------------------------------------------------
    def warmup(self) -> None:
        """A few dummy jobs through the whole path (create, POST /phase RUN, sbatch, WAIT), each on a new
        connection so that both workers serve some; not measured."""
        for i in range(self.sizes["warmup"]):
            c = self.client()
            try:
                path, _ = create(c, "dummy", {"text": f"warm-up {i}"})
                c.expect(303, "POST", path + "/phase", "PHASE=RUN", FORM)
                Chase(path).run(c, time.monotonic() + JOB_DEADLINE).require_completed()
            finally:
                c.close()
        self.ours.wait_gone()

    # -- 1. POST PHASE=RUN ------------------------------------------------------------------------------
    def measure_post_run(self, n: int) -> None:
        c = self.client()
        records = []
        try:
            paths = [create(c, "dummy", {"text": f"run {i}"})[0] for i in range(n)]
            self.note_others("post_run")
            times = []
            me = [os.getpid()]
            key = f"{os.getpid()}/{threading.get_native_id()}"
            psi0, wall0 = cpu_pressure(), time.monotonic()
            for path in paths:
                before = schedstat(me).get(key, (0, 0))  # outside the timed span
                t_wall = time.time()
                t0 = time.perf_counter()
                c.expect(303, "POST", path + "/phase", "PHASE=RUN", FORM)
                times.append(time.perf_counter() - t0)
                after = schedstat(me).get(key, (0, 0))
                records.append({"path": path, "run_posted": t_wall, "post_s": times[-1],
                                "client_runqueue_ms": (after[1] - before[1]) / 1e6})
            psi1, wall1 = cpu_pressure(), time.monotonic()
            deadline = time.monotonic() + JOB_DEADLINE + n * 2.0
            bad = []
            for rec in records:
                ch = Chase(rec["path"]).run(c, deadline)
                rec["completed_seen"] = ch.seen.get(ch.phase)
                rec["start"], rec["end"] = ch.times()
                if ch.phase != "COMPLETED":
                    bad.append(f"{rec['path']} {ch.phase}")
        finally:
            c.close()
        if bad:
            raise BenchError(f"{len(bad)} dummy job(s) did not complete: {bad[:3]}")
        last_seen = max(r["completed_seen"] for r in records)
        self.records["post_run"] = records
        self.results["post_run"] = {
            "jobs": n, **summary_ms(times),
            "cpu_pressure_pct": None if psi0 is None or psi1 is None else
            round(100 * (psi1 - psi0) / 1e6 / (wall1 - wall0), 1),
            "drain_s": round(last_seen - records[0]["run_posted"], 2),
            "note": "dummy jobs created PENDING first; only POST <job>/phase PHASE=RUN is timed, one after "
                    "the other on one keep-alive connection; then every job is followed to COMPLETED",
        }
        self.results["post_run"]["cluster_idle_after_s"] = round(self.ours.wait_gone(), 2)

    # -- 2. end of the script -> COMPLETED seen through WAIT ----------------------------------------------
    def measure_end_to_seen(self, n: int) -> None:
        records: list[dict] = [{} for _ in range(n)]
        errors: list[str] = []
        start = threading.Barrier(n + 1, timeout=60)

        def work(i: int) -> None:
            c = self.client()
            rec = records[i]
            try:
                start.wait()
                rec["path"], rec["run_posted"] = create(c, "sleep", {"seconds": "1", "PHASE": "RUN"})
                ch = Chase(rec["path"]).run(c, time.monotonic() + JOB_DEADLINE + n * 3.0)
                ch.require_completed()
                rec["start"], rec["end"] = ch.times()
                rec["completed_seen"] = ch.final_got
                rec["final_sent"] = ch.final_sent
                rec["final_asked"] = ch.final_asked
                rec["executing_seen"] = ch.seen.get("EXECUTING")
            except Exception as exc:
                errors.append(f"job {i}: {exc}")
                try:
                    start.abort()
                except Exception:
                    pass
            finally:
                c.close()

        threads = [threading.Thread(target=work, args=(i,), name=f"wait-{i}", daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        self.note_others("end_to_seen")
        try:
            start.wait()
        except threading.BrokenBarrierError:
            pass
        deadline = time.monotonic() + JOB_DEADLINE + n * 3.0 + 30
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            errors.append("a client thread did not finish in time")
        if errors:
            raise BenchError("end -> COMPLETED run failed: " + "; ".join(errors[:3]))
        valid, late = [], 0
        for rec in records:
            # Only a WAIT that was held, on PHASE=EXECUTING, when the script ended measures the wake-up.
            rec["valid"] = rec["final_asked"] == "EXECUTING" and rec["end"] is not None \
                and rec["final_sent"] < rec["end"]
            rec["end_to_seen"] = rec["completed_seen"] - rec["end"] if rec["end"] is not None else None
            if rec["valid"]:
                valid.append(rec["end_to_seen"])
            else:
                late += 1
        self.records["end_to_seen"] = records
        if not valid:
            raise BenchError("no job's WAIT was in place when its script ended")
        self.results["end_to_seen"] = {
            "jobs": n, "measured": len(valid), "not_measured_wait_not_held": late, **summary_ms(valid),
            "wall_s": round(max(r["completed_seen"] for r in records)
                            - min(r["run_posted"] for r in records), 2),
            "note": "sleep jobs (seconds=1) all created with PHASE=RUN at once, one client thread each; each "
                    "thread follows its job with WAIT=30 and, once EXECUTING, holds WAIT=30&PHASE=EXECUTING; "
                    "figure = client clock when that WAIT returned COMPLETED - the job's endTime",
        }
        self.results["end_to_seen"]["cluster_idle_after_s"] = round(self.ours.wait_gone(), 2)

    # -- 3. OPUS vs raw sbatch ------------------------------------------------------------------------------
    def opus_batch(self, k: int, step: str) -> float:
        c = self.client()
        records = []
        try:
            t0 = time.time()
            for _ in range(k):
                path, posted = create(c, "sleep", {"seconds": "1", "PHASE": "RUN"})
                records.append({"path": path, "run_posted": posted})
            deadline = time.monotonic() + JOB_DEADLINE + k * 3.0
            for rec in records:
                ch = Chase(rec["path"]).run(c, deadline)
                ch.require_completed()
                rec["completed_seen"] = ch.final_got
                rec["start"], rec["end"] = ch.times()
            t1 = max(r["completed_seen"] for r in records)
        finally:
            c.close()
        self.records.setdefault(step, []).extend(records)
        return t1 - t0

    def raw_batch(self, k: int, step: str) -> float:
        rawdir = self.server.workdir / "raw"
        rawdir.mkdir(exist_ok=True)
        ids = []
        t0 = time.time()
        for _ in range(k):
            done = slurm("sbatch", "--parsable", f"--job-name={self.ours.raw_name}", f"--chdir={rawdir}",
                         f"--output={rawdir}/%j.out", "--wrap", "sleep 1")
            if done.returncode != 0 or not done.stdout.strip():
                raise BenchError(f"sbatch failed: {done.stderr.strip() or done.stdout.strip()}")
            ids.append(done.stdout.strip().split(";")[0])
        self.raw_ids.setdefault(step, []).extend(ids)
        deadline = time.monotonic() + JOB_DEADLINE + k * 3.0
        while True:
            q = slurm("squeue", "-h", f"--name={self.ours.raw_name}", "-o", "%i")
            if q.returncode == 0 and not q.stdout.split():
                return time.time() - t0  # the moment the raw client sees them all gone
            if time.monotonic() > deadline:
                raise BenchError(f"raw SLURM jobs {q.stdout.split()[:5]} still queued at the deadline")
            time.sleep(SQUEUE_POLL)

    def measure_ratio(self, k: int, reps: int) -> None:
        self.ours.wait_gone()
        self.note_others("batch")
        log(f"{k} x sleep 1, raw sbatch")
        raw = self.raw_batch(k, "batch_raw")
        self.ours.wait_gone()
        log(f"{k} x sleep 1, through OPUS")
        opus = self.opus_batch(k, "batch_opus")
        self.ours.wait_gone()
        self.results["batch"] = {
            "jobs": k, "raw_s": round(raw, 3), "opus_s": round(opus, 3), "ratio": round(opus / raw, 3),
            "note": "raw: K x sbatch --wrap 'sleep 1' then squeue polled every 0.2 s until none is listed "
                    "(COMPLETING included); OPUS: K x POST /rest/sleep seconds=1 PHASE=RUN then WAIT on each "
                    "until COMPLETED; each from the first submission to the last completion seen",
        }
        singles_raw, singles_opus = [], []
        for i in range(reps):
            log(f"one job, raw then OPUS ({i + 1}/{reps})")
            singles_raw.append(self.raw_batch(1, "single_raw"))
            self.ours.wait_gone()
            singles_opus.append(self.opus_batch(1, "single_opus"))
            self.ours.wait_gone()
        r, o = median(singles_raw), median(singles_opus)
        self.results["single"] = {"repetitions": reps, "raw_s": [round(x, 3) for x in singles_raw],
                                  "opus_s": [round(x, 3) for x in singles_opus], "raw_median_s": round(r, 3),
                                  "opus_median_s": round(o, 3), "ratio": round(o / r, 3)}

    # -- where the time goes ---------------------------------------------------------------------------------
    def analyse(self) -> None:
        """Join the client records with slurmctld's, the jobcomp and the server's logs."""
        ctld = slurmctld_events(self.ctld.read())
        comp = jobcomp_workdirs(self.jobcomp.read(), self.server.data_dir / "jobs")
        srv_text = self.server.log_file.read_text(errors="replace") if self.server.log_file.exists() else ""
        srv = server_events(srv_text)
        leaders = dispatcher_pids(srv_text)
        access = access_times(self.server.access_log.read_text(errors="replace")
                              if self.server.access_log.exists() else "")
        out: dict[str, dict] = {}
        for step, records in self.records.items():
            seg: dict[str, list[float]] = {}

            def add(name, a, b, seg=seg):
                if a is not None and b is not None:
                    seg.setdefault(name, []).append(b - a)

            spans = []
            for rec in records:
                job_id = rec["path"].rsplit("/", 1)[1]
                s = srv.get(job_id, {})
                sid = s.get("slurm_id") or comp.get(job_id)
                ev = ctld.get(sid, {}) if sid else {}
                add("run_post_to_sbatch_done", rec.get("run_posted"), s.get("submitted"))
                add("run_post_to_slurm_submit", rec.get("run_posted"), ev.get("submit"))
                add("slurm_submit_to_start", ev.get("submit"), ev.get("start"))
                add("slurm_start_to_wrapper_start", ev.get("start"), rec.get("start"))
                add("wrapper_start_to_end", rec.get("start"), rec.get("end"))
                add("end_to_report_applied", rec.get("end"), s.get("applied_COMPLETED"))
                if step in ("end_to_seen", "single_opus"):  # elsewhere jobs are followed one after the other
                    add("report_applied_to_seen", s.get("applied_COMPLETED"), rec.get("completed_seen"))
                    add("end_to_seen", rec.get("end"), rec.get("completed_seen"))
                add("wrapper_end_to_slurm_end", rec.get("end"), ev.get("end"))
                if ev.get("start") and ev.get("end"):
                    spans.append((ev["start"], ev["end"]))
            out[step] = {"jobs": len(records), "segments_ms": {k: summary_ms(v) for k, v in seg.items()},
                         **self._gaps(spans)}
        for step, ids in self.raw_ids.items():
            seg = {}
            spans = []
            for sid in ids:
                ev = ctld.get(sid, {})
                if ev.get("submit") and ev.get("start"):
                    seg.setdefault("slurm_submit_to_start", []).append(ev["start"] - ev["submit"])
                if ev.get("start") and ev.get("end"):
                    seg.setdefault("slurm_start_to_end", []).append(ev["end"] - ev["start"])
                    spans.append((ev["start"], ev["end"]))
            out[step] = {"jobs": len(ids), "segments_ms": {k: summary_ms(v) for k, v in seg.items()},
                         **self._gaps(spans)}
        by_path = {p[:-len("/phase")]: (t, pid) for m, p, st, t, pid in access
                   if m == "POST" and p.endswith("/phase")}
        post = [by_path[r["path"]] for r in self.records.get("post_run", []) if r["path"] in by_path]
        if post:  # step 1's RUN POSTs only (not the warm-up's)
            out["post_run_server_side_ms"] = summary_ms([t for t, _ in post])
            out["post_run_server_side_dispatching_worker_ms"] = summary_ms(
                [t for t, pid in post if pid in leaders])
            out["post_run_server_side_other_worker_ms"] = summary_ms(
                [t for t, pid in post if pid not in leaders])
        gcs = self.server.gc_pauses()
        requests = self.server.request_log()
        out["post_run_slowest"] = self._slowest_posts(ctld, srv, by_path, leaders, gcs, requests)
        handled = [requests[f"POST {r['path']}/phase"] for r in self.records.get("post_run", [])
                   if f"POST {r['path']}/phase" in requests]
        if handled:  # the RUN POST inside the server: handler time = CPU + run-queue wait + the rest
            out["post_run_handler"] = {
                "wall_ms": summary_ms([h["wall_ms"] / 1000 for h in handled]),
                "cpu_ms": summary_ms([h["cpu_ms"] / 1000 for h in handled]),
                "runqueue_ms": summary_ms([h["runqueue_ms"] / 1000 for h in handled]),
                "rest_ms": summary_ms([max(0.0, h["wall_ms"] - h["cpu_ms"] - h["runqueue_ms"]) / 1000
                                       for h in handled])}
        recs = self.records.get("post_run", [])
        if recs:
            a, b = recs[0]["run_posted"], recs[-1]["run_posted"] + recs[-1]["post_s"]
            during = [round(ms, 1) for t, g, ms, _ in gcs if g == 2 and a <= t <= b]
            out["post_run_full_gc_ms"] = during
        out["gc_pauses_10ms"] = {"count": sum(ms >= 10 for *_, ms, _ in gcs),
                                 "max_ms": round(max((ms for *_, ms, _ in gcs), default=0.0), 1),
                                 "full_collections": sum(g == 2 for _, g, _, _ in gcs)}
        # Step 2 samples during which a worker paused >= 10 ms for garbage collection.
        hit = []
        for rec in self.records.get("end_to_seen", []):
            if rec.get("valid"):
                pauses = [round(ms, 1) for t, g, ms, _ in gcs
                          if ms >= 10 and rec["end"] - 0.05 <= t <= rec["completed_seen"]]
                if pauses:
                    hit.append({"end_to_seen_ms": round(1000 * rec["end_to_seen"], 1), "gc_ms": pauses})
        out["end_to_seen_with_gc_pause"] = hit
        self.results["breakdown"] = out

    def _slowest_posts(self, ctld: dict, srv: dict, by_path: dict, leaders: set, gcs: list, requests: dict,
                       count: int = 5) -> list[dict]:
        """The slowest RUN POSTs of step 1, with what SLURM and the dispatcher were doing meanwhile."""
        records = sorted(self.records.get("post_run", []), key=lambda r: -r["post_s"])[:count]
        submits = [ev["submit"] for ev in ctld.values() if "submit" in ev]
        starts = [ev["start"] for ev in ctld.values() if "start" in ev]
        sbatch_done = [e["submitted"] for e in srv.values() if "submitted" in e]
        out = []
        for r in records:
            a, b = r["run_posted"], r["run_posted"] + r["post_s"]
            server_s, pid = by_path.get(r["path"], (None, None))
            thread = requests.get(f"POST {r['path']}/phase")
            out.append({"job": r["path"].rsplit("/", 1)[1], "post_ms": round(1000 * r["post_s"], 1),
                        "server_ms": None if server_s is None else round(1000 * server_s, 1),
                        "handler_ms": None if thread is None else round(thread["wall_ms"], 1),
                        "handler_cpu_ms": None if thread is None else round(thread["cpu_ms"], 1),
                        "handler_runqueue_ms": None if thread is None else round(thread["runqueue_ms"], 1),
                        "client_runqueue_ms": round(r.get("client_runqueue_ms", 0.0), 1),
                        "dispatching_worker": None if pid is None else pid in leaders,
                        "gc_during_ms": [round(ms, 1) for t, g, ms, w in gcs
                                         if a - 0.001 <= t <= b and ms >= 2 and (pid is None or w == pid)],
                        "slurm_submits_during": sum(a - 0.02 <= t <= b + 0.02 for t in submits),
                        "sbatch_returned_during": sum(a - 0.02 <= t <= b + 0.02 for t in sbatch_done),
                        "slurm_starts_within_100ms_before": sum(a - 0.1 <= t <= b for t in starts)})
        return out

    def _gaps(self, spans: list[tuple[float, float]]) -> dict:
        """CPU use of SLURM jobs, and how long a freed CPU stayed idle while jobs were waiting."""
        if not spans:
            return {}
        spans.sort()
        first, last = spans[0][0], max(e for _, e in spans)
        busy = sum(e - s for s, e in spans)
        # A job that started after the first `cpus` waited for a CPU: the gap is from the latest end
        # before its start (that freed its CPU) to its start.
        refill = []
        cpus = self.cpus or 1
        for i, (s, _) in enumerate(spans):
            if i < cpus:
                continue
            before = [e for _, e in spans[:i] if e <= s]
            if before:
                refill.append(s - max(before))
        return {"slurm_span_s": round(last - first, 3), "slurm_busy_cpu_s": round(busy, 3),
                "cpu_use_pct": round(100 * busy / ((last - first) * cpus), 1) if last > first else None,
                "cpu_refill_gap_ms": summary_ms(refill)}

    # -- the whole run ---------------------------------------------------------------------------------------
    def run(self) -> None:
        s = self.sizes
        log("warming up")
        self.warmup()
        log(f"1. POST PHASE=RUN, {s['run_jobs']} dummy jobs")
        self.measure_post_run(s["run_jobs"])
        log(f"2. script end -> COMPLETED through WAIT, {s['wait_jobs']} sleep jobs")
        self.measure_end_to_seen(s["wait_jobs"])
        log(f"3. {s['batch_jobs']} x sleep 1: OPUS vs raw sbatch")
        self.measure_ratio(s["batch_jobs"], s["single_reps"])


# ---- the report --------------------------------------------------------------------------------------------
def report_rows(results: dict, sizes: dict) -> list[dict]:
    def val(key, field):
        r = results.get(key)
        return None if r is None else r.get(field)

    n1 = val("post_run", "jobs") or sizes["run_jobs"]
    n2 = val("end_to_seen", "measured") or sizes["wait_jobs"]
    k = val("batch", "jobs") or sizes["batch_jobs"]
    rows = [
        ("post_run_p50", f"POST PHASE=RUN ({n1} dummy jobs): p50", val("post_run", "p50_ms"), "ms", None),
        ("post_run_p99", f"POST PHASE=RUN ({n1} dummy jobs): p99", val("post_run", "p99_ms"), "ms",
         ("<=", TARGETS["post_run_p99_ms"])),
        ("end_to_seen_p50", f"script end -> COMPLETED via WAIT ({n2}): p50", val("end_to_seen", "p50_ms"),
         "ms",
         ("<=", TARGETS["end_to_seen_p50_ms"])),
        ("end_to_seen_p99", f"script end -> COMPLETED via WAIT ({n2}): p99", val("end_to_seen", "p99_ms"),
         "ms",
         None),
        ("batch_raw", f"{k} x sleep 1, raw sbatch + squeue", val("batch", "raw_s"), "s", None),
        ("batch_opus", f"{k} x sleep 1, through OPUS", val("batch", "opus_s"), "s", None),
        ("batch_ratio", f"{k} x sleep 1: OPUS / raw", val("batch", "ratio"), "x",
         ("<=", TARGETS["batch_ratio"])),
        ("single_raw", "1 x sleep 1, raw (median)", val("single", "raw_median_s"), "s", None),
        ("single_opus", "1 x sleep 1, through OPUS (median)", val("single", "opus_median_s"), "s", None),
        ("single_ratio", "1 x sleep 1: OPUS / raw", val("single", "ratio"), "x", None),
    ]
    out = []
    for key, label, value, unit, target in rows:
        met = None
        if target is not None and value is not None:
            met = value >= target[1] if target[0] == ">=" else value <= target[1]
        out.append({"key": key, "label": label, "value": value, "unit": unit,
                    "target": None if target is None else f"{target[0]} {target[1]}", "met": met})
    return out


def _fmt(value, unit) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:.3f}"


def _seg(summary: dict | None) -> str:
    if not summary:
        return "-"
    return f"p50 {summary['p50_ms']:.0f} / p99 {summary['p99_ms']:.0f} ms"


def print_table(rows: list[dict], results: dict, meta: dict) -> None:
    print()
    cluster = meta["cluster"]
    print(f"OPUS SLURM benchmark: gunicorn {meta['workers']} workers, SLURM {cluster.get('SLURM_VERSION')} "
          f"on {cluster.get('cpus')} CPUs ({cluster.get('SchedulerParameters')})"
          f"{', QUICK smoke run (figures not meaningful)' if meta['quick'] else ''}"
          f"{'' if meta['complete'] else ' -- INCOMPLETE RUN (failed or interrupted)'}")
    pressure = meta.get("cpu_pressure_before_pct") or {}
    print(f"load average before: {meta['load_average_before']}, after: {meta['load_average_after']}; "
          + (f"before the run some task waited for a CPU {pressure.get('avg60')}% of the last minute; "
             if pressure else "")
          + f"run took {meta['duration_s']:.0f} s; other users' SLURM jobs seen: {meta['other_jobs_seen']}")
    head = f"{'measure':<46} {'result':>10} {'target':>9}  verdict"
    print(head)
    print("-" * len(head))
    for r in rows:
        unit = r["unit"]
        target = "-" if r["target"] is None else \
            r["target"].replace("<=", "≤").replace(">=", "≥") + (" ms" if unit == "ms" else "")
        verdict = "" if r["met"] is None else ("ok" if r["met"] else "MISSED")
        print(f"{r['label']:<46} {_fmt(r['value'], unit):>10} {target:>9}  {verdict}")
    print()
    r = results.get("post_run")
    b = results.get("breakdown") or {}
    if r:
        print(f"post_run: max {r['max_ms']:.1f} ms, mean {r['mean_ms']:.1f} ms; server-side (gunicorn %(D)s) "
              f"{_seg(b.get('post_run_server_side_ms'))} (worker running the dispatcher: "
              f"{_seg(b.get('post_run_server_side_dispatching_worker_ms'))}; other worker: "
              f"{_seg(b.get('post_run_server_side_other_worker_ms'))}); {r['jobs']} dummy jobs all COMPLETED "
              f"{r['drain_s']:.1f} s after the first RUN; some task waited for a CPU "
              f"{r.get('cpu_pressure_pct')}% of the time (/proc/pressure/cpu)")
        h = b.get("post_run_handler")
        if h:
            print(f"    inside the server (pre_request -> post_request hooks, the handler thread): wall "
                  f"{_seg(h['wall_ms'])}; on a CPU {_seg(h['cpu_ms'])}; "
                  f"waiting for a CPU {_seg(h['runqueue_ms'])}; "
                  f"blocked (GIL, locks, I/O) {_seg(h['rest_ms'])}")
        for p in b.get("post_run_slowest") or []:
            where = "" if p["server_ms"] is None else \
                f" ({p['server_ms']:.1f} ms in the " \
                f"{'dispatching' if p['dispatching_worker'] else 'other'} worker)"
            gc_note = f"; GC pause(s) in that worker meanwhile: {p['gc_during_ms']} ms" \
                if p["gc_during_ms"] else ""
            sched = "" if p["handler_ms"] is None else \
                (f"; the handler thread took {p['handler_ms']:.1f} ms: "
                 f"{p['handler_cpu_ms']:.1f} ms on a CPU, "
                 f"{p['handler_runqueue_ms']:.1f} ms waiting for one, "
                 f"{max(0.0, p['handler_ms'] - p['handler_cpu_ms'] - p['handler_runqueue_ms']):.1f} "
                 "ms blocked "
                 f"(GIL, locks, I/O); the client waited {p['client_runqueue_ms']:.1f} ms for a CPU")
            print(f"    slow RUN POST {p['post_ms']:.1f} ms{where}{gc_note}{sched}; meanwhile (±20 ms) "
                  f"{p['slurm_submits_during']} sbatch reached slurmctld and "
                  f"{p['sbatch_returned_during']} returned; "
                  f"{p['slurm_starts_within_100ms_before']} SLURM job(s) started within 100 ms before")
        g = b.get("gc_pauses_10ms") or {}
        print(f"    full (generation 2) garbage collections in the workers during step 1: "
              f"{b.get('post_run_full_gc_ms') or 'none'} (ms); "
              f"whole run: {g.get('full_collections', 0)} full, "
              f"{g.get('count', 0)} pause(s) >= 10 ms, longest {g.get('max_ms', 0)} ms")
    r = results.get("end_to_seen")
    if r:
        hit = b.get("end_to_seen_with_gc_pause") or []
        print(f"end_to_seen: {r['measured']}/{r['jobs']} measured (WAIT held when the script ended); "
              f"{r['jobs']} jobs took {r['wall_s']:.1f} s; samples overlapping a worker GC pause >= 10 ms: "
              + (", ".join(f"{h['end_to_seen_ms']} ms (GC {h['gc_ms']} ms)" for h in hit) if hit else "none"))
    r = results.get("single")
    if r:
        print(f"single: raw {r['raw_s']} s, OPUS {r['opus_s']} s")
    labels = {
        "run_post_to_sbatch_done": "RUN POST -> sbatch returned (server log)",
        "run_post_to_slurm_submit": "RUN POST -> slurmctld got the job",
        "slurm_submit_to_start": "slurmctld: submit -> start",
        "slurm_start_to_wrapper_start": "SLURM start -> wrapper startTime",
        "wrapper_start_to_end": "wrapper startTime -> endTime",
        "end_to_report_applied": "endTime -> report applied (server log)",
        "report_applied_to_seen": "report applied -> WAIT returned",
        "end_to_seen": "endTime -> COMPLETED seen by the client",
        "wrapper_end_to_slurm_end": "endTime -> slurmctld _job_complete",
        "slurm_start_to_end": "slurmctld: start -> _job_complete",
    }
    for step in ("post_run", "end_to_seen", "batch_raw", "batch_opus", "single_raw", "single_opus"):
        info = b.get(step)
        if not info:
            continue
        gap = info.get("cpu_refill_gap_ms")
        print(f"where the time goes, {step} ({info['jobs']} jobs"
              + (f"; SLURM span {info['slurm_span_s']:.1f} s, CPU use {info['cpu_use_pct']}%" if info.get(
                  "cpu_use_pct") is not None else "")
              + (f"; a freed CPU idle before the next start: {_seg(gap)}" if gap else "") + "):")
        for key, label in labels.items():
            if key in info["segments_ms"] and info["segments_ms"][key]:
                print(f"    {label:<44} {_seg(info['segments_ms'][key])}")
    R.print_server_log(meta)


# ---- main --------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Benchmark OPUS (gunicorn, MANAGER=slurm) on the local SLURM cluster.")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run (< 30 s)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="jobs of step 1 (POST PHASE=RUN; default 100, --quick 10)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (DATA_DIR, logs)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.jobs is not None:
        if args.jobs < 1:
            print("bench: --jobs must be >= 1", file=sys.stderr)
            return 2
        sizes["run_jobs"] = args.jobs
    signal.signal(signal.SIGTERM, R._raise_interrupt)

    load_before = R._loadavg()
    pressure_before = cpu_pressure_avg()
    if pressure_before.get("avg60", 0.0) > 10:
        log(f"warning: some task waited for a CPU {pressure_before['avg60']:.0f}% of the last minute "
            f"(load average {load_before}): other work shares the CPUs with the server and SLURM, "
            "the latencies will be higher and noisier")
    started = time.time()
    server = bench = ours = None
    cluster: dict = {}
    findings: dict = {}
    status = 1
    workdir = Path(tempfile.mkdtemp(prefix="opus-bench-", dir=DATA_ROOT))
    workdir.chmod(0o755)  # slurmctld's epilog (SlurmUser) reads callback_url in the job directories
    try:
        cluster = cluster_check()
        server = SlurmServer(workdir, workers=2)
        ours = Ours(server.data_dir, f"opus-bench-raw-{secrets.token_hex(3)}")
        _, others = ours.queue()
        if others:
            log(f"warning: {len(others)} SLURM job(s) of others are in the queue: "
                "the figures will be distorted")
        server.write_settings()
        log("opus init")
        server.init()
        for d in (server.data_dir, server.data_dir / "jobs"):
            if d.exists():
                d.chmod(0o755)
        log(f"starting gunicorn on {server.url} (MANAGER = slurm)")
        server.start()
        bench = Bench(server, sizes, ours, cluster.get("cpus"))
        bench.run()
        status = 0
    except KeyboardInterrupt:
        log("interrupted")
        status = 130
    except Exception as exc:
        log(f"FAILED: {exc}" if isinstance(exc, BenchError) else "FAILED:\n" + traceback.format_exc())
        if server is not None and server.proc is not None:
            log("server log (tail):\n" + server.log_tail())
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if bench is not None:
            try:
                bench.analyse()
            except Exception:
                log("could not analyse the logs:\n" + traceback.format_exc())
        _cleanup(server, ours)
        if server is not None:
            findings = server.log_findings()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if bench is None or not bench.results:
        return status
    meta = {
        "quick": args.quick, "workers": 2, "sizes": sizes, "complete": status == 0, "cluster": cluster,
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1), "load_average_before": load_before,
        "load_average_after": R._loadavg(), "other_jobs_seen": bench.others_seen, "server_log": findings,
        "cpu_pressure_before_pct": pressure_before,
        "targets": TARGETS,
    }
    try:
        meta["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                            text=True, timeout=10).stdout.strip() or None
    except Exception:
        meta["git_commit"] = None
    rows = report_rows(bench.results, sizes)
    print_table(rows, bench.results, meta)
    if args.json:
        records = {step: [{k: v for k, v in r.items() if not k.startswith("sched_")} for r in recs]
                   for step, recs in bench.records.items()}
        Path(args.json).write_text(json.dumps({"meta": meta, "summary": rows, "results": bench.results,
                                               "records": records, "raw_slurm_ids": bench.raw_ids},
                                              indent=2) + "\n")
        log(f"wrote {args.json}")
    return status


def _cleanup(server: SlurmServer | None, ours: Ours | None) -> None:
    """Cancel this run's SLURM jobs, stop gunicorn, cancel again (the dispatcher may have submitted
    meanwhile), wait (bounded) for them to leave squeue.  Never fails."""
    def cancel(when: str) -> None:
        if ours is None:
            return
        try:
            gone = ours.cancel()
            if gone:
                log(f"cancelled {len(gone)} SLURM job(s) of this run {when}: {', '.join(gone[:10])}")
        except Exception as exc:
            log(f"could not cancel this run's SLURM jobs: {exc}")

    cancel("before stopping the server")
    if server is not None:
        log("stopping the server")
        try:
            server.stop()
        except Exception as exc:
            log(f"could not stop the server: {exc}")
    cancel("after stopping the server")
    if ours is not None:
        try:
            ours.wait_gone(30)
        except Exception as exc:
            log(f"{exc}")


if __name__ == "__main__":
    sys.exit(main())
