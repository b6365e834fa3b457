#!/usr/bin/env python3
"""OPUS benchmark: start the real server under gunicorn, measure, print a table.

    .venv/bin/python bench/run.py [--json FILE] [--database sqlite|postgresql+psycopg2://...] [--quick]

One run creates a temporary DATA_DIR and settings file, runs ``opus init``, starts
``gunicorn -c gunicorn.conf.py opus.wsgi:application`` on a free 127.0.0.1 port, and measures

* jobs created per second (POST /rest/dummy, 303), 1 client and 8 concurrent clients;
* GET /rest/dummy (the job list) latency with 1,000 and with 10,000 jobs in the table;
* GET /rest/dummy/<id> latency;
* POST .../phase PHASE=RUN -> COMPLETED seen through blocking WAIT, for the dummy job.

Each figure is printed beside its target and the original OPUS baseline; ``--json FILE`` writes
every figure.  The server is always stopped (SIGTERM, then wait) at the end, also on errors and
Ctrl-C.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode, urlsplit

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
JOBNAME = "dummy"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FINAL_PHASES = {"COMPLETED", "ERROR", "ABORTED", "ARCHIVED"}
PHASE_RE = re.compile(rb"<uws:phase>([A-Z]+)</uws:phase>")
JOBREF_RE = re.compile(rb'<uws:jobref id="([^"]+)"')

# Sizes of a full run and of a --quick smoke run.
FULL = dict(create_1=2000, create_8=4000, list_small=1000, list_large=10000, list_small_reps=200,
            list_large_reps=30, get_reps=500, run_reps=50, warmup=40)
QUICK = dict(create_1=100, create_8=200, list_small=100, list_large=1000, list_small_reps=20,
             list_large_reps=5, get_reps=50, run_reps=5, warmup=16)

CLIENTS = 8
HTTP_TIMEOUT = 60.0      # seconds, every ordinary request
WAIT_SECONDS = 30        # the WAIT= of the RUN -> COMPLETED loop
RUN_DEADLINE = 60.0      # one RUN -> COMPLETED repetition must finish within this
START_TIMEOUT = 60.0     # the server must answer /availability within this
STOP_TIMEOUT = 40.0      # after SIGTERM (gunicorn graceful_timeout is 30 s)

CLIENT_APPROACH = ("raw http.client keep-alive connections, one per client thread, opened before the clock "
                   "starts (requests.Session costs ~6x the client CPU per POST: ~1.9 ms vs ~0.3 ms)")


class BenchError(Exception):
    """The benchmark could not be carried out (the server failed, an answer was wrong...)."""


# ---- small helpers ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000.0 for s in seconds]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 3), "p90_ms": round(percentile(ms, 90), 3),
            "p99_ms": round(percentile(ms, 99), 3), "min_ms": round(min(ms), 3), "max_ms": round(max(ms), 3),
            "mean_ms": round(sum(ms) / len(ms), 3)}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


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
            raise BenchError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if resp.will_close:
            self.conn.close()  # the next request reconnects
        return resp.status, resp, data

    def expect(self, status: int, method: str, path: str, body: str | None = None,
               headers: dict | None = None) -> tuple[http.client.HTTPResponse, bytes]:
        got, resp, data = self.request(method, path, body, headers)
        if got != status:
            raise BenchError(f"{method} {path}: expected {status}, got {got}: {data[:300]!r}")
        return resp, data

    def close(self) -> None:
        self.conn.close()


def job_path(location: str) -> str:
    """The path of a job from the absolute Location of a 303."""
    path = urlsplit(location).path
    if not path.startswith(f"/rest/{JOBNAME}/"):
        raise BenchError(f"unexpected Location {location!r}")
    return path


def create_job(client: Client, text: str) -> str:
    resp, _ = client.expect(303, "POST", f"/rest/{JOBNAME}", urlencode({"text": text}), FORM)
    return job_path(resp.getheader("Location") or "")


# ---- CPU accounting -----------------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float:
    """utime + stime of one process, seconds (0 if it is gone or /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, ValueError, IndexError):
        return 0.0


def _children(pid: int) -> list[int]:
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


