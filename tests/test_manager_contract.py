"""The Manager contract: what every execution back end does, run against LocalManager and SlurmManager.

Each behaviour below runs once per back end, through the real server (LiveServer: real HTTP, the
real wrapper calling back with its token).  What only one back end does stays in its own file:
sandboxing in tests/test_isolation.py, sbatch/squeue/scancel, the epilog and ssh mode in
tests/test_slurm.py.  SLURM cases need the cluster that scripts/test.sh starts (marked ``slurm``).

The same behaviours run against tests/fakes.FakeManager too (in-process, ``ApiServer``), so that
the fake the fast API tests use cannot drift from what the real managers do; a restart concerns
real processes only.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ApiServer, LiveServer, make_settings
from helpers import wait_for, wait_phase
from opus.managers.local import _group_alive
from test_slurm import JOBCOMP, cluster, shared_dir  # noqa: F401 - fixtures

ENDED = ("COMPLETED", "ERROR", "ABORTED")


@dataclass
class Backend:
    """One manager under test: how to configure a server for it, and how to see a job's processes."""

    name: str
    settings: object
    #: True once nothing of the job runs any more (its process group, its SLURM job).
    stopped: Callable[[LiveServer, str], bool]

    def server(self) -> LiveServer | ApiServer:
        return ApiServer(self.settings) if self.name == "fake" else LiveServer(self.settings)


def _local_stopped(server: LiveServer, job_id: str) -> bool:
    try:
        pgid = int((server.settings.jobs_dir / job_id / "script.pgid").read_text())
    except (OSError, ValueError):
        return True  # the script never started
    return not _group_alive(pgid)


def _slurm_stopped(server: LiveServer, job_id: str) -> bool:
    manager_id = server.services.store.get_manager_id(job_id) or ""
    if not manager_id.startswith("slurm:"):
        return True
    out = subprocess.run(["squeue", "-h", "-j", manager_id[6:], "-o", "%i"], capture_output=True, text=True)
    return not out.stdout.split()


def _fake_stopped(server: ApiServer, job_id: str) -> bool:
    return job_id not in server.manager.running()


REAL = ["local", pytest.param("slurm", marks=pytest.mark.slurm)]


@pytest.fixture(params=["fake", *REAL])
def backend(request, tmp_path) -> Iterator[Backend]:
    yield from _backend(request, tmp_path)


@pytest.fixture(params=REAL)
def real_backend(request, tmp_path) -> Iterator[Backend]:
    yield from _backend(request, tmp_path)


def _backend(request, tmp_path) -> Iterator[Backend]:
    if request.param == "fake":
        yield Backend("fake", make_settings(tmp_path), _fake_stopped)
        return
    if request.param == "local":
        yield Backend("local", make_settings(tmp_path, CALLBACK_RETRY_SECONDS=1), _local_stopped)
        return
    request.getfixturevalue("cluster")
    data = request.getfixturevalue("shared_dir")
    settings = make_settings(data, MANAGER="slurm", SLURM_JOBCOMP_LOG=JOBCOMP, SLURM_RECONCILE_MINUTES=60,
                             CALLBACK_RETRY_SECONDS=1)
    yield Backend("slurm", settings, _slurm_stopped)
    subprocess.run(["scancel", "-u", "root", "-n", "opus-sleep"], capture_output=True)


@pytest.fixture
def server(backend) -> Iterator[LiveServer]:
    s = backend.server()
    yield s
    s.stop()


def _id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_a_job_runs_to_completed_with_its_result(server):
    url = server.create("dummy", {"text": "hello manager"}, run=True)
    assert wait_phase(server.http, url, ENDED, timeout=60) == "COMPLETED", server.http.get(url).text
    assert server.http.get(url + "/results/output").text == "hello manager\n"
    xml = server.http.get(url).text
    assert "<uws:startTime>" in xml and "<uws:endTime>" in xml
    assert 'size="14"' in server.http.get(url + "/results").text


def test_a_failing_script_ends_in_error_with_its_message(server):
    url = server.create("fail", {"message": "no such observation"}, run=True)
    assert wait_phase(server.http, url, ENDED, timeout=60) == "ERROR"
    xml = server.http.get(url).text
    assert "no such observation" in xml and "exit status 3" in xml
    assert server.http.get(url + "/stderr").text == "no such observation\n"
    assert server.http.get(url + "/stdout").text == "starting\n"


def test_abort_stops_a_running_job(server, backend):
    url = server.create("sleep", {"seconds": "60"}, run=True)
    assert wait_phase(server.http, url, "EXECUTING", timeout=60) == "EXECUTING"
    if backend.name == "local":  # the wrapper has started the script (its process group is known)
        wait_for((server.settings.jobs_dir / _id(url) / "script.pgid").exists, 60, "the script to start")
    r = server.http.post(url + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False)
    assert r.status_code == 303 and server.http.get(url + "/phase").text == "ABORTED"
    wait_for(lambda: backend.stopped(server, _id(url)), 30, "the aborted job's processes to end")
    assert server.http.get(url + "/phase").text == "ABORTED"  # the wrapper's own report changes nothing


def test_execution_duration_is_enforced(server):
    url = server.create("sleep", {"seconds": "60", "EXECUTIONDURATION": "2"}, run=True)
    assert wait_phase(server.http, url, ENDED, timeout=60) == "ABORTED"
    assert "executionDuration" in server.http.get(url).text


def test_jobs_that_end_while_the_server_is_down_are_settled_at_restart(real_backend):
    backend = real_backend
    first = backend.server()
    urls = [first.create("sleep", {"seconds": "2"}, run=True) for _ in range(2)]
    for url in urls:
        wait_phase(first.http, url, "EXECUTING", timeout=60)
    ids = [_id(u) for u in urls]
    first.stop()
    # Each wrapper keeps its final report before calling back (and finding no server), then ends.
    reports = [Path(backend.settings.jobs_dir) / job_id / "report.json" for job_id in ids]
    wait_for(lambda: all(r.exists() for r in reports) and all(backend.stopped(first, i) for i in ids), 60,
             "the jobs to end while the server is down")
    second = backend.server()
    try:
        for job_id in ids:
            url = f"{second.url}/rest/sleep/{job_id}"
            assert wait_phase(second.http, url, ENDED, timeout=60) == "COMPLETED", second.http.get(url).text
            assert second.http.get(url + "/results/done").text == "done\n"
    finally:
        second.stop()
