"""Shared by the SLURM benchmark's modules: bench/run.py's pieces, and the constants of the run."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path


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
