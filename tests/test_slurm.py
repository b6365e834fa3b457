"""The SLURM manager against a real single-node SLURM cluster (scripts/slurm-cluster.sh): what is
SLURM's own (sbatch options, scancel, the epilog, ssh mode).  What every manager does (completion,
errors, abort, executionDuration, restart) is tests/test_manager_contract.py.

Without a cluster these tests are skipped, except when OPUS_REQUIRE_SLURM=1 (CI), where that is
a failure.  The cluster's EpilogSlurmctld must be scripts/opus-slurm-epilog and its jobcomp log
/var/log/slurm/jobcomp.log (what scripts/test.sh sets up).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import helpers
from conftest import LiveServer, make_settings
from helpers import wait_for
from opus.managers.slurm_states import SLURM_STATES, phase_of
from opus.uws import Phase
JOBCOMP = "/var/log/slurm/jobcomp.log"
pytestmark = pytest.mark.slurm


def _cluster_ready() -> str | None:
    if not shutil.which("sinfo"):
        return "no SLURM commands (run scripts/slurm-cluster.sh start)"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if done.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc")) for s in done.stdout.split()):
        return f"no usable SLURM node: {done.stdout.strip()} {done.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = _cluster_ready()
    if problem:
        if os.environ.get("OPUS_REQUIRE_SLURM") == "1":
            pytest.fail(f"OPUS_REQUIRE_SLURM=1 but {problem}")
        pytest.skip(problem)


@pytest.fixture
def shared_dir():
    """A DATA_DIR that slurmctld's epilog (running as SlurmUser) can traverse, like a shared FS."""
    base = Path("/var/tmp/opus-slurm-tests")
    base.mkdir(exist_ok=True)
    base.chmod(0o755)
    d = Path(tempfile.mkdtemp(dir=base))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _command_log_dir(tmp: Path) -> Path:
    """sbatch/squeue/scancel wrappers that log each call, then run the real command.  While the file
    ``hold-sbatch`` exists in ``tmp``, sbatch waits (a test's way to catch a request waiting for it)."""
    bindir = tmp / "bin"
    bindir.mkdir()
    for name in ("sbatch", "squeue", "scancel"):
        real = shutil.which(name)
        script = bindir / name
        hold = f'while [ -e {tmp}/hold-sbatch ]; do sleep 0.05; done\n' if name == "sbatch" else ""
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> {tmp}/commands.log\n{hold}exec {real} "$@"\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bindir


@pytest.fixture
def slurm(cluster, shared_dir):
    bindir = _command_log_dir(shared_dir)
    server = LiveServer(make_settings(shared_dir, MANAGER="slurm", SLURM_JOBCOMP_LOG=JOBCOMP,
                                      SLURM_BIN_DIR=str(bindir), SLURM_RECONCILE_MINUTES=60,
                                      CALLBACK_RETRY_SECONDS=2))
    server.commands = lambda: (shared_dir / "commands.log").read_text().splitlines() \
        if (shared_dir / "commands.log").exists() else []
    yield server
    server.stop()
    subprocess.run(["scancel", "-u", "root", "-n", "opus-sleep"], capture_output=True)


def wait_phase(server, url, phases, timeout=60):
    return helpers.wait_phase(server.http, url, phases, timeout)


def test_state_table_covers_the_issue_mapping():
    assert phase_of("PENDING") is Phase.QUEUED and phase_of("RUNNING") is Phase.EXECUTING
    assert phase_of("PENDING", "JobHeldUser") is Phase.HELD
    assert phase_of("CANCELLED by 0") is Phase.ABORTED and phase_of("TIMEOUT") is Phase.ABORTED
    for state in ("FAILED", "NODE_FAIL", "OUT_OF_MEMORY"):
        assert SLURM_STATES[state] is Phase.ERROR
    assert phase_of("COMPLETED") is Phase.COMPLETED and phase_of("SUSPENDED") is Phase.SUSPENDED