class CpuMeter:
    """CPU seconds used by this client process and by the gunicorn master + workers over a span."""

    def __init__(self, server_pid: int | None):
        self.server_pid = server_pid

    def _server(self) -> float:
        if self.server_pid is None:
            return 0.0
        return sum(_proc_cpu(p) for p in [self.server_pid, *_children(self.server_pid)])

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


# ---- the server -----------------------------------------------------------------------------------------
def _pdeathsig():  # pragma: no cover - runs in the child between fork and exec
    """Have the kernel SIGTERM the server if this benchmark dies without cleaning up (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _no_control_socket() -> list[str]:
    """gunicorn >= 25 opens a control socket at one fixed path per user: keep out of other servers' way."""
    try:
        from gunicorn.config import KNOWN_SETTINGS

        if any("--no-control-socket" in (s.cli or []) for s in KNOWN_SETTINGS):
            return ["--no-control-socket"]
    except Exception:
        pass
    return []


class Server:
    """``opus init`` + gunicorn on a free port, in a temporary DATA_DIR."""

    def __init__(self, workdir: Path, database_url: str | None, workers: int):
        self.workdir = workdir
        self.data_dir = workdir / "var"
        self.settings_file = workdir / "settings.py"
        self.log_file = workdir / "gunicorn.log"
        self.database_url = database_url
        self.workers = workers
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.proc: subprocess.Popen | None = None

    def write_settings(self) -> None:
        lines = [
            "# Written by bench/run.py for one benchmark run.",
            f"DATA_DIR = {str(self.data_dir)!r}",
            f"DATABASE_URL = {self.database_url!r}",
            "MAINTENANCE_INTERVAL = 0",
            f"CALLBACK_URL = {self.url!r}",
            'LOG_LEVEL = "WARNING"',
        ]
        self.settings_file.write_text("\n".join(lines) + "\n")

    def init(self) -> None:
        opus = Path(sys.executable).parent / "opus"
        cmd = [str(opus)] if opus.exists() else [sys.executable, "-m", "opus.cli"]
        done = subprocess.run([*cmd, "--settings", str(self.settings_file), "init"], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise BenchError(f"opus init failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        env = dict(os.environ, OPUS_SETTINGS=str(self.settings_file))
        cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"{HOST}:{self.port}",
               "--workers", str(self.workers), "--access-logfile", "/dev/null", *_no_control_socket(),
               "opus.wsgi:application"]
        with open(self.log_file, "ab") as logf:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=logf, start_new_session=True, preexec_fn=_pdeathsig)
        self.wait_ready()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def log_findings(self) -> dict:
        """Warnings worth knowing from the server log: dropped notifications, errors."""
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return {}
        return {"notifications_dropped": sum("dropped" in ln and "notification" in ln for ln in lines),
                "error_lines": sum((" ERROR " in ln or "Traceback" in ln) for ln in lines)}

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
            try:
                conn.request("GET", "/availability")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    break
                last = f"HTTP {resp.status}"
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            finally:
                conn.close()
            time.sleep(0.1)
        else:
            raise BenchError(f"the server did not answer /availability within {START_TIMEOUT:.0f} s "
                             f"({last}):\n{self.log_tail()}")
        # Best effort: every worker registers for notifications once its app is loaded.
        events = self.data_dir / "run" / "events"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if len(os.listdir(events)) >= self.workers:
                    break
            except OSError:
                pass
            time.sleep(0.1)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"gunicorn (pid {proc.pid}) did not stop within {STOP_TIMEOUT:.0f} s: killing its group")
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: gunicorn and its workers only
            except ProcessLookupError:
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                log(f"gunicorn (pid {proc.pid}) is still there after SIGKILL")


