"""Fault suite, SLURM part (issue 14): the real test cluster (scripts/slurm-cluster.sh, as root) made
to fail under OPUS.  Every job must run exactly once (its script counts its runs in work/runs.txt)
and end in the phase that matches what happened; SLURM's own record (the jobcomp log's WorkDir,
``squeue -t all``'s comment) must show one SLURM job per OPUS job.

* slurmctld stopped while jobs are submitted: they stay QUEUED, /availability says why, and all
  complete once it is back (the time to settle is printed: ``pytest -s``).
* scancel behind OPUS's back, of a pending job (no epilog runs: the followed jobcomp log ends it)
  and of a running one.
* SLURM's ``--time`` hit while the OPUS server is down: final within seconds of the restart.
* kill -9 of the whole server (gunicorn) while sbatch runs: no double submission.

The reduced form runs in scripts/test.sh; ``OPUS_FAULTS_FULL=1`` runs more jobs and kills.
These tests stop slurmctld for a while: other SLURM tests running at the same time see an outage.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

import helpers
from conftest import LiveServer, make_settings
from gunicorn_server import GunicornServer
from helpers import wait_for
from opus.managers.slurm import SUBMITTING
from opus.settings import REPO_ROOT
from opus.uws import Phase
from test_slurm import JOBCOMP, _command_log_dir, cluster, shared_dir  # noqa: F401 - fixtures

pytestmark = pytest.mark.slurm
FULL = os.environ.get("OPUS_FAULTS_FULL") == "1"
CLUSTER_SCRIPT = REPO_ROOT / "scripts" / "slurm-cluster.sh"
INSTALLED_EPILOG = Path("/usr/local/lib/opus/opus-slurm-epilog")
ONCE = {
    "name": "once", "version": "1.0", "type": "test", "executionDuration": 120, "quote": 1,
    "description": "Count each run in runs.txt, sleep, then write the text (the fault suite's job).",
    "parameters": {
        "text": {"type": "string", "default": "x", "required": False, "description": "Written to output.txt"},
        "seconds": {"type": "float", "default": "0", "min": 0, "max": 3600, "description": "Sleep", "unit": "s"},
    },
    "generated": {"output": {"file": "output.txt", "content_type": "text/plain", "description": "The text"}},
    "script": "echo ran >> runs.txt\nsleep \"$seconds\"\nprintf '%s\\n' \"$text\" > output.txt\n",
}


# ---- the cluster, the jobs, SLURM's record ----------------------------------------------------------------
def cluster_command(*args: str) -> None:
    done = subprocess.run(["bash", str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def faults(cluster, shared_dir):  # noqa: F811 - fixtures from test_slurm
    """A data directory the epilog can reach, a job definition that counts its runs, and the
    current epilog installed (scripts/test.sh installs it too); slurmctld is running afterwards."""
    if INSTALLED_EPILOG.exists() and os.access(INSTALLED_EPILOG.parent, os.W_OK) and \
            INSTALLED_EPILOG.read_bytes() != (REPO_ROOT / "scripts" / "opus-slurm-epilog").read_bytes():
        shutil.copyfile(REPO_ROOT / "scripts" / "opus-slurm-epilog", INSTALLED_EPILOG)
    jdl = shared_dir / "jdl"
    shutil.copytree(REPO_ROOT / "jdl", jdl)
    (jdl / "once.json").write_text(json.dumps(ONCE))
    yield jdl
    cluster_command("start-ctld")
    subprocess.run(["scancel", "-u", "root", "-n", "opus-once"], capture_output=True)


def runs(jobs_dir: Path, job_id: str) -> int:
    """How many times the job's script started."""
    try:
        return len((jobs_dir / job_id / "work" / "runs.txt").read_text().splitlines())
    except FileNotFoundError:
        return 0


def slurm_jobs_per_opus_job(jobs_dir: Path) -> Counter[str]:
    """OPUS job id -> SLURM jobs that ran (jobcomp WorkDir) or are known (squeue -t all comment)."""
    seen: dict[str, set[str]] = {}
    prefix = str(jobs_dir) + "/"
    for line in Path(JOBCOMP).read_text(errors="replace").splitlines():
        m = re.match(r"JobId=(\d+) .* WorkDir=(\S+) ", line)
        if m and m.group(2).startswith(prefix):
            seen.setdefault(m.group(2)[len(prefix):], set()).add(m.group(1))
    queue = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%k"], capture_output=True, text=True).stdout
    for line in queue.splitlines():
        slurm_id, _, comment = line.partition("|")
        if comment.startswith("opus:"):
            seen.setdefault(comment[5:], set()).add(slurm_id)
    return Counter({job_id: len(ids) for job_id, ids in seen.items()})


