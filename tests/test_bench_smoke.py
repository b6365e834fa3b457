"""The benchmark command keeps working (a --quick run: figures are not checked, only that it runs,
measures every step and counts no error)."""

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
    for label in ("ceiling: bare bottle route", "jobs created/s, 1 client", "jobs created/s, 16 clients",
                  "list LAST=100 of", "full list of", "PHASE=RUN -> COMPLETED", "job end -> WAIT returns",
                  "WAITs held at once", "errors (unexpected answers"):
        assert label in r.stdout, label
    figures = json.loads(out.read_text())
    assert figures["meta"]["complete"] is True
    results = figures["results"]
    tags = figures["meta"]["list_sizes"]
    assert {"ceiling", "create_1", "create_16", "list_small", "get_job", "run_to_completed", "waiters",
            *(f"list_{kind}_{tag}" for kind in ("last100", "phase", "full") for tag in tags)} <= set(results)
    assert results["errors"]["total"] == 0
    assert results["create_1"]["jobs_per_s"] > 0 and results["ceiling"]["per_s"] > 0
    waiters = results["waiters"]
    assert waiters["returned_early"] == 0 and waiters["returned_ok"] == waiters["waiters"]
    assert results[f"list_full_{tags[1]}"]["memory"]["peak_rss_mb"] > 0
    rows = {row["key"]: row for row in figures["summary"]}
    assert rows["create_16"]["pct_of_ceiling"] is not None
    # The fraction of the ceiling is the median of three creation rounds, each paired with a ceiling run.
    pairs = results["create_16_pairs"]
    assert len(pairs) == 3 and sum(p["jobs"] for p in pairs) == results["create_16"]["jobs"]
    assert all(p["ceiling_per_s"] > 0 and p["jobs_per_s"] > 0 for p in pairs)
    assert rows["create_16_pct"]["value"] == sorted(p["ratio_pct"] for p in pairs)[1]
