"""The benchmark command keeps working (a --quick run: figures are not checked, only that it runs)."""

import json
import subprocess
import sys

import pytest

from opus.settings import REPO_ROOT


@pytest.mark.e2e
def test_bench_quick_run_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "run.py"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "jobs created/s, 1 client" in r.stdout and "PHASE=RUN -> COMPLETED" in r.stdout
    figures = json.loads(out.read_text())
    assert figures["meta"]["complete"] is True
    assert {"create_1", "create_8", "list_small", "list_large", "get_job", "run_to_completed"} <= set(figures["results"])
    assert figures["results"]["create_1"]["jobs_per_s"] > 0