def job_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def assert_exactly_once(http, urls: list[str], jobs_dir: Path, phase: str = "COMPLETED") -> None:
    per_job = slurm_jobs_per_opus_job(jobs_dir)
    for url in urls:
        assert helpers.phase_of(http, url) == phase, http.get(url).text
        assert runs(jobs_dir, job_id(url)) == 1, f"{url}: the script ran {runs(jobs_dir, job_id(url))} times"
        assert per_job[job_id(url)] == 1, f"{url}: {per_job[job_id(url)]} SLURM jobs"


def slurm_server(shared_dir: Path, jdl: Path, **overrides) -> LiveServer:
    values = dict(MANAGER="slurm", SLURM_JOBCOMP_LOG=JOBCOMP, SLURM_RECONCILE_MINUTES=60,
                  CALLBACK_RETRY_SECONDS=2, JDL_DIR=str(jdl))
    values.update(overrides)
    return LiveServer(make_settings(shared_dir, **values))


def cpus() -> int:
    return int(subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()[0])


# ---- the scheduler goes away ----------------------------------------------------------------------------
def test_slurmctld_outage_keeps_jobs_queued_then_runs_each_once(faults, shared_dir):  # noqa: F811
    server = slurm_server(shared_dir, faults, SLURM_BIN_DIR=str(_command_log_dir(shared_dir)))
    log = shared_dir / "commands.log"
    try:
        cluster_command("stop-ctld")
        down = time.monotonic()
        urls = [server.create("once", {"text": f"job {i}"}, run=True) for i in range(12 if FULL else 4)]
        wait_for(lambda: "<vosi:available>false" in server.http.get(f"{server.url}/availability").text, 120,
                 "/availability to report the outage")
        # Long enough for the old retries (4 sbatch per job, then ERROR) to have given up on a job.
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= (8 if FULL else 5), 240,
                 "the dispatcher to retry")
        commands = log.read_text()
        availability = server.http.get(f"{server.url}/availability").text
        assert server.http.get(f"{server.url}/availability").text == availability
        assert log.read_text().count("squeue") == commands.count("squeue")  # answered from the cache
        assert "Unable to contact slurm controller" in availability, availability
        assert all(helpers.phase_of(server.http, u) == "QUEUED" for u in urls)
        cluster_command("start-ctld")
        back = time.monotonic()
        for url in urls:
            assert server.wait_final(url, timeout=120) == "COMPLETED", server.http.get(url).text
        print(f"\nFAULTS slurmctld outage of {back - down:.0f} s: {len(urls)} jobs final "
              f"{time.monotonic() - back:.1f} s after the scheduler came back")
        assert_exactly_once(server.http, urls, server.settings.jobs_dir)
        assert server.http.get(urls[0] + "/results/output").text == "job 0\n"
        wait_for(lambda: "<vosi:available>true" in server.http.get(f"{server.url}/availability").text, 30,
                 "/availability to report the scheduler back")
    finally:
        server.stop()


# ---- scancel behind OPUS's back -------------------------------------------------------------------------------
def test_scancel_of_pending_and_running_jobs_ends_them_in_seconds(faults, shared_dir):  # noqa: F811
    server = slurm_server(shared_dir, faults)
    try:
        every_cpu = {"seconds": "120", "slurm_cpus_per_task": str(cpus())}
        running = server.create("once", every_cpu, run=True)
        assert helpers.wait_phase(server.http, running, {"EXECUTING"}, 60) == "EXECUTING"
        pending = server.create("once", every_cpu, run=True)
        store = server.services.store
        wait_for(lambda: str(store.get_manager_id(job_id(pending)) or "")[6:].isdigit(), 30,
                 "the pending job's sbatch")
        for url in (pending, running):  # no epilog runs for a job that never started: the jobcomp log says it
            subprocess.run(["scancel", store.get_manager_id(job_id(url))[6:]], check=True)
            t0 = time.monotonic()
            assert server.wait_final(url, timeout=30) == "ABORTED", server.http.get(url).text
            print(f"\nFAULTS scancel of a {'pending' if url == pending else 'running'} job: "
                  f"ABORTED after {time.monotonic() - t0:.1f} s")
        assert runs(server.settings.jobs_dir, job_id(pending)) == 0
        assert runs(server.settings.jobs_dir, job_id(running)) == 1
    finally:
        server.stop()


