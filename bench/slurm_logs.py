"""What the SLURM benchmark reads besides HTTP answers: the cluster (squeue, sinfo), the CPU use of
the processes of the run, and the logs of slurmctld, jobcomp, the server and gunicorn's access log."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

from slurm_common import IDLE_TIMEOUT, JOBCOMP_LOG, BenchError


def parse_local(text: str, fmt: str) -> float:
    """A local-time stamp (slurmctld's log, Python's asctime) -> epoch seconds."""
    return datetime.strptime(text, fmt).timestamp()


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