def test_lifecycle_with_results_and_one_sbatch_no_polling(slurm, shared_dir):
    # RUN does not wait for sbatch: it is answered while sbatch is held (the order of events, no clock)
    hold = shared_dir / "hold-sbatch"
    hold.touch()
    try:
        r = slurm.http.post(slurm.url + "/rest/dummy", data={"text": "hello slurm", "PHASE": "RUN"},
                            allow_redirects=False, timeout=120)  # a RUN waiting for sbatch: never answered
        assert r.status_code == 303, r.text
        url = r.headers["Location"]
        wait_for(lambda: any(c.startswith("sbatch") for c in slurm.commands()), 60, what="the call of sbatch")
        assert slurm.http.get(url + "/phase").text == "QUEUED"  # sbatch called, not returned yet
    finally:
        hold.unlink()
    assert wait_phase(slurm, url, {"COMPLETED", "ERROR"}) == "COMPLETED"
    assert slurm.http.get(url + "/results/output").text == "hello slurm\n"
    xml = slurm.http.get(url).text
    assert "<uws:startTime>" in xml and "<uws:endTime>" in xml
    time.sleep(1.5)  # let the epilog's hint arrive: it must not cause a query either
    commands = slurm.commands()
    assert [c.split()[0] for c in commands] == ["squeue", "sbatch"] or [c.split()[0] for c in commands] == ["sbatch"]
    sbatch = [c for c in commands if c.startswith("sbatch")][0]
    assert "--comment=opus:" in sbatch and "--time=2" in sbatch  # 60 s + 60 s margin -> 2 minutes


def test_bad_partition_is_error_with_sbatch_words(slurm):
    url = slurm.create("sleep", {"seconds": "0", "slurm_partition": "nosuchpartition"}, run=True)
    assert wait_phase(slurm, url, {"ERROR", "COMPLETED"}) == "ERROR"
    assert "invalid partition" in slurm.http.get(url).text.lower()


def test_slurm_options_are_checked_at_creation(slurm):
    for data in ({"slurm_partition": "a b"}, {"slurm_mem": "lots"}, {"slurm_nodes": "0"}, {"slurm_colour": "red"}):
        r = slurm.http.post(f"{slurm.url}/rest/dummy", data=data, allow_redirects=False)
        assert r.status_code == 400, data


def test_abort_running_and_queued_jobs(slurm):
    cpus = int(subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()[0])
    busy = slurm.create("sleep", {"seconds": "60", "slurm_cpus_per_task": str(cpus)}, run=True)
    assert wait_phase(slurm, busy, {"EXECUTING"}) == "EXECUTING"
    queued = slurm.create("sleep", {"seconds": "60", "slurm_cpus_per_task": str(cpus)}, run=True)
    # A SLURM id, not "slurm:submitting" (sbatch still running): the squeue below needs both ids.
    wait_for(lambda: re.fullmatch(r"slurm:\d+", str(slurm.services.store.get_manager_id(queued.rsplit("/", 1)[1]))),
             60, "the second job to be submitted")
    assert slurm.http.get(queued + "/phase").text == "QUEUED"
    for url in (queued, busy):
        r = slurm.http.post(url + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False)
        assert r.status_code == 303
        assert slurm.http.get(url + "/phase").text == "ABORTED"
    slurm_ids = [slurm.services.store.get_manager_id(u.rsplit("/", 1)[1])[6:] for u in (busy, queued)]
    wait_for(lambda: not subprocess.run(["squeue", "-h", "-j", ",".join(slurm_ids), "-o", "%i"],
                                        capture_output=True, text=True).stdout.split(), 30,
             f"SLURM jobs {slurm_ids} to be cancelled")
    assert sum(1 for c in slurm.commands() if c.startswith("scancel")) == 2


def _wrapper_pid(job_dir: Path) -> int:
    spec = str(job_dir / "job.json").encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if spec in cmdline and any(part.endswith(b"wrapper.py") for part in cmdline):
                return int(entry)
    raise AssertionError(f"no wrapper process for {job_dir}")


