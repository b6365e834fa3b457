"""The pre-forked wrapper launcher (issue 18 point 4, ``opus/managers/launcher.py``).

Real processes throughout: the real local manager, the real launcher, the real wrapper in the real
sandbox, real SIGKILLs.  The job ``counted`` (tests/faults_local.py) counts its own runs, so a job
run twice shows.
"""

from __future__ import annotations

import os
import signal
import threading

from faults_local import (
    id_of,
    runs,
    server,  # noqa: F401  (a fixture)
)
from helpers import FINAL, wait_for, wait_phase

from opus.managers import jobrecord, launcher
from opus.managers.launcher import Forked
from opus.storage.jobfiles import JobFiles


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    """True while ``pid`` is a process that has not ended (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def _wrapper_pid(server, job_id: str) -> int:
    root = JobFiles.of(server.settings.jobs_dir, job_id).root
    return wait_for(lambda: jobrecord.launch_state(root).wrapper_pid, 30, "the wrapper to note its pid")


def test_jobs_run_in_wrappers_forked_by_the_launcher(server):
    manager = server.services.manager
    url = server.create("counted", {"seconds": "1000"}, run=True)
    job_id = id_of(url)
    pid = _wrapper_pid(server, job_id)
    the_launcher = manager._launcher
    assert the_launcher is not None and the_launcher.alive()
    assert _ppid(pid) == the_launcher.pid  # forked by the launcher, not a new interpreter
    assert os.getsid(pid) == pid  # in a session of its own, as before
    assert isinstance(manager._children[job_id], Forked)
    assert server.http.post(url + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False).status_code == 303
    assert wait_phase(server.http, url, FINAL, timeout=30) == "ABORTED"
    wait_for(lambda: not _alive(pid), 30, "the wrapper to end")
    # A short job: through the same launcher, to its end, once.
    url = server.create("counted", {"text": "forked"}, run=True)
    assert wait_phase(server.http, url, FINAL, timeout=60) == "COMPLETED", server.http.get(url).text
    assert server.http.get(url + "/results/output").text == "forked\n"
    assert runs(server.settings.jobs_dir, id_of(url)) == 1
    assert manager._launcher is the_launcher


def test_a_launcher_killed_mid_flood_loses_no_job_and_runs_none_twice(server):
    manager = server.services.manager
    first = wait_for(lambda: manager._launcher, 30, "the launcher to start")
    urls = [server.create("counted", {"seconds": "0.2"}, run=True) for _ in range(4)]
    wait_for(lambda: any(isinstance(p, Forked) for p in list(manager._children.values())), 30,
             "a job in a forked wrapper")
    os.kill(first.pid, signal.SIGKILL)
    urls += [server.create("counted", {"seconds": "0.2"}, run=True) for _ in range(8)]
    for url in urls:
        assert wait_phase(server.http, url, FINAL, timeout=120) == "COMPLETED", server.http.get(url).text
        assert runs(server.settings.jobs_dir, id_of(url)) == 1
    # A new launcher took over.
    second = wait_for(lambda: manager._launcher if manager._launcher is not first else None, 30,
                      "a new launcher")
    assert second.alive() and second.pid != first.pid


def test_a_launcher_that_does_not_answer_lets_the_launch_record_decide(server, monkeypatch):
    """The request reached the launcher, no answer came (here: it is stopped): the job is neither
    lost nor started a second way at once; its launch record decides, and it runs once."""
    monkeypatch.setattr(launcher, "ANSWER_TIMEOUT", 0.5)
    manager = server.services.manager
    manager.stop()  # this test turns the dispatcher's crank itself
    wait_for(lambda: not any(t.name == "opus-local-manager" and t.is_alive() for t in threading.enumerate()),
             30, "the dispatcher thread to end")
    manager._launcher = stuck = launcher.Launcher()
    stuck._await_ready(stuck._sock)  # it has imported the wrapper and takes requests
    os.kill(stuck.pid, signal.SIGSTOP)
    try:
        url = server.create("counted", run=True)
        job_id = id_of(url)

        def settled() -> bool:
            manager.tick()
            return server.services.store.get_phase(job_id) in FINAL

        wait_for(settled, 60, "the job to end")
        assert not stuck.alive()
        assert wait_phase(server.http, url, FINAL, timeout=60) == "COMPLETED", server.http.get(url).text
        assert runs(server.settings.jobs_dir, job_id) == 1
    finally:
        try:
            os.kill(stuck.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        manager.stop()


def test_the_server_stopping_ends_the_launcher_not_the_running_wrappers(server):
    manager = server.services.manager
    url = server.create("counted", {"seconds": "2", "text": "after"}, run=True)
    job_id = id_of(url)
    pid = _wrapper_pid(server, job_id)
    the_launcher = manager._launcher
    assert the_launcher is not None and _ppid(pid) == the_launcher.pid
    manager.stop()  # what the server does when it stops
    wait_for(lambda: not _alive(the_launcher.pid), 30, "the launcher to end")
    assert _alive(pid)
    # The wrapper finishes and reports to the server, which still answers HTTP.
    assert wait_phase(server.http, url, FINAL, timeout=60) == "COMPLETED", server.http.get(url).text
    assert server.http.get(url + "/results/output").text == "after\n"
    assert runs(server.settings.jobs_dir, job_id) == 1


def test_without_prefork_the_wrapper_is_a_new_interpreter(tmp_path):
    from conftest import LiveServer, make_settings
    from faults_local import with_definitions
    s = LiveServer(with_definitions(make_settings(tmp_path, LOCAL_PREFORK=False)))
    try:
        url = s.create("counted", {"seconds": "1000"}, run=True)
        job_id = id_of(url)
        pid = _wrapper_pid(s, job_id)
        assert _ppid(pid) == os.getpid()
        assert s.services.manager._launcher is None
        assert s.http.post(url + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False).status_code == 303
        assert wait_phase(s.http, url, FINAL, timeout=30) == "ABORTED"
    finally:
        s.stop()


def test_a_launcher_that_cannot_start_delays_no_job(tmp_path, monkeypatch):
    """Every launcher dies before it is ready: each job's wrapper is started as a new interpreter
    at once (no job waits for a launcher that never comes), and each runs once."""
    import sys

    from conftest import LiveServer, make_settings
    from faults_local import with_definitions
    monkeypatch.setattr(launcher, "COMMAND", (sys.executable, "-c", "import sys; sys.exit(3)", "dir"))
    s = LiveServer(with_definitions(make_settings(tmp_path)))
    try:
        urls = [s.create("counted", run=True) for _ in range(3)]
        for url in urls:
            assert wait_phase(s.http, url, FINAL, timeout=60) == "COMPLETED", s.http.get(url).text
            assert runs(s.settings.jobs_dir, id_of(url)) == 1
        assert not any(isinstance(p, Forked) for p in s.services.manager._children.values())
    finally:
        s.stop()


def test_a_wrapper_forked_by_a_launcher_that_died_before_answering_is_adopted(server, monkeypatch):
    """The launcher forked the wrapper, then no answer came: the job is not started a second way;
    the wrapper holding its launch record is adopted, and the job ends once."""
    manager = server.services.manager
    spawn = launcher.Launcher.spawn
    forked: list[Forked] = []

    def spawn_then_vanish(self, *args):
        forked.append(spawn(self, *args))
        raise launcher.MaybeStarted("no answer (the test)")

    monkeypatch.setattr(launcher.Launcher, "spawn", spawn_then_vanish)
    url = server.create("counted", {"seconds": "1", "text": "adopted"}, run=True)
    job_id = id_of(url)
    assert wait_phase(server.http, url, FINAL, timeout=60) == "COMPLETED", server.http.get(url).text
    assert server.http.get(url + "/results/output").text == "adopted\n"
    assert len(forked) == 1 and job_id not in manager._children
    assert runs(server.settings.jobs_dir, job_id) == 1


def test_a_forked_wrapper_is_waited_for_past_descriptor_1024():
    """A server holds thousands of connections: the wait for a forked wrapper's end works whatever
    its descriptors' numbers (select() cannot watch a descriptor past 1,024)."""
    import resource
    import subprocess
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    if limits[0] < 1200:  # room for the test's descriptors, if the hard limit allows
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, limits[1]), limits[1]))
    proc = subprocess.Popen(["sleep", "0.3"])
    pidfd = os.pidfd_open(proc.pid)
    taken = [os.open(os.devnull, os.O_RDONLY)]
    try:
        while taken[-1] < 1100:  # what a busy server's connections do: every low number in use
            taken.append(os.open(os.devnull, os.O_RDONLY))
        Forked(proc.pid, pidfd).wait(30)
    finally:
        for fd in taken:
            os.close(fd)
        proc.wait()
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
