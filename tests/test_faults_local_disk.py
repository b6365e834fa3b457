"""The local manager's fault suite (tests/test_faults_local.py), part three: a full disk.  DATA_DIR
on a 4 MiB tmpfs (the tests run as root): a job that fills it says so, and its report survives."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import LiveServer, make_settings
from faults_local import FILLER, id_of, with_definitions
from helpers import wait_for, wait_phase

from opus.managers import jobrecord


# ---- a full disk ------------------------------------------------------------------------------------
@pytest.fixture
def tiny_data_dir(tmp_path):
    """DATA_DIR on a 4 MiB tmpfs (the tests run as root), the database outside it."""
    data = tmp_path / "var"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=755", "opus-faults-tmpfs", str(data)],
                   check=True)
    yield data
    subprocess.run(["umount", "-l", str(data)], check=False)


def _full_settings(tmp_path, data):
    return with_definitions(make_settings(tmp_path, DATA_DIR=str(data), CALLBACK_RETRY_SECONDS=1,
                                          DATABASE_URL=f"sqlite:///{tmp_path / 'opus.sqlite'}"))


def test_a_job_that_fills_the_disk_says_so(tmp_path, tiny_data_dir):
    server = LiveServer(_full_settings(tmp_path, tiny_data_dir))
    try:
        url = server.create("filler", run=True)
        assert server.wait_final(url, timeout=60) == "ERROR"
        xml = server.http.get(url).text
        assert "no space left on device while the job" in xml and "script ran" in xml, xml
        assert "exit status 1" in xml
    finally:
        server.stop()


def test_on_a_full_disk_the_report_survives_a_server_away(tmp_path, tiny_data_dir):
    """The disk is full when the job ends and the server is down: report.json cannot be written, the
    reserved slot keeps the report, and the next server applies it (results and all)."""
    settings = _full_settings(tmp_path, tiny_data_dir)
    jdl = Path(settings.JDL_DIR)
    slow = dict(FILLER, name="slowfiller", script="sleep 2\n" + FILLER["script"])
    (jdl / "slowfiller.json").write_text(json.dumps(slow))
    first = LiveServer(settings)
    url = first.create("slowfiller", {"keep": "yes"}, run=True)
    job_id = id_of(url)
    wait_phase(first.http, url, "EXECUTING", timeout=60)
    first.stop()
    root = tiny_data_dir / "jobs" / job_id
    wait_for(lambda: jobrecord.launch_state(root).recorded and not jobrecord.launch_state(root).live, 60,
             "the wrapper to end while the server is down")
    assert not (root / "report.json").exists()
    assert jobrecord.saved_report(root)["phase"] == "COMPLETED"
    second = LiveServer(settings)
    try:
        second.services.manager.reconcile()  # what its dispatcher does at take-over (idempotent)
        assert second.wait_final(second.url + url.split(str(first.port), 1)[1]) == "COMPLETED"
        assert second.http.get(f"{second.url}/rest/slowfiller/{job_id}/results/output").text == "result\n"
    finally:
        second.stop()
