"""scripts/serve.sh's first run says what it is doing and ends saying where the server is, what the
admin token is for and how to stop it; alembic's INFO lines are left out (issue 13, point 16).

Cheap: serve.sh runs with --no-setup (the venv is there), on a fresh DATA_DIR; setup.sh's progress
filter is fed a recorded pip/apt-get output.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import requests
from helpers import wait_for

from opus.settings import REPO_ROOT

SERVE = REPO_ROOT / "scripts" / "serve.sh"
SETUP = REPO_ROOT / "scripts" / "setup.sh"


class Run:
    """scripts/serve.sh running in its own process group; its output (stdout and stderr) as it comes."""

    def __init__(self, settings: Path):
        env = {**os.environ, "OPUS_SETTINGS": str(settings)}
        # As a terminal's foreground job: Ctrl-C (SIGINT) not ignored.  A test run started in the
        # background by a script (`.ci/run &`) passes SIGINT on ignored, and the server, rightly, ignores it.
        self.proc = subprocess.Popen(["bash", str(SERVE), "--no-setup", "--port", "0"], cwd=REPO_ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def ready(self) -> str:
        wait_for(lambda: "Stop it with Ctrl-C" in self.text or self.proc.poll() is not None, timeout=60,
                 what="serve.sh's banner")
        assert "Stop it with Ctrl-C" in self.text, self.text
        return self.text

    def stop(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the test fails, but leaves no server behind
            self.proc.wait(timeout=30)
            raise


def test_first_run_says_where_the_server_is_what_the_token_is_for_and_how_to_stop(tmp_path):
    settings = tmp_path / "settings.py"
    settings.write_text(f"DATA_DIR = {str(tmp_path / 'var')!r}\n")
    first = Run(settings)
    try:
        out = first.ready()
        url = re.search(r"OPUS is running at (http://127\.0\.0\.1:\d+/)", out)
        assert url, out
        assert requests.get(url.group(1) + "availability", timeout=10).status_code == 200
        assert f"web client:  {url.group(1)}web/" in out
        token = re.search(r"token, shown only now:\s+(\S+)", out)
        assert token, out
        assert "admin token above" in out and "Admin" in out  # what it is for
        assert "without signing in" in out  # the README's anonymous use
        # the token works, as the banner says
        r = requests.get(url.group(1) + "admin/users", auth=("admin", token.group(1)), timeout=10)
        assert r.status_code == 200, r.text
        assert "INFO alembic" not in out and "Running upgrade" not in out, out
    finally:
        rc = first.stop()
    assert rc in (0, -signal.SIGINT, 130), first.text

    again = Run(settings)  # later runs: no new token, and they say where to get one
    try:
        out = again.ready()
        assert "shown only now" not in out and "opus user token admin" in out
        assert "INFO alembic" not in out, out
    finally:
        again.stop()


def _progress(output: str) -> list[str]:
    block = re.search(r"^# >>> progress.*?^# <<< progress", SETUP.read_text(), re.S | re.M)
    assert block
    script = block.group(0) + "\nprogress_lines\n"
    result = subprocess.run(["bash", "-c", script], input=output, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


PIP_OUTPUT = """\
Obtaining file:///work/main
  Installing build dependencies: started
  Installing build dependencies: finished with status 'done'
Collecting bottle>=0.13 (from opus-uws==2.0.0.dev0)
  Downloading bottle-0.13.2-py2.py3-none-any.whl.metadata (1.9 kB)
Collecting astropy>=6 (from opus-uws==2.0.0.dev0)
  Downloading astropy-6.1.7-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl (10.2 MB)
Requirement already satisfied: numpy>=1.26 in ./.venv/lib/python3.11/site-packages
Processing /opt/pypi/files/six-1.17.0-py2.py3-none-any.whl
Building wheels for collected packages: opus-uws
  Building editable for opus-uws (pyproject.toml): started
Installing collected packages: bottle, astropy, opus-uws
Successfully installed astropy-6.1.7 bottle-0.13.2 opus-uws-2.0.0.dev0
Setting up graphviz (2.42.2-7) ...
"""


def test_setup_shows_one_line_per_package_while_installing():
    lines = _progress(PIP_OUTPUT)
    assert lines == [
        "setup:   pip: [1] bottle>=0.13",
        "setup:   pip: [2] astropy>=6",
        "setup:   pip:     downloading 10.2 MB",
        "setup:   pip: [3] six-1.17.0-py2.py3-none-any.whl",
        "setup:   pip: building opus-uws",
        "setup:   pip: installing 3 packages (can take a minute)",
        "setup:   pip: done",
        "setup:   apt: graphviz",
    ]
    # the pip and apt-get installs go through the progress filter, pip without -q
    text = SETUP.read_text()
    assert re.search(r'run_progress "pip install[^\n]*pip install --progress-bar off -e', text)
    assert 'run_progress "apt-get install' in text