def test_sigkilled_wrapper_is_reported_by_the_epilog(slurm):
    """The wrapper cannot report a SIGKILL: the epilog's hint and the jobcomp log settle the job."""
    url = slurm.create("sleep", {"seconds": "60"}, run=True)
    assert wait_phase(slurm, url, {"EXECUTING"}) == "EXECUTING"
    job_id = url.rsplit("/", 1)[1]
    slurm_id = slurm.services.store.get_manager_id(job_id)[6:]
    os.kill(_wrapper_pid(slurm.settings.jobs_dir / job_id), 9)
    phase = wait_phase(slurm, url, {"ERROR", "ABORTED", "COMPLETED"}, timeout=30)
    assert phase == "ERROR"
    assert f"SLURM job {slurm_id}" in slurm.http.get(url).text  # the message comes from the epilog path
    assert not any(c.startswith("squeue") for c in slurm.commands()[1:])  # no reconciliation needed


def test_forged_epilog_hints_change_nothing(slurm):
    url = slurm.create("sleep", {"seconds": "30"}, run=True)
    assert wait_phase(slurm, url, {"EXECUTING"}) == "EXECUTING"
    job_id = url.rsplit("/", 1)[1]
    slurm_id = slurm.services.store.get_manager_id(job_id)[6:]
    for hint in ({"slurm_job_id": slurm_id}, {"slurm_job_id": str(int(slurm_id) + 1000)}, {"slurm_job_id": "x"}):
        r = slurm.http.post(f"{slurm.url}/handler/job_event",
                            json={"event": "slurm_end", "job_id": job_id, "exit_code": "0:9", **hint})
        assert r.status_code == 200 and r.json()["outcome"] == "ignored", r.text
    r = slurm.http.post(f"{slurm.url}/handler/job_event", json={"event": "slurm_end", "job_id": "f" * 16,
                                                                "slurm_job_id": slurm_id})
    assert r.status_code == 404
    assert slurm.http.get(url + "/phase").text == "EXECUTING"
    slurm.http.post(url + "/phase", data={"PHASE": "ABORT"})


def test_scancel_of_a_running_job_ends_it_aborted(slurm):
    url = slurm.create("sleep", {"seconds": "60"}, run=True)
    assert wait_phase(slurm, url, {"EXECUTING"}) == "EXECUTING"
    slurm_id = slurm.services.store.get_manager_id(url.rsplit("/", 1)[1])[6:]
    subprocess.run(["scancel", "--signal=KILL", slurm_id], check=True)
    assert wait_phase(slurm, url, {"ERROR", "ABORTED", "COMPLETED"}, timeout=30) == "ABORTED"
    assert "<uws:errorSummary" in slurm.http.get(url).text


def test_fifty_jobs_at_once(slurm):
    urls = [slurm.create("dummy", {"text": f"job {i}"}, run=True) for i in range(50)]
    for i, url in enumerate(urls):
        assert wait_phase(slurm, url, {"COMPLETED", "ERROR"}, timeout=180) == "COMPLETED"
        assert slurm.http.get(url + "/results/output").text == f"job {i}\n"
    commands = slurm.commands()
    assert sum(1 for c in commands if c.startswith("sbatch")) == 50
    assert sum(1 for c in commands if c.startswith("squeue")) <= 1  # the start-up reconciliation only