# ---- the database ---------------------------------------------------------------------------------------
class PostgresSchema:
    """A private schema for this run in the given PostgreSQL database, dropped at the end.

    The server reaches it through ``options=-csearch_path=<schema>`` in its DATABASE_URL, so the
    run neither sees nor touches the jobs already in that database.
    """

    def __init__(self, url: str):
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        self.base = make_url(url)
        self.name = "opus_bench_" + secrets.token_hex(4)
        options = self.base.query.get("options")
        options = (options + " " if isinstance(options, str) and options else "") + f"-csearch_path={self.name}"
        self.url = self.base.update_query_dict({"options": options}).render_as_string(hide_password=False)
        self.engine = create_engine(self.base)
        self.created = False

    def create(self) -> None:
        from sqlalchemy import text

        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip()
            raise BenchError(f"cannot create schema {self.name} in {self.base.render_as_string()}: {reason}") from None
        self.created = True

    def drop(self) -> None:
        from sqlalchemy import text

        try:
            if self.created:
                with self.engine.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
        finally:
            self.engine.dispose()


class Seeder:
    """Inserts jobs straight through opus.storage.JobStore.create on the server's database."""

    def __init__(self, settings_file: Path):
        from opus.settings import load_settings
        from opus.storage import JobStore, create_engine_for

        self.settings = load_settings(str(settings_file))
        self.engine = create_engine_for(self.settings.database_url)
        self.store = JobStore(self.engine)
        self.version = None
        self.quote = None
        self.duration = self.settings.DEFAULT_EXECUTION_DURATION
        try:
            from opus.jobdef import JobDefinitionRegistry

            jobdef = JobDefinitionRegistry(self.settings.JDL_DIR).get(JOBNAME)
            self.version = jobdef.version
            self.quote = jobdef.quote
            if jobdef.execution_duration is not None:
                self.duration = jobdef.execution_duration
        except Exception as exc:  # the figures do not depend on these details
            log(f"(job definition not read for seeding: {exc})")

    def add(self, count: int) -> None:
        from opus.uws import Job, Parameter, Phase

        for i in range(count):
            now = datetime.now(timezone.utc)
            job = Job(job_id=secrets.token_hex(8), jobname=JOBNAME, phase=Phase.PENDING, creation_time=now,
                      execution_duration=self.duration,
                      destruction_time=now + timedelta(seconds=self.settings.DESTRUCTION_INTERVAL),
                      quote=now + timedelta(seconds=self.quote) if self.quote is not None else None,
                      parameters=[Parameter("text", f"seeded job {i}")], jdl_version=self.version)
            self.store.create(job)

    def close(self) -> None:
        self.engine.dispose()