# ---- the server goes away ---------------------------------------------------------------------------------
def test_time_limit_hit_while_the_server_is_down_is_final_soon_after_restart(faults, shared_dir):  # noqa: F811
    # --time = ceil((120 - 100) / 60) = 1 minute: SLURM's limit comes before the wrapper's own 120 s.
    # The wrapper, stopped by SLURM, keeps trying to report to the absent server (as it would for 15
    # minutes by default): the SLURM job lingers, COMPLETING, with its report.json written.
    settings = dict(SLURM_TIME_MARGIN=-100, CALLBACK_RETRY_SECONDS=600)
    first = slurm_server(shared_dir, faults, **settings)
    url = first.create("once", {"seconds": "600"}, run=True)
    assert helpers.wait_phase(first.http, url, {"EXECUTING"}, 60) == "EXECUTING"
    slurm_id = first.services.store.get_manager_id(job_id(url))[6:]
    first.stop()
    report = first.settings.jobs_dir / job_id(url) / "report.json"
    wait_for(lambda: report.exists() or f"JobId={slurm_id} " in Path(JOBCOMP).read_text(errors="replace"), 180,
             "SLURM to stop the job at its time limit")
    second = slurm_server(shared_dir, faults, **settings)
    try:
        t0 = time.monotonic()
        url = f"{second.url}/rest/once/{job_id(url)}"
        assert second.wait_final(url, timeout=30) == "ABORTED", second.http.get(url).text
        print(f"\nFAULTS --time while the server was down: final {time.monotonic() - t0:.1f} s after restart")
        assert runs(second.settings.jobs_dir, job_id(url)) == 1
    finally:
        second.stop()


SLOW_SBATCH = """#!/bin/sh
# sbatch that is slow before and after submitting: a kill -9 of the server lands mid-submission.
echo "sbatch $*" >> {log}
sleep 0.4
out=$({real} "$@")
rc=$?
sleep 0.6
echo "sbatch done" >> {log}
echo "$out"
exit $rc
"""


def test_kill9_of_the_server_during_submission_submits_each_job_once(faults, shared_dir):  # noqa: F811
    bindir = shared_dir / "bin"
    bindir.mkdir()
    log = shared_dir / "commands.log"
    (bindir / "sbatch").write_text(SLOW_SBATCH.format(log=log, real=shutil.which("sbatch")))
    for name in ("squeue", "scancel", "scontrol"):
        (bindir / name).write_text(f'#!/bin/sh\nexec {shutil.which(name)} "$@"\n')
    for f in bindir.iterdir():
        f.chmod(0o755)
    server = GunicornServer(shared_dir, workers=1, MANAGER="slurm", SLURM_JOBCOMP_LOG=JOBCOMP,
                            SLURM_BIN_DIR=str(bindir), SLURM_RECONCILE_MINUTES=60, CALLBACK_RETRY_SECONDS=2,
                            JDL_DIR=str(faults), SERVICE_USER="root")
    urls: list[str] = []
    try:
        server.start()
        for kill in range(3 if FULL else 1):
            urls += [server.create("once", {"text": f"kill {kill} job {i}"}, run=True) for i in range(6)]
            sbatches = len(urls) - 6 + 2
            wait_for(lambda: log.exists() and log.read_text().count("sbatch ") >= sbatches, 60,
                     "sbatch to be under way")
            for pid in [*server.worker_pids(), server.proc.pid]:
                os.kill(pid, signal.SIGKILL)
            server.proc.wait()
            # The server stays down until the sbatch it left behind has submitted and its job has run.
            wait_for(lambda: log.read_text().count("sbatch done") == log.read_text().count("sbatch --"), 60,
                     "the orphaned sbatch to end")
            wait_for(lambda: not subprocess.run(["squeue", "-h", "-n", "opus-once", "-o", "%i"], capture_output=True,
                                                text=True).stdout.split(), 60, "the submitted jobs to end")
            server.start()
            back = time.monotonic()
        for url in urls:
            assert helpers.wait_final(server.http, url, 120) == "COMPLETED", server.http.get(url).text
        print(f"\nFAULTS kill -9 during submission: {len(urls)} jobs final {time.monotonic() - back:.1f} s "
              "after the last restart")
        assert_exactly_once(server.http, urls, server.data_dir / "jobs")
        assert log.read_text().count("sbatch --") == len(urls)  # the dead server's sbatch was adopted
    finally:
        server.close()


def test_a_job_left_submitting_with_a_report_is_settled_not_submitted_again(faults, shared_dir):  # noqa: F811
    """The issue's double run: a server died after sbatch and before recording its id; the job ran
    and SLURM has forgotten it.  At restart its report.json settles it; sbatch is not run again."""
    first = slurm_server(shared_dir, faults)
    url = first.create("once")
    store, jobs_dir = first.services.store, first.settings.jobs_dir
    first.stop()
    assert store.set_phase(job_id(url), Phase.QUEUED, [Phase.PENDING]) and store.claim(job_id(url), SUBMITTING)
    (jobs_dir / job_id(url)).mkdir(parents=True, exist_ok=True)
    (jobs_dir / job_id(url) / "report.json").write_text(json.dumps({"phase": "ERROR", "message": "saved report"}))
    second = slurm_server(shared_dir, faults, SLURM_BIN_DIR=str(_command_log_dir(shared_dir)))
    try:
        url = f"{second.url}/rest/once/{job_id(url)}"
        assert second.wait_final(url, timeout=30) == "ERROR"
        assert "saved report" in second.http.get(url).text
        log = shared_dir / "commands.log"
        assert not log.exists() or "sbatch" not in log.read_text()
    finally:
        second.stop()