def test_a_job_cancelled_while_the_server_is_down_is_aborted_at_restart(cluster, shared_dir):
    """Jobs that end while the server is down: tests/test_manager_contract.py.  Here SLURM's own
    record (squeue, the jobcomp log) says how a job it cancelled ended."""
    settings = make_settings(shared_dir, MANAGER="slurm", SLURM_JOBCOMP_LOG=JOBCOMP, CALLBACK_RETRY_SECONDS=1)
    first = LiveServer(settings)
    cancelled = first.create("sleep", {"seconds": "60"}, run=True)
    wait_phase(first, cancelled, {"EXECUTING"})
    cancelled_slurm = first.services.store.get_manager_id(cancelled.rsplit("/", 1)[1])[6:]
    first.stop()
    subprocess.run(["scancel", cancelled_slurm], check=True)
    wait_for(lambda: not subprocess.run(["squeue", "-h", "-j", cancelled_slurm, "-o", "%i"], capture_output=True,
                                        text=True).stdout.split(), 30, "SLURM to end the cancelled job")
    second = LiveServer(settings)
    try:
        url = f"{second.url}/rest/sleep/{cancelled.rsplit('/', 1)[1]}"
        assert wait_phase(second, url, {"COMPLETED", "ERROR", "ABORTED"}, timeout=30) == "ABORTED"
    finally:
        second.stop()


# ---- ssh mode: a real sshd on 127.0.0.1, no shared directory ------------------------------------------
@pytest.fixture
def sshd(cluster, shared_dir):
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd_bin):
        if os.environ.get("OPUS_REQUIRE_SLURM") == "1":
            pytest.fail("no sshd (Debian's openssh-server): scripts/test.sh installs it")
        pytest.skip("no sshd (apt-get install openssh-server)")
    d = shared_dir / "ssh"
    d.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "user_key")], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n")
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host_key.pub').read_text()}")
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.DEVNULL)
    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(listening, 60, "sshd to listen")
    yield {"SLURM_SSH_HOST": "127.0.0.1", "SLURM_SSH_PORT": port, "SLURM_SSH_USER": "root",
           "SLURM_SSH_KEY": str(d / "user_key"), "SLURM_SSH_KNOWN_HOSTS": str(d / "known_hosts")}
    proc.terminate()
    proc.wait(10)


def test_ssh_mode_without_shared_directory(cluster, shared_dir, sshd):
    remote = shared_dir / "cluster-side"
    remote.mkdir()
    remote.chmod(0o755)
    bindir = _command_log_dir(shared_dir)
    server = LiveServer(make_settings(shared_dir / "server-side", MANAGER="slurm", SLURM_JOBCOMP_LOG=JOBCOMP,
                                      SLURM_BIN_DIR=str(bindir), SLURM_REMOTE_DIR=str(remote), **sshd))
    try:
        url = server.create("copy", files={"infile": ("in.dat", b"remote bytes\n")}, run=True)
        job_id = url.rsplit("/", 1)[1]
        assert wait_phase(server, url, {"COMPLETED", "ERROR", "ABORTED"}) == "COMPLETED", server.http.get(url).text
        assert server.http.get(url + "/results/copy").content == b"remote bytes\n"
        assert server.http.get(url + "/results/size").text.strip() == "13"
        # The job ran in the cluster-side copy and its results came back to the server's.
        assert (remote / job_id / "results" / "copy.dat").is_file()
        assert (server.settings.jobs_dir / job_id / "results" / "copy.dat").is_file()
        assert str(remote / job_id / "uploads" / "infile") in (remote / job_id / "job.json").read_text()
        # A failing job's message and stderr come back too.
        failing = server.create("fail", {"message": "remote failure"}, run=True)
        assert wait_phase(server, failing, {"COMPLETED", "ERROR"}) == "ERROR"
        assert server.http.get(failing + "/stderr").text == "remote failure\n"
        # DELETE removes both copies.
        assert server.http.delete(url, allow_redirects=False).status_code == 303
        wait_for(lambda: not (remote / job_id).exists(), 60, "the cluster-side directory to be removed")
        assert (shared_dir / "commands.log").read_text().count("sbatch") == 2
    finally:
        server.stop()


# ---- what the manager reads besides reports (no cluster needed) -------------------------------------------
def _jobcomp_line(slurm_id: int, state: str, work_dir: str) -> str:
    return (f"JobId={slurm_id} UserId=root(0) GroupId=root(0) Name=opus-once JobState={state} Partition=debug "
            f"TimeLimit=2 NodeList=localhost WorkDir={work_dir} ReservationName= Tres=cpu=1 Account= "
            f"QOS= WcKey= Cluster=unknown DerivedExitCode=0:0 ExitCode=0:0 \n")


