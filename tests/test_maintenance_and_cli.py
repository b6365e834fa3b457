"""Destruction (delete and archive policies), recovery of lost reports, and the opus command."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import socket
import subprocess
import sys
from datetime import timedelta


from conftest import LiveServer, make_settings
from helpers import wait_final, wait_for
from opus.cli.main import main as opus_main
from opus.storage.jobfiles import JobFiles
from opus.timeutil import utcnow
from opus.uws import Phase
OPUS = [sys.executable, "-m", "opus.cli"]


def _expire(server, url):
    job_id = url.rsplit("/", 1)[1]
    server.services.store.update_job(job_id, list(Phase), destruction_time=utcnow() - timedelta(seconds=1))
    return job_id


def test_archive_policy_keeps_metadata_and_drops_results(tmp_path):
    server = LiveServer(make_settings(tmp_path, DESTRUCTION_POLICY="archive"))
    try:
        url = server.create(data={"text": "kept?"}, run=True)
        assert server.wait_final(url) == "COMPLETED"
        job_id = _expire(server, url)
        pending = server.create()
        _expire(server, pending)
        assert server.services.maintenance.destroy_expired() == 2
        assert server.http.get(url + "/phase").text == "ARCHIVED"
        assert server.http.get(pending + "/phase").text == "ARCHIVED"  # aborted, then archived
        assert server.http.get(url + "/results/output").status_code == 404
        assert "<uws:results/>" in server.http.get(url).text
        assert not JobFiles.of(server.settings.jobs_dir, job_id).results.exists()
        listed = server.http.get(f"{server.url}/rest/dummy").text
        assert job_id not in listed
        assert job_id in server.http.get(f"{server.url}/rest/dummy?PHASE=ARCHIVED").text
        assert server.services.maintenance.destroy_expired() == 0  # archived jobs are not swept again
    finally:
        server.stop()


def test_delete_policy_removes_everything(tmp_path):
    server = LiveServer(make_settings(tmp_path))
    try:
        url = server.create(data={"text": "gone"}, run=True)
        server.wait_final(url)
        job_id = _expire(server, url)
        keep = server.create()
        assert server.services.maintenance.destroy_expired() == 1
        assert server.http.get(url).status_code == 404
        assert not JobFiles.of(server.settings.jobs_dir, job_id).root.exists()
        assert server.http.get(keep).status_code == 200
    finally:
        server.stop()


def test_in_server_maintenance_runs_on_schedule(tmp_path):
    server = LiveServer(make_settings(tmp_path, MAINTENANCE_INTERVAL=1))
    try:
        url = server.create()
        _expire(server, url)
        wait_for(lambda: server.http.get(url).status_code == 404, 60,
                 "the maintenance task to destroy the expired job")
    finally:
        server.stop()


def _executing_under_a_dead_wrapper(live, left_behind=None) -> tuple[str, str]:
    """A job the database believes EXECUTING under a wrapper process that no longer exists.

    ``left_behind(files)`` writes what the dead wrapper left, before the job looks EXECUTING: the
    live dispatcher may check such a job at any moment from then on."""
    url = live.create("sleep", data={"seconds": "0"})
    job_id = url.rsplit("/", 1)[1]
    if left_behind is not None:
        left_behind(JobFiles.of(live.settings.jobs_dir, job_id))
    store = live.services.store
    # QUEUED already under the dead wrapper's id: the live dispatcher claims only QUEUED jobs that
    # no manager holds, so it never starts this one itself.
    assert store.set_phase(job_id, Phase.QUEUED, [Phase.PENDING], manager_id="local:999999999")
    assert store.set_phase(job_id, Phase.EXECUTING, [Phase.QUEUED])
    return url, job_id


def test_a_lost_final_report_is_replayed(live):
    """A wrapper that wrote report.json but whose callback never arrived: the manager applies it."""
    def left_behind(files):
        files.results.mkdir(parents=True)
        (files.results / "done.txt").write_text("done\n")
        files.report.write_text(json.dumps({"phase": "COMPLETED", "end_time": "2026-01-01T00:00:00Z", "results": [
            {"result_id": "done", "file_name": "done.txt", "content_type": "text/plain", "size": 5}]}))

    url, job_id = _executing_under_a_dead_wrapper(live, left_behind)
    live.services.manager.reconcile()  # what a (re)starting dispatcher does
    assert live.http.get(url + "/phase").text == "COMPLETED"
    assert live.http.get(url + "/results/done").text == "done\n"


def test_a_vanished_wrapper_without_report_is_an_error(live):
    url, job_id = _executing_under_a_dead_wrapper(live)
    live.services.manager.reconcile()
    assert live.http.get(url + "/phase").text == "ERROR"
    assert "without reporting" in live.http.get(url).text


def test_a_claimed_but_unlaunched_job_is_requeued(live):
    url = live.create("sleep", data={"seconds": "0"})
    job_id = url.rsplit("/", 1)[1]
    store = live.services.store
    live.services.manager.stop()  # keep the dispatcher out of the way
    store.set_phase(job_id, Phase.QUEUED, [Phase.PENDING])
    store.claim(job_id, "local:starting")
    live.services.manager.reconcile()
    assert store.claimable(10) == [job_id]


def test_cli_init_check_and_maintenance(tmp_path):
    settings_file = tmp_path / "settings.py"
    data = tmp_path / "data"
    # SERVICE_USER: the tests run as root, and `opus init` as root must be told who the server runs as.
    settings_file.write_text(f"DATA_DIR = {str(data)!r}\nSERVICE_USER = {pwd.getpwuid(os.geteuid()).pw_name!r}\n")
    settings_file.chmod(0o600)
    env_run = lambda *args: subprocess.run([*OPUS, "--settings", str(settings_file), *args],  # noqa: E731
                                           capture_output=True, text=True, timeout=60)
    r = env_run("init")
    assert r.returncode == 0 and "up to date" in r.stdout
    assert (data / "opus.sqlite").is_file()
    r = env_run("init")  # idempotent
    assert r.returncode == 0
    r = env_run("check")
    assert r.returncode == 0 and "ok       dummy" in r.stdout
    r = env_run("maintenance")
    assert r.returncode == 0 and "0 expired job(s) destroyed" in r.stdout


def test_cli_reports_bad_settings(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("NO_SUCH_SETTING = 1\n")
    assert opus_main(["--settings", str(bad), "init"]) == 2
    assert "unknown setting" in capsys.readouterr().err


def test_cli_check_reports_invalid_definitions(tmp_path, capsys):
    jdl = tmp_path / "jdl"
    jdl.mkdir()
    (jdl / "broken.json").write_text(json.dumps({"name": "broken"}))
    s = tmp_path / "s.py"
    s.write_text(f"JDL_DIR = {str(jdl)!r}\nDATA_DIR = {str(tmp_path)!r}\n")
    assert opus_main(["--settings", str(s), "check"]) == 1
    assert "INVALID  broken" in capsys.readouterr().out


@contextlib.contextmanager
def _opus_serve(tmp_path, log_level: str):
    """`opus serve` on a free port: (its base URL, the process: its output is stdout, stderr merged)."""
    import requests

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    settings_file = tmp_path / "settings.py"
    settings_file.write_text(f"DATA_DIR = {str(tmp_path / 'data')!r}\nLOG_LEVEL = {log_level!r}\n")
    proc = subprocess.Popen([*OPUS, "--settings", str(settings_file), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def index():
            assert proc.poll() is None, proc.stdout.read()
            try:
                return requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            except requests.ConnectionError:
                return None

        r = wait_for(index, 60, "opus serve to answer")
        assert f"http://127.0.0.1:{port}/rest/dummy" in r.text
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_opus_serve_answers(tmp_path):
    """`opus serve` (the README's first command ends with it) starts and serves the example definitions."""
    import requests

    with _opus_serve(tmp_path, "WARNING") as (base, _proc):
        r = requests.post(f"{base}/rest/dummy", data={"text": "served", "PHASE": "RUN"},
                          allow_redirects=False, timeout=30)
        job = r.headers["Location"]
        wait_final(requests, job)
        assert requests.get(job + "/results/output", timeout=30).text == "served\n"


def test_opus_serve_access_lines_carry_the_request_and_job_ids(tmp_path):
    """The README says every log line ends with [request=<X-Request-ID> job=<job id>]; the development
    server's access lines said [request=- job=-] (found by a newcomer)."""
    import requests

    with _opus_serve(tmp_path, "INFO") as (base, proc):
        job = requests.post(f"{base}/rest/dummy", data={"text": "x"}, allow_redirects=False, timeout=30).headers["Location"]
        job_id = job.rsplit("/", 1)[1]
        r = requests.get(job, headers={"X-Request-ID": "probe-42"}, timeout=30)
        assert r.headers["X-Request-ID"] == "probe-42"
    output = proc.stdout.read()
    (line,) = [ln for ln in output.splitlines() if f'"GET /rest/dummy/{job_id} HTTP/1.1" 200' in ln]
    assert line.endswith(f"[request=probe-42 job={job_id}]"), line
