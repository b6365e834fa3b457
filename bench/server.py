"""The servers a benchmark run starts (OPUS and the bare "hello" ceiling, both under the repository's
gunicorn.conf.py), the private PostgreSQL schema, and the bulk seeding of the job table."""

from __future__ import annotations

import http.client
import os
import pwd
import secrets
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from common import HOST, JOBNAME, REPO, BenchError, children, free_port, log

START_TIMEOUT = 60.0     # the server must answer its readiness path within this
STOP_TIMEOUT = 40.0      # after SIGTERM (gunicorn graceful_timeout is 30 s)


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


def gunicorn_settings() -> dict:
    """worker_class, threads, worker_connections, reuse_port... as gunicorn.conf.py sets them."""
    out: dict = {}
    try:
        from gunicorn.config import Config

        cfg = Config()
        namespace: dict = {"__file__": str(REPO / "gunicorn.conf.py")}
        exec(compile((REPO / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), namespace)
        for key in ("worker_class", "workers", "threads", "worker_connections", "keepalive", "reuse_port",
                    "backlog", "timeout"):
            out[key] = namespace.get(key, cfg.settings[key].get() if key in cfg.settings else None)
        out["thread_stack_kb"] = namespace.get("THREAD_STACK_KB")
    except Exception as exc:  # only informative
        out["error"] = str(exc)
    return out


class Server:
    """``opus init`` + gunicorn -c gunicorn.conf.py on a free port, in a temporary DATA_DIR."""

    app = "opus.wsgi:application"
    ready_path = "/availability"

    def __init__(self, workdir: Path, database_url: str | None, workers: int, prefork: bool = True):
        self.workdir = workdir
        self.data_dir = workdir / "var"
        self.settings_file = workdir / "settings.py"
        self.log_file = workdir / "gunicorn.log"
        self.database_url = database_url
        self.workers = workers
        self.prefork = prefork
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
            f"LOCAL_PREFORK = {self.prefork!r}",
            # The benchmarked server runs as whoever runs the bench (opus init refuses root without it).
            f"SERVICE_USER = {pwd.getpwuid(os.geteuid()).pw_name!r}",
        ]
        self.settings_file.write_text("\n".join(lines) + "\n")

    def init(self) -> None:
        opus = Path(sys.executable).parent / "opus"
        cmd = [str(opus)] if opus.exists() else [sys.executable, "-m", "opus.cli"]
        done = subprocess.run([*cmd, "--settings", str(self.settings_file), "init"], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise BenchError(f"opus init failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def command(self) -> list[str]:
        # gunicorn.conf.py as shipped, access log included (off: formatting one line cost about half
        # of the CPU of answering a woken WAIT; bench/README.md).
        return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"{HOST}:{self.port}",
                "--workers", str(self.workers), *_no_control_socket(), self.app]

    def start(self) -> None:
        env = dict(os.environ, OPUS_SETTINGS=str(self.settings_file))
        with open(self.log_file, "ab") as logf:
            self.proc = subprocess.Popen(self.command(), cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=logf, start_new_session=True, preexec_fn=_pdeathsig)
        self.wait_ready()

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid) if self.proc else []

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
                "error_lines": sum((" ERROR " in ln or "Traceback" in ln or "[ERROR]" in ln) for ln in lines)}

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
            try:
                conn.request("GET", self.ready_path)
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
            raise BenchError(f"the server did not answer {self.ready_path} within {START_TIMEOUT:.0f} s "
                             f"({last}):\n{self.log_tail()}")
        self.wait_workers()

    def wait_workers(self) -> None:
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


class HelloServer(Server):
    """bench/hello_app.py (one bottle route) under the same gunicorn.conf.py: the ceiling."""

    app = "bench.hello_app:application"
    ready_path = "/hello"

    def __init__(self, workdir: Path, workers: int):
        super().__init__(workdir, None, workers)
        self.log_file = workdir / "gunicorn-hello.log"

    def wait_workers(self) -> None:
        deadline = time.monotonic() + 15  # every worker has imported the app once it is listed
        while time.monotonic() < deadline and len(self.worker_pids()) < self.workers:
            time.sleep(0.1)
        time.sleep(0.5)


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