def test_jobcomp_log_is_followed_from_where_it_stopped(tmp_path):
    from opus.managers.slurm_records import JobcompFollower

    log = tmp_path / "jobcomp.log"
    jobs = tmp_path / "my jobs"
    log.write_text(_jobcomp_line(1, "COMPLETED", f"{jobs}/aaaa") + _jobcomp_line(2, "FAILED", "/elsewhere/bbbb"))
    follower = JobcompFollower(str(log), str(jobs))
    assert follower.new() == []  # what the log held at the first read is history
    assert follower.state_of("1") == ("COMPLETED", "0:0") and follower.state_of("2") == ("", "")
    with log.open("a") as f:  # a line written in two pieces is read once it is whole
        line = _jobcomp_line(3, "CANCELLED", f"{jobs}/cccc")
        f.write(line[:40])
    assert follower.new() == [] and follower.of_job("cccc") == []
    with log.open("a") as f:
        f.write(line[40:])
    assert follower.state_of("3") == ("CANCELLED", "0:0")  # a lookup does not take the line from the dispatcher
    assert [(e.slurm_id, e.job_id, e.state) for e in follower.new()] == [("3", "cccc", "CANCELLED")]
    assert follower.new() == []
    log.write_text(_jobcomp_line(4, "TIMEOUT", f"{jobs}/dddd"))  # rotated (copytruncate): read from the start
    assert [e.slurm_id for e in follower.new()] == ["4"] and follower.of_job("dddd") == ["4"]


def test_transient_failures_are_told_from_refusals():
    from opus.managers.slurm_records import is_transient

    assert is_transient("sbatch: error: Batch job submission failed: Unable to contact slurm controller "
                        "(connect failure)")
    assert is_transient("sbatch: error: Socket timed out on send/recv operation")
    assert is_transient("ssh: connect to host login: Connection refused", 255)
    assert not is_transient("sbatch: error: Batch job submission failed: Invalid partition name specified")
    assert not is_transient("sbatch: error: Batch job submission failed: Invalid account or account/partition "
                            "combination specified")


def test_the_epilog_spools_a_hint_the_server_cannot_take(tmp_path):
    """The server is down: the epilog leaves its hint in DATA_DIR/slurm-spool, and only there."""
    from opus.managers.slurm_records import EpilogSpool

    data = tmp_path / "data"
    work = data / "jobs" / "0123abcd"
    work.mkdir(parents=True)
    (work / "callback_url").write_text("http://127.0.0.1:9")  # nobody listens
    spool = EpilogSpool(data / "slurm-spool")
    spool.create()
    env = {"PATH": os.environ["PATH"], "SLURM_JOB_COMMENT": "opus:0123abcd", "SLURM_JOB_WORK_DIR": str(work),
           "SLURM_JOB_ID": "4242", "SLURM_JOB_EXIT_CODE2": "0:9", "SLURM_JOB_UID": str(os.getuid())}
    epilog = Path(__file__).resolve().parent.parent / "scripts" / "opus-slurm-epilog"
    subprocess.run([sys.executable, str(epilog)], env=env, check=True, timeout=60)
    assert [(h.job_id, h.slurm_id, h.exit_code) for h in spool.drain()] == [("0123abcd", "4242", "0:9")]
    assert spool.drain() == [] and not list((data / "slurm-spool").iterdir())
    # A comment naming another directory, or a spool that is a link, gets nothing written.
    (data / "slurm-spool").rmdir()
    (data / "slurm-spool").symlink_to(tmp_path)
    subprocess.run([sys.executable, str(epilog)], env=env, check=True, timeout=60)
    subprocess.run([sys.executable, str(epilog)], env={**env, "SLURM_JOB_COMMENT": "opus:../x"}, check=True,
                   timeout=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