# ---- the measurements --------------------------------------------------------------------------------------
class Bench:
    def __init__(self, server: Server, sizes: dict, seeder: Seeder):
        self.server = server
        self.port = server.port
        self.sizes = sizes
        self.seeder = seeder
        self.results: dict[str, dict] = {}
        self.job_ids: list[str] = []

    def cpu(self) -> CpuMeter:
        return CpuMeter(self.server.proc.pid if self.server.proc else None)

    # -- job list -----------------------------------------------------------------------------------
    def list_jobs(self, client: Client) -> bytes:
        _, body = client.expect(200, "GET", f"/rest/{JOBNAME}")
        return body

    def count_jobs(self) -> int:
        client = Client(self.port)
        try:
            body = self.list_jobs(client)
        finally:
            client.close()
        self.job_ids = [m.decode() for m in JOBREF_RE.findall(body)]
        return len(self.job_ids)

    def fill_to(self, target: int) -> None:
        have = self.count_jobs()
        if have > target:
            raise BenchError(f"the table already holds {have} {JOBNAME} jobs, more than the {target} wanted")
        if have < target:
            t0 = time.perf_counter()
            self.seeder.add(target - have)
            log(f"seeded {target - have} jobs through JobStore.create in {time.perf_counter() - t0:.1f} s")
        have = self.count_jobs()
        if have != target:
            raise BenchError(f"GET /rest/{JOBNAME} shows {have} jobs, expected {target}")

    def warmup(self) -> None:
        """Open connections on every worker, load every code path once."""
        clients = [Client(self.port) for _ in range(CLIENTS)]
        try:
            for i in range(self.sizes["warmup"]):
                c = clients[i % CLIENTS]
                path = create_job(c, f"warm-up {i}")
                c.expect(200, "GET", path)
                c.expect(200, "GET", f"/rest/{JOBNAME}")
        finally:
            for c in clients:
                c.close()

    def measure_list(self, key: str, jobs: int, reps: int) -> None:
        self.fill_to(jobs)
        client = Client(self.port)
        times = []
        size = 0
        try:
            self.list_jobs(client)  # connection + first-touch
            with self.cpu() as meter:
                for _ in range(reps):
                    t0 = time.perf_counter()
                    body = self.list_jobs(client)
                    times.append(time.perf_counter() - t0)
                    size = len(body)
        finally:
            client.close()
        found = len(JOBREF_RE.findall(body))
        if found != jobs:
            raise BenchError(f"the list showed {found} jobs, expected {jobs}")
        self.results[key] = {"jobs_in_table": jobs, "response_bytes": size, **summary_ms(times),
                             **meter.as_dict()}

    def measure_get(self, reps: int) -> None:
        ids = self.job_ids or []
        if not ids:
            raise BenchError("no job to GET")
        client = Client(self.port)
        times = []
        try:
            client.expect(200, "GET", f"/rest/{JOBNAME}/{ids[0]}")
            with self.cpu() as meter:
                for i in range(reps):
                    path = f"/rest/{JOBNAME}/{ids[(i * 7919) % len(ids)]}"
                    t0 = time.perf_counter()
                    _, body = client.expect(200, "GET", path)
                    times.append(time.perf_counter() - t0)
                    if b"<uws:jobId>" not in body:
                        raise BenchError(f"GET {path}: not a job document")
        finally:
            client.close()
        self.results["get_job"] = {"jobs_in_table": len(ids), **summary_ms(times), **meter.as_dict()}

    # -- creation throughput ----------------------------------------------------------------------
    def measure_create(self, key: str, clients_n: int, total: int) -> None:
        per_client = [total // clients_n + (1 if i < total % clients_n else 0) for i in range(clients_n)]
        clients = [Client(self.port) for _ in range(clients_n)]
        latencies: list[list[float]] = [[] for _ in range(clients_n)]
        errors: list[str] = []
        barrier = threading.Barrier(clients_n + 1, timeout=60)
        tag = secrets.token_hex(3)
        try:
            for c in clients:  # connect before the clock starts
                c.expect(200, "GET", "/availability")

            def work(i: int) -> None:
                c, lat = clients[i], latencies[i]
                body_prefix = f"text=bench+{tag}+{i}+"
                try:
                    barrier.wait()
                    for n in range(per_client[i]):
                        t0 = time.perf_counter()
                        got, resp, data = c.request("POST", f"/rest/{JOBNAME}", body_prefix + str(n), FORM)
                        lat.append(time.perf_counter() - t0)
                        if got != 303:
                            raise BenchError(f"POST /rest/{JOBNAME}: expected 303, got {got}: {data[:200]!r}")
                except Exception as exc:  # reported below; the other clients finish
                    errors.append(f"client {i}: {exc}")
                    try:
                        barrier.abort()
                    except Exception:
                        pass

            threads = [threading.Thread(target=work, args=(i,), name=f"client-{i}", daemon=True)
                       for i in range(clients_n)]
            for t in threads:
                t.start()
            with self.cpu() as meter:
                barrier.wait()
                for t in threads:
                    t.join(timeout=600)
                if any(t.is_alive() for t in threads):
                    errors.append("a client did not finish within 600 s")
        except threading.BrokenBarrierError:
            pass
        finally:
            for c in clients:
                c.close()
        if errors:
            raise BenchError("job creation failed: " + "; ".join(errors[:3]))
        done = sum(len(lat) for lat in latencies)
        flat = [x for lat in latencies for x in lat]
        self.results[key] = {"clients": clients_n, "jobs": done, "jobs_per_s": round(done / meter.wall, 1),
                             **{f"latency_{k}": v for k, v in summary_ms(flat).items()}, **meter.as_dict()}

    # -- RUN -> COMPLETED through WAIT --------------------------------------------------------------
    def measure_run(self, reps: int) -> None:
        client = Client(self.port, timeout=WAIT_SECONDS + 15)
        totals, post_run, first_exec, segments = [], [], [], []
        try:
            for rep in range(reps):
                path = create_job(client, f"run {rep}")
                seen = {"PENDING": 0.0}
                last = "PENDING"
                t0 = time.perf_counter()
                client.expect(303, "POST", path + "/phase", "PHASE=RUN", FORM)
                post_run.append(time.perf_counter() - t0)
                deadline = t0 + RUN_DEADLINE
                for _ in range(100):  # bounded: each turn returns on a phase change or after WAIT s
                    if time.perf_counter() > deadline:
                        break
                    _, body = client.expect(200, "GET", f"{path}?WAIT={WAIT_SECONDS}&PHASE={last}")
                    m = PHASE_RE.search(body)
                    if not m:
                        raise BenchError(f"GET {path}: no phase in {body[:200]!r}")
                    last = m.group(1).decode()
                    seen.setdefault(last, time.perf_counter() - t0)
                    if last in FINAL_PHASES:
                        break
                if last != "COMPLETED":
                    raise BenchError(f"job {path} ended in {last}, not COMPLETED (phases seen: {seen})")
                totals.append(seen["COMPLETED"])
                if "EXECUTING" in seen:
                    first_exec.append(seen["EXECUTING"])
                segments.append({k: round(v * 1000, 2) for k, v in seen.items()})
        finally:
            client.close()
        result = {"repetitions": reps, **summary_ms(totals),
                  "post_run": summary_ms(post_run),
                  "executing_seen": summary_ms(first_exec) if first_exec else None,
                  "executing_seen_in": len(first_exec),
                  "samples_ms": segments[:10]}
        self.results["run_to_completed"] = result

    # -- the whole run ---------------------------------------------------------------------------------
    def run(self) -> None:
        s = self.sizes
        log("warming up")
        self.warmup()
        log(f"job list with {s['list_small']} jobs")
        self.measure_list("list_small", s["list_small"], s["list_small_reps"])
        log("GET one job")
        self.measure_get(s["get_reps"])
        log("RUN -> COMPLETED")
        self.measure_run(s["run_reps"])
        log(f"creating {s['create_1']} jobs, 1 client")
        self.measure_create("create_1", 1, s["create_1"])
        log(f"creating {s['create_8']} jobs, {CLIENTS} clients")
        self.measure_create("create_8", CLIENTS, s["create_8"])
        log(f"job list with {s['list_large']} jobs")
        self.measure_list("list_large", s["list_large"], s["list_large_reps"])


# ---- the report ----------------------------------------------------------------------------------------------
# key, label, figure (from results), unit, target (op, value) or None, baseline or None
def report_rows(results: dict, sizes: dict) -> list[dict]:
    def val(key, field):
        r = results.get(key)
        return None if r is None else r.get(field)

    rows = [
        ("create_1", f"jobs created/s, 1 client ({sizes['create_1']} jobs)", val("create_1", "jobs_per_s"),
         "jobs/s", (">=", 400), 9.8),
        ("create_8", f"jobs created/s, {CLIENTS} clients ({sizes['create_8']} jobs)",
         val("create_8", "jobs_per_s"), "jobs/s", (">=", 700), None),
        ("list_small", f"GET job list, {sizes['list_small']} jobs: p50", val("list_small", "p50_ms"), "ms",
         ("<=", 10), 87),
        ("list_small_p99", f"GET job list, {sizes['list_small']} jobs: p99", val("list_small", "p99_ms"), "ms",
         None, None),
        ("list_large", f"GET job list, {sizes['list_large']} jobs: p50", val("list_large", "p50_ms"), "ms",
         None, None),
        ("list_large_p99", f"GET job list, {sizes['list_large']} jobs: p99", val("list_large", "p99_ms"), "ms",
         None, None),
        ("get_job", "GET one job: p50", val("get_job", "p50_ms"), "ms", None, 59),
        ("get_job_p99", "GET one job: p99", val("get_job", "p99_ms"), "ms", None, None),
        ("run_to_completed", "PHASE=RUN -> COMPLETED (WAIT): p50", val("run_to_completed", "p50_ms"), "ms",
         ("<=", 100), 671),
        ("run_to_completed_p99", "PHASE=RUN -> COMPLETED (WAIT): p99", val("run_to_completed", "p99_ms"), "ms",
         None, None),
    ]
    out = []
    for key, label, value, unit, target, baseline in rows:
        met = None
        if target is not None and value is not None:
            met = value >= target[1] if target[0] == ">=" else value <= target[1]
        out.append({"key": key, "label": label, "value": value, "unit": unit,
                    "target": None if target is None else f"{target[0]} {target[1]}",
                    "baseline": baseline, "met": met})
    return out


def _fmt(value, unit) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"
    return f"{value:.1f}/s"


def print_table(rows: list[dict], results: dict, meta: dict) -> None:
    print()
    print(f"OPUS benchmark: {meta['database']}, gunicorn {meta['workers']} workers (gthread), "
          f"{meta['cpu_count']} CPUs{', QUICK smoke run (figures not meaningful)' if meta['quick'] else ''}"
          f"{'' if meta['complete'] else ' -- INCOMPLETE RUN (failed or interrupted)'}")
    print(f"client: {CLIENT_APPROACH}")
    print(f"load average (1 min) before the run: {meta['load_average_before']} (after, this run included: "
          f"{meta['load_average_after']}); run took {meta['duration_s']:.0f} s"
          + (f"; whole machine {meta['machine_busy_pct']:.0f}% busy, {meta['steal_pct']:.1f}% steal"
             if "steal_pct" in meta else ""))
    head = f"{'measure':<44} {'result':>11} {'target':>10} {'baseline':>10}  verdict"
    print(head)
    print("-" * len(head))
    for r in rows:
        unit = r["unit"]
        target = "-" if r["target"] is None else r["target"].replace(">=", "≥").replace("<=", "≤") + \
            (" ms" if unit == "ms" else "/s")
        baseline = "-" if r["baseline"] is None else _fmt(r["baseline"], unit)
        verdict = "" if r["met"] is None else ("ok" if r["met"] else "MISSED")
        print(f"{r['label']:<44} {_fmt(r['value'], unit):>11} {target:>10} {baseline:>10}  {verdict}")
    print()
    for key in ("create_1", "create_8"):
        r = results.get(key)
        if r:
            print(f"{key}: latency p50 {r['latency_p50_ms']:.1f} ms, p99 {r['latency_p99_ms']:.1f} ms; "
                  f"CPU over {r['wall_s']:.2f} s: client {r['client_cpu_pct']:.0f}%, "
                  f"server {r['server_cpu_pct']:.0f}% (of {100 * meta['cpu_count']}%); "
                  f"server CPU {1000 * r['server_cpu_s'] / max(r['jobs'], 1):.2f} ms/job")
    for key in ("list_small", "list_large", "get_job"):
        r = results.get(key)
        if r:
            extra = f", {r['response_bytes']} bytes" if "response_bytes" in r else ""
            print(f"{key}: {r['jobs_in_table']} jobs in table{extra}; n={r['n']}, mean {r['mean_ms']:.1f} ms, "
                  f"server CPU {1000 * r['server_cpu_s'] / max(r['n'], 1):.2f} ms/request")
    r = results.get("run_to_completed")
    if r:
        ex = r.get("executing_seen")
        print(f"run_to_completed: n={r['repetitions']}; POST PHASE=RUN p50 {r['post_run']['p50_ms']:.1f} ms"
              + (f"; EXECUTING first seen p50 {ex['p50_ms']:.1f} ms ({r['executing_seen_in']}/{r['repetitions']})"
                 if ex else "; EXECUTING never observed (the job finished between two answers)"))
    print_server_log(meta)


def print_server_log(meta: dict) -> None:
    """The warnings and errors found in the server's log, if any, then a blank line."""
    found = meta.get("server_log") or {}
    if found.get("notifications_dropped") or found.get("error_lines"):
        print(f"server log: {found.get('notifications_dropped', 0)} 'notification dropped' warning(s), "
              f"{found.get('error_lines', 0)} error line(s)")
    print()


# ---- main -------------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Benchmark a real OPUS server (gunicorn) on 127.0.0.1.")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    p.add_argument("--database", default="sqlite",
                   help="'sqlite' (default: a fresh SQLite file in the temporary DATA_DIR) or a "
                        "postgresql+psycopg2:// URL (the run uses a private schema, dropped afterwards)")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run of a few seconds")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    p.add_argument("--keep", action="store_true", help="keep the temporary DATA_DIR and the server log")
    return p.parse_args(argv)


