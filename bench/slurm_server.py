"""The server of the SLURM benchmark: bench/run.py's gunicorn Server with MANAGER = "slurm" and a
gunicorn configuration that also logs GC pauses and each request's CPU time and run-queue wait."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from slurm_common import HOST, JOBCOMP_LOG, REPO, R

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
