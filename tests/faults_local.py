"""What the local manager's fault suite shares (tests/test_faults_local*.py): the jobs it runs, and a
live server that knows them.

The job ``counted`` appends a line to ``runs.txt`` in its work directory each time its script runs:
the sandbox makes that directory the only place it can write, and a second run of a job happens in
the same directory, so any second run shows.  ``OPUS_FAULTS_FULL=1`` runs the long tests in full.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import LiveServer, make_settings

#: A job that counts its own runs (runs.txt survives in its work directory), then writes its text.
COUNTED = {
    "name": "counted", "description": "Counts its runs (tests/faults_local.py)",
    "executionDuration": 120,
    "parameters": {"text": {"type": "string", "default": "x"},
                   "seconds": {"type": "float", "default": "0", "min": 0, "max": 100000}},
    "generated": {"output": {"file": "output.txt", "content_type": "text/plain"}},
    "script": "echo run >> runs.txt\nsleep \"$seconds\"\nprintf '%s\\n' \"$text\" > output.txt\n",
}
#: A job that leaves a child in a session of its own (``setsid``), then sleeps: what must not survive.
ESCAPER = {
    "name": "escaper", "description": "Starts a setsid child (tests/faults_local.py)",
    "executionDuration": 600,
    "parameters": {"seconds": {"type": "float", "default": "1000", "min": 0, "max": 100000}},
    "script": "setsid sleep \"$seconds\" < /dev/null > /dev/null 2>&1 &\necho $! > setsid.pid\n"
              "echo started\nsleep \"$seconds\"\n",
}
#: A job that fills its file system: with ``keep`` set it writes its result first and succeeds.
FILLER = {
    "name": "filler", "description": "Fills the disk (tests/faults_local.py)", "executionDuration": 120,
    "parameters": {"keep": {"type": "string", "default": ""}},
    "generated": {"output": {"file": "output.txt", "content_type": "text/plain"}},
    "script": "echo result > output.txt\nhead -c 100000000 /dev/zero > fill.bin\n"
              "if [ -n \"$keep\" ]; then exit 0; fi\nexit 1\n",
}
FULL = os.environ.get("OPUS_FAULTS_FULL") == "1"


def with_definitions(settings):
    """``settings`` with COUNTED, ESCAPER and FILLER in its JDL_DIR."""
    jdl = Path(settings.JDL_DIR)
    for definition in (COUNTED, ESCAPER, FILLER):
        (jdl / f"{definition['name']}.json").write_text(json.dumps(definition))
    return settings


def id_of(url: str) -> str:
    """The job id at the end of a job URL."""
    return url.rsplit("/", 1)[1]


def runs(jobs_dir: Path, job_id: str) -> int:
    """How many times the job ``counted`` ran its script."""
    try:
        return len((Path(jobs_dir) / job_id / "work" / "runs.txt").read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.fixture
def server(tmp_path):
    """A live server (local manager) knowing the suite's jobs (import this fixture)."""
    s = LiveServer(with_definitions(make_settings(tmp_path, CALLBACK_RETRY_SECONDS=2)))
    yield s
    s.stop()