def _cpu_times() -> list[int] | None:
    """The aggregate 'cpu' line of /proc/stat (user nice system idle iowait irq softirq steal ...)."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def _machine_use(before: list[int] | None, after: list[int] | None) -> dict:
    """Whole-machine CPU busy and steal percentages between two /proc/stat samples."""
    if not before or not after or len(before) < 8 or len(after) < 8:
        return {}
    delta = [a - b for a, b in zip(after, before)]
    total = sum(delta[:8]) or 1
    idle = delta[3] + delta[4]
    return {"machine_busy_pct": round(100 * (total - idle) / total, 1), "steal_pct": round(100 * delta[7] / total, 1)}


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.database != "sqlite" and not args.database.startswith("postgresql"):
        print("bench: --database must be 'sqlite' or a postgresql+psycopg2:// URL", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("bench: --workers must be >= 1", file=sys.stderr)
        return 2
    sizes = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up on kill as on Ctrl-C

    load_before = _loadavg()
    if load_before is not None and load_before > 0.5 * (os.cpu_count() or 1):
        log(f"warning: the machine is busy (load average {load_before:.2f} on {os.cpu_count()} CPUs): "
            "the figures will be low and noisy")
    findings: dict = {}
    cpu_before = _cpu_times()
    workdir = Path(tempfile.mkdtemp(prefix="opus-bench-"))
    pg = server = seeder = None
    bench = None
    status = 1
    started = time.time()
    try:
        database_url = None
        if args.database != "sqlite":
            pg = PostgresSchema(args.database)
            pg.create()
            database_url = pg.url
        server = Server(workdir, database_url, args.workers)
        server.write_settings()
        log(f"opus init ({'SQLite' if database_url is None else 'PostgreSQL schema ' + pg.name})")
        server.init()
        log(f"starting gunicorn on {server.url}")
        server.start()
        seeder = Seeder(server.settings_file)
        bench = Bench(server, sizes, seeder)
        bench.run()
        status = 0
    except KeyboardInterrupt:
        log("interrupted")
        status = 130
    except Exception as exc:
        if isinstance(exc, BenchError):
            log(f"FAILED: {exc}")
        else:
            log("FAILED:\n" + traceback.format_exc())
        if server is not None and server.proc is not None:
            log("server log (tail):\n" + server.log_tail())
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # cleanup is bounded: let it finish
            signal.signal(sig, signal.SIG_IGN)
        if seeder is not None:
            seeder.close()
        if server is not None:
            log("stopping the server")
            server.stop()
            findings = server.log_findings()
        if pg is not None:
            try:
                pg.drop()
            except Exception as exc:
                log(f"could not drop schema {pg.name}: {exc}")
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if bench is None or not bench.results:
        return status
    meta = {
        "database": "sqlite" if args.database == "sqlite" else "postgresql",
        "quick": args.quick, "workers": args.workers, "clients": CLIENTS, "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "platform": platform.platform(),
        "client_approach": CLIENT_APPROACH, "sizes": sizes, "complete": status == 0,
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "load_average_before": load_before, "load_average_after": _loadavg(), "server_log": findings,
        **_machine_use(cpu_before, _cpu_times()),
        "baseline": {"create_jobs_per_s": 9.8, "list_1000_ms": 87, "get_job_ms": 59, "run_to_completed_ms": 671},
    }
    try:
        meta["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                            text=True, timeout=10).stdout.strip() or None
    except Exception:
        meta["git_commit"] = None
    rows = report_rows(bench.results, sizes)
    print_table(rows, bench.results, meta)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "summary": rows, "results": bench.results},
                                              indent=2) + "\n")
        log(f"wrote {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
