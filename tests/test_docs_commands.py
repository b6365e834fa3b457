"""The README's walkthrough runs as written (issue 13, point 18).

The shell block of "A job's life, with curl" and the pyvo block after it are taken from README.md and
run against a live server (the real local manager), from the top of the checkout as the README says:
only the server's address is changed.  Every curl must succeed (curl --fail-with-body: no 4xx or 5xx),
and the jobs it starts must complete.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers import wait_final

from opus.settings import REPO_ROOT

README = REPO_ROOT / "README.md"
ADDRESS = "http://127.0.0.1:8080"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section, re.S | re.M)


WALKTHROUGH = _section("A job's life, with curl")


def test_the_walkthrough_names_every_shipped_definition_and_its_sample_file():
    for definition in sorted(p.stem for p in (REPO_ROOT / "jdl").glob("*.json")):
        assert f"`{definition}`" in WALKTHROUGH, definition
    for sample in re.findall(r"@(\S+)", "".join(_blocks(WALKTHROUGH, "sh"))):
        assert (REPO_ROOT / sample).is_file(), f"the walkthrough uploads {sample}, which is not shipped"
    assert "pip install pyvo" in WALKTHROUGH


def test_the_curl_walkthrough_runs_as_written(live):
    [script] = _blocks(WALKTHROUGH, "sh")
    assert script.startswith(f"B={ADDRESS}\n")
    prelude = ("set -eu\n"
               # every request must succeed: a 4xx or 5xx fails the command (and the script)
               'curl() { command curl --fail-with-body --max-time 60 "$@"; }\n'
               "set -x\n")
    result = subprocess.run(["bash", "-c", prelude + script.replace(ADDRESS, live.url)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stderr[-4000:]}\n{result.stdout[-2000:]}"
    out = result.stdout
    assert "COMPLETED" in out and "changed" in out and 'version="1.1"' in out
    assert len(re.findall(r"HTTP/1\.[01] 303 ", out)) == 7, result.stderr[-6000:]  # every state change, both uploads
    # the jobs the walkthrough started end well (the upload examples included)
    http = live.session()
    for name in ("copy", "gammapy_maps"):
        jobs = re.findall(r'xlink:href="([^"]+)"', http.get(f"{live.url}/rest/{name}").text)
        assert len(jobs) == 1, (name, jobs)
        assert wait_final(http, jobs[0], timeout=120) == "COMPLETED", http.get(jobs[0] + "/stderr").text
    assert http.get(f"{jobs[0]}/results/count_map").status_code == 200


def test_the_pyvo_example_runs_as_written(live):
    pytest.importorskip("pyvo", reason="pip install -e '.[test]'")
    [program] = _blocks(WALKTHROUGH, "python")
    result = subprocess.run([sys.executable, "-c", program.replace(ADDRESS, live.url)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip() == "hi"
