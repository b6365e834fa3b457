#!/usr/bin/env python3
"""The destruction sweep under load: delete N expired jobs while the server answers requests.

    .venv/bin/python bench/sweep.py [--jobs 10000] [--database sqlite|postgresql+psycopg2://...] [--json FILE]

Seeds N finished jobs whose destruction time has passed (each with a result file on disk) plus a few
live ones, starts gunicorn with the project's gunicorn.conf.py, measures GET job / list LAST=100 /
create latency, then runs ``opus maintenance`` (what cron or the server's maintenance thread runs)
and measures the same requests while it deletes.  The sweep deletes job by job, each in its own short
transaction, so requests interleave with it: the figures show how much it slows them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] * 1000 if values else float("nan")


def seed(settings_file: Path, expired: int) -> list[str]:
    """Bulk-insert ``expired`` finished, expired jobs with a result file each; returns their ids."""
    sys.path.insert(0, str(REPO))
    from sqlalchemy import insert

    from opus.settings import load_settings
    from opus.storage import create_engine_for
    from opus.storage.tables import jobs, results
    settings = load_settings(str(settings_file))
    engine = create_engine_for(settings.database_url)
    past = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=1)
    ids = [secrets.token_hex(8) for _ in range(expired)]
    rows, res = [], []
    for i, job_id in enumerate(ids):
        rows.append({"job_id": job_id, "jobname": "dummy", "phase": "COMPLETED", "owner_id": None,
                     "creation_time": past - timedelta(seconds=expired - i), "start_time": past, "end_time": past,
                     "execution_duration": 60, "destruction_time": past, "error_has_detail": False})
        res.append({"job_id": job_id, "result_id": "output", "file_name": "output.txt",
                    "content_type": "text/plain", "size": 6, "sha256": "0" * 64})
        d = settings.jobs_dir / job_id / "results"
        d.mkdir(parents=True)
        (d / "output.txt").write_text("hello\n")
    with engine.begin() as conn:
        for start in range(0, expired, 1000):
            conn.execute(insert(jobs), rows[start:start + 1000])
            conn.execute(insert(results), res[start:start + 1000])
    engine.dispose()
    return ids


class Client:
    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def timed(self, method: str, path: str, body: str | None = None) -> tuple[float, int, dict]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
            r.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            return time.perf_counter() - t0, 0, {}
        return time.perf_counter() - t0, r.status, dict(r.getheaders())


def load(port: int, job_path: str, stop: threading.Event, out: dict) -> None:
    """GET a job, GET the list (LAST=100), POST a job, in turn, until ``stop``."""
    client = Client(port)
    while not stop.is_set():
        for key, method, path, body, want in (("get", "GET", job_path, None, 200),
                                              ("list", "GET", "/rest/dummy?LAST=100", None, 200),
                                              ("create", "POST", "/rest/dummy", "text=x", 303)):
            seconds, status, _ = client.timed(method, path, body)
            out.setdefault(key, []).append(seconds)
            if status != want:
                out.setdefault("errors", []).append(f"{method} {path}: {status}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--database", default="sqlite")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="opus-sweep-"))
    settings_file = work / "settings.py"
    db = f"sqlite:///{work / 'opus.sqlite'}" if args.database == "sqlite" else args.database
    settings_file.write_text(f"DATA_DIR = {str(work / 'var')!r}\nDATABASE_URL = {db!r}\nMAINTENANCE_INTERVAL = 0\n"
                             f"LOG_LEVEL = 'WARNING'\nSERVICE_USER = {pwd.getpwuid(os.geteuid()).pw_name!r}\n")
    env = dict(os.environ, OPUS_SETTINGS=str(settings_file))
    subprocess.run([str(BIN / "opus"), "init"], env=env, check=True, capture_output=True)
    t0 = time.monotonic()
    seed(settings_file, args.jobs)
    print(f"seeded {args.jobs} expired jobs in {time.monotonic() - t0:.1f} s", flush=True)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"),
                               "--bind", f"127.0.0.1:{port}", "--no-control-socket", "--access-logfile", "/dev/null",
                               "opus.wsgi:application"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=open(work / "gunicorn.log", "wb"), start_new_session=True)
    figures: dict = {"jobs": args.jobs, "database": "sqlite" if args.database == "sqlite" else "postgresql"}
    try:
        client = Client(port)
        for _ in range(300):
            if client.timed("GET", "/availability")[1] == 200:
                break
            time.sleep(0.1)
        _, status, headers = client.timed("POST", "/rest/dummy", "text=live")
        job_path = headers["Location"].split(str(port), 1)[1]
        phases = {}
        for name in ("before", "during"):
            stop = threading.Event()
            out: dict = {}
            threads = [threading.Thread(target=load, args=(port, job_path, stop, out)) for _ in range(2)]
            for t in threads:
                t.start()
            start = time.monotonic()
            if name == "before":
                time.sleep(5)
            else:
                sweep = subprocess.run([str(BIN / "opus"), "maintenance"], env=env, capture_output=True, text=True)
                figures["sweep_seconds"] = round(time.monotonic() - start, 2)
                figures["sweep_output"] = sweep.stdout.strip()
            stop.set()
            for t in threads:
                t.join()
            phases[name] = {k: {"n": len(v), "p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2)}
                            for k, v in out.items() if k != "errors"}
            phases[name]["errors"] = len(out.get("errors", []))
        figures.update(phases)
        left = [d for d in (work / "var" / "jobs").iterdir()] if (work / "var" / "jobs").exists() else []
        figures["job_dirs_left"] = len(left)
        figures["jobs_per_second"] = round(args.jobs / figures["sweep_seconds"], 1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    print(f"\nDestruction sweep of {args.jobs} expired jobs ({figures['database']}): {figures['sweep_seconds']} s, "
          f"{figures['jobs_per_second']} jobs/s ({figures['sweep_output']}); job directories left: "
          f"{figures['job_dirs_left']} (the live ones)")
    print(f"{'request':10} {'before p50':>11} {'p99':>8} {'during p50':>11} {'p99':>8}   (ms; 2 clients)")
    for key in ("get", "list", "create"):
        b, d = figures["before"].get(key, {}), figures["during"].get(key, {})
        print(f"{key:10} {b.get('p50_ms', 0):11.2f} {b.get('p99_ms', 0):8.2f} {d.get('p50_ms', 0):11.2f} "
              f"{d.get('p99_ms', 0):8.2f}")
    errors = figures["before"]["errors"] + figures["during"]["errors"]
    print(f"errors: {errors}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
