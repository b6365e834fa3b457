#!/usr/bin/env python3
"""OPUS benchmark: start the real server under gunicorn, measure, print a table.

    .venv/bin/python bench/run.py [--json FILE] [--database sqlite|postgresql+psycopg2://...] [--quick]

One run measures, under the repository's gunicorn.conf.py:

* the ceiling: requests/s of a bare bottle route (bench/hello_app.py), 16 clients, before and
  after the OPUS steps (the higher counts);
* jobs created per second (POST /rest/dummy, 303), 1 and 16 clients; the 16 clients' in three
  rounds, each right after a run on the ceiling: the fraction of the ceiling is the median of the
  three pairs';
* the job list with 1,000 jobs; LAST=100, PHASE=ERROR and the full list (with the serving worker's
  peak RSS) at 10,000 and 100,000 jobs (bulk-seeded through SQLAlchemy);
* GET /rest/dummy/<id>; PHASE=RUN -> COMPLETED seen through WAIT, and job end -> WAIT return;
* 1,000 WAITs held at once, other requests timed meanwhile, then all ended.

Each figure is printed beside its target, the original OPUS and (throughputs) the ceiling;
``--json FILE`` writes every figure.  Every unexpected answer or exception is counted and fails
the run (exit 1).  The servers are always stopped at the end, also on errors and Ctrl-C.
The pieces: common.py (client, statistics, /proc), server.py (gunicorn, seeding), measure.py,
waiters.py, report.py.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    ERRORS,
    FORM,
    HOST,
    REPO,
    BenchError,
    Client,
    cpu_times,
    loadavg,
    log,
    machine_use,
    percentile,
    raise_interrupt,
    raise_nofile,
    summary_ms,
)
from measure import Bench
from report import CREATE_CLIENTS, print_server_log, print_table, report_rows, size_tag
from server import (
    HelloServer,
    PostgresSchema,
    Seeder,
    Server,
    _no_control_socket,
    _pdeathsig,
    gunicorn_settings,
)
from waiters import measure_waiters, measure_waiters_one_job

from opus.service.waitslots import held_waits_limit  # noqa: E402 (the repository is on the path)

# Names bench/slurm.py uses from this module.
_loadavg, _raise_interrupt = loadavg, raise_interrupt
__all__ = [
    "FORM",
    "HOST",
    "REPO",
    "BenchError",
    "Client",
    "Server",
    "_loadavg",
    "_no_control_socket",
    "_pdeathsig",
    "_raise_interrupt",
    "log",
    "percentile",
    "print_server_log",
    "summary_ms",
]

# Sizes of a full run and of a --quick smoke run.
FULL = dict(ceiling=20000, create_1=2000, create_16=4000, list_small=1000, list_mid=10000, list_big=100000,
            list_small_reps=200, list_last_reps=200, list_phase_reps=100, list_full_reps=5, get_reps=500,
            run_reps=50, warmup=40, waiters=1000, waiter_requests=200, pairs=3, pair_ceiling=4000)
QUICK = dict(ceiling=1000, create_1=100, create_16=200, list_small=100, list_mid=1000, list_big=3000,
             list_small_reps=20, list_last_reps=20, list_phase_reps=10, list_full_reps=2, get_reps=50,
             run_reps=5, warmup=16, waiters=50, waiter_requests=20, pairs=3, pair_ceiling=200)


def run_steps(bench: Bench, s: dict, hello: HelloServer) -> None:
    log("warming up")
    bench.warmup()
    log(f"job list with {s['list_small']} jobs")
    bench.measure_list("list_small", s["list_small"], s["list_small_reps"])
    log("GET one job")
    bench.measure_get(s["get_reps"])
    log("RUN -> COMPLETED")
    bench.measure_run(s["run_reps"])
    log(f"creating {s['create_1']} jobs, 1 client")
    bench.measure_create("create_1", 1, s["create_1"])
    log(f"creating {s['create_16']} jobs, {CREATE_CLIENTS} clients, in {s['pairs']} rounds each after "
        f"{s['pair_ceiling']} requests to the ceiling")
    bench.measure_create_paired("create_16", CREATE_CLIENTS, s["create_16"], hello, s["pairs"], s["pair_ceiling"])
    log(f"{s['waiters']} concurrent waiters")
    measure_waiters(bench, s["waiters"], s["waiter_requests"])
    log(f"{s['waiters']} waiters on one job")
    measure_waiters_one_job(bench, s["waiters"])
    for jobs in (s["list_mid"], s["list_big"]):
        log(f"job lists with {jobs} jobs")
        bench.measure_lists_at(jobs)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Benchmark a real OPUS server (gunicorn) on 127.0.0.1.")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    p.add_argument("--database", default="sqlite",
                   help="'sqlite' (default: a fresh SQLite file in the temporary DATA_DIR) or a "
                        "postgresql+psycopg2:// URL (the run uses a private schema, dropped afterwards)")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run of a few seconds")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    p.add_argument("--keep", action="store_true", help="keep the temporary DATA_DIR and the server log")
    p.add_argument("--no-prefork", action="store_true",
                   help="LOCAL_PREFORK = False: a new interpreter per job wrapper (the before of issue 18.4)")
    return p.parse_args(argv)


def measure_ceiling(hello: HelloServer, sizes: dict, results: dict) -> None:
    probe = Bench(hello, sizes, None)
    probe.measure_ceiling(hello, CREATE_CLIENTS, sizes["ceiling"] // 10)  # warm-up
    probe.measure_ceiling(hello, CREATE_CLIENTS, sizes["ceiling"])
    # Measured before and after OPUS's steps: the higher is the ceiling (other load on the machine
    # only ever lowers it), both are kept.  The 16-client creation is also paired with ceiling runs
    # of its own (Bench.measure_create_paired).
    runs = results.get("ceiling_runs", []) + [probe.results["ceiling"]]
    results["ceiling_runs"] = runs
    results["ceiling"] = max(runs, key=lambda r: r["per_s"])


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.database != "sqlite" and not args.database.startswith("postgresql"):
        print("bench: --database must be 'sqlite' or a postgresql+psycopg2:// URL", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("bench: --workers must be >= 1", file=sys.stderr)
        return 2
    sizes = QUICK if args.quick else FULL
    threads = gunicorn_settings().get("threads")
    per_worker = held_waits_limit(None, threads) if isinstance(threads, int) else None
    if per_worker is not None and args.workers * per_worker < sizes["waiters"]:
        # a worker keeps a tenth of its threads free of WAITs (MAX_HELD_WAITS): the hold steps would fail
        print(f"bench: {args.workers} worker(s) of {threads} threads hold at most {args.workers * per_worker} "
              f"WAITs and the waiter steps hold {sizes['waiters']}: use --workers "
              f"{-(-sizes['waiters'] // max(1, per_worker))} or more", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, raise_interrupt)  # clean up on kill as on Ctrl-C
    nofile = raise_nofile(sizes["waiters"] + 1024)  # the waiters' sockets

    load_before = loadavg()
    if load_before is not None and load_before > 0.5 * (os.cpu_count() or 1):
        log(f"warning: the machine is busy (load average {load_before:.2f} on {os.cpu_count()} CPUs): "
            "the figures will be low and noisy")
    findings: dict = {}
    cpu_before = cpu_times()
    workdir = Path(tempfile.mkdtemp(prefix="opus-bench-"))
    pg = server = seeder = hello = None
    bench = None
    results: dict = {}
    status = 1
    started = time.time()
    try:
        hello = HelloServer(workdir, args.workers)  # up all along: the creation step pairs with it
        log(f"ceiling: starting bench/hello_app.py under gunicorn on {hello.url}")
        hello.start()
        measure_ceiling(hello, sizes, results)
        database_url = None
        if args.database != "sqlite":
            pg = PostgresSchema(args.database)
            pg.create()
            database_url = pg.url
        server = Server(workdir, database_url, args.workers, prefork=not args.no_prefork)
        server.write_settings()
        log(f"opus init ({'SQLite' if database_url is None else 'PostgreSQL schema ' + pg.name})")
        server.init()
        log(f"starting gunicorn on {server.url}")
        server.start()
        seeder = Seeder(server.settings_file)
        bench = Bench(server, sizes, seeder)
        bench.results = results
        run_steps(bench, sizes, hello)
        log("stopping the server")
        server.stop()
        log("ceiling, again")
        measure_ceiling(hello, sizes, results)
        status = 0
    except KeyboardInterrupt:
        log("interrupted")
        status = 130
    except Exception as exc:
        if isinstance(exc, BenchError):
            log(f"FAILED: {exc}")
        else:
            log("FAILED:\n" + traceback.format_exc())
            ERRORS.add(f"benchmark exception: {type(exc).__name__}", str(exc))
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
        if hello is not None:
            hello.stop()
        if pg is not None:
            try:
                pg.drop()
            except Exception as exc:
                log(f"could not drop schema {pg.name}: {exc}")
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    results["errors"] = ERRORS.as_dict()
    if status == 0 and ERRORS.total:
        log(f"FAILED: {ERRORS.total} error(s) during the run")
        status = 1
    if not results:
        return status
    meta = {
        "database": "sqlite" if args.database == "sqlite" else "postgresql",
        "quick": args.quick, "workers": args.workers, "prefork": not args.no_prefork,
        "clients": CREATE_CLIENTS, "cpu_count": os.cpu_count(),
        "gunicorn": gunicorn_settings(), "client_nofile": nofile,
        "python": platform.python_version(), "platform": platform.platform(),
        "client_approach": "see common.CLIENT_APPROACH", "sizes": sizes, "complete": status == 0,
        "list_sizes": [size_tag(sizes["list_mid"]), size_tag(sizes["list_big"])],
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "load_average_before": load_before, "load_average_after": loadavg(), "server_log": findings,
        **machine_use(cpu_before, cpu_times()),
        "baseline": {"create_jobs_per_s": 9.8, "list_1000_ms": 87, "get_job_ms": 59, "run_to_completed_ms": 671},
    }
    try:
        meta["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                            text=True, timeout=10).stdout.strip() or None
    except Exception:
        meta["git_commit"] = None
    rows = report_rows(results, sizes, meta["database"])
    print_table(rows, results, meta)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "summary": rows, "results": results}, indent=2) + "\n")
        log(f"wrote {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