#: The phases of seeded jobs, per 100: a data centre's table is mostly finished jobs.
SEED_MIX = [("ERROR", 1), ("ABORTED", 4), ("PENDING", 10), ("COMPLETED", 85)]


class Seeder:
    """Bulk-inserts jobs (and their one parameter) straight into the server's database, in batches
    of multi-row INSERTs through SQLAlchemy Core: 100,000 jobs take a few seconds."""

    BATCH = 5000

    def __init__(self, settings_file: Path):
        from opus.settings import load_settings
        from opus.storage import create_engine_for
        self.settings = load_settings(str(settings_file))
        self.engine = create_engine_for(self.settings.database_url)
        self.sqlite = self.engine.dialect.name == "sqlite"
        self.version = None
        self.quote = None
        self.duration = self.settings.DEFAULT_EXECUTION_DURATION
        self.seeded = 0
        try:
            from opus.jobdef import JobDefinitionRegistry
            jobdef = JobDefinitionRegistry(self.settings.JDL_DIR).get(JOBNAME)
            self.version = jobdef.version
            self.quote = jobdef.quote
            if jobdef.execution_duration is not None:
                self.duration = jobdef.execution_duration
        except Exception as exc:  # the figures do not depend on these details
            log(f"(job definition not read for seeding: {exc})")
        self.phases = [phase for phase, share in SEED_MIX for _ in range(share)]

    def _rows(self, start: int, count: int, only: str | None) -> tuple[list[dict], list[dict]]:
        from opus.storage.jobstore import to_db_time
        now = datetime.now(timezone.utc)
        job_rows, param_rows = [], []
        for i in range(start, start + count):
            job_id = secrets.token_hex(8)
            phase = only or self.phases[i % len(self.phases)]
            created = to_db_time(now - timedelta(milliseconds=count - (i - start)))
            final = phase in ("COMPLETED", "ERROR", "ABORTED")
            job_rows.append({
                "job_id": job_id, "jobname": JOBNAME, "jdl_version": self.version, "run_id": None, "owner_id": None,
                "phase": phase, "creation_time": created,
                "start_time": created if phase in ("COMPLETED", "ERROR") else None,
                "end_time": created + timedelta(seconds=1) if final else None,
                "execution_duration": self.duration,
                "destruction_time": to_db_time(now + timedelta(seconds=self.settings.DESTRUCTION_INTERVAL)),
                "quote": to_db_time(now + timedelta(seconds=self.quote)) if self.quote is not None else None,
                "error_type": "fatal" if phase == "ERROR" else None,
                "error_message": "seeded failure" if phase == "ERROR" else None,
                "error_has_detail": False, "manager_id": None, "callback_url": None,
            })
            param_rows.append({"job_id": job_id, "name": "text", "value": f"seeded job {i}",
                               "by_reference": False, "is_post": False})
        return job_rows, param_rows

    def add(self, count: int, phase: str | None = None) -> list[str]:
        """Insert ``count`` jobs (the SEED_MIX of phases, or all in ``phase``); their ids."""
        from sqlalchemy import insert

        from opus.storage.tables import jobs, parameters
        done, ids = 0, []
        while done < count:
            n = min(self.BATCH, count - done)
            job_rows, param_rows = self._rows(self.seeded, n, phase)
            ids += [r["job_id"] for r in job_rows]
            conn = self.engine.connect()
            if self.sqlite:  # take SQLite's write lock at BEGIN, as the server's writers do
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            try:
                with conn.begin():
                    conn.execute(insert(jobs), job_rows)
                    conn.execute(insert(parameters), param_rows)
            finally:
                conn.close()
            done += n
            self.seeded += n
        # What autovacuum does within a minute or so of such a growth (and ``opus migrate`` after its
        # bulk load): PostgreSQL's statistics brought up to date.  Measured straight after seeding,
        # the planner still took the table for the empty one it last analysed, and LAST=100 of
        # 100,000 sorted every row (57 ms instead of 0.1 ms: bench/README.md).
        from opus.storage.database import refresh_statistics
        refresh_statistics(self.engine)
        return ids

    def close(self) -> None:
        self.engine.dispose()
