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

The pieces: slurm_common.py (bench/run.py's parts, constants), slurm_server.py (gunicorn with the
bench's diagnostics), slurm_logs.py (the cluster, CPU use and the logs read afterwards),
slurm_measure.py (the three measurements), slurm_report.py (the table); this file runs them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from slurm_common import DATA_ROOT, FULL, QUICK, REPO, TARGETS, BenchError, R, log
from slurm_logs import Ours, cluster_check, cpu_pressure_avg
from slurm_measure import Bench
from slurm_report import print_table, report_rows
from slurm_server import SlurmServer


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
