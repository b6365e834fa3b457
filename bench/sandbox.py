#!/usr/bin/env python3
"""What the job sandbox costs each job start (target: under 20 ms).

    .venv/bin/python bench/sandbox.py [--runs N] [--json FILE]

Starts a job's script (``/bin/bash script.sh`` with an empty script) N times each way, interleaved
so that both see the same machine load:

* **bare**: ``bash script.sh`` in the work directory, as a job ran before the sandbox;
* **sandboxed**: the same through ``opus.managers.jobsandbox`` exactly as the wrapper builds it
  (bubblewrap namespaces and mounts; as root, ``setpriv`` to the job user and giving the work
  directory to it).

Prints the median and p90 of each and their difference: the sandbox's cost per job start.  It
runs the real sandbox, so it needs bubblewrap (and, as root, the job user: ``opus init``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from opus.managers.jobsandbox import Sandbox  # noqa: E402
from opus.managers.sandbox import wrapper_config  # noqa: E402
from opus.settings import load_settings  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="opus-bench-sandbox-") as tmp:
        settings = load_settings(None, DATA_DIR=str(Path(tmp) / "var"))
        root = Path(tmp) / "job"
        work = root / "work"
        work.mkdir(parents=True)
        script = root / "script.sh"
        script.write_text(": an empty job\n")
        params = root / "parameters.json"
        params.write_text("{}")
        sandbox = Sandbox(wrapper_config(settings))
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work)}

        def bare() -> None:
            subprocess.run(["/bin/bash", str(script)], cwd=work, env=env, check=True)

        def sandboxed() -> None:
            sandbox.give_to_job([work, root / "uploads"])
            command = sandbox.command(["/bin/bash", str(script)], work, [root / "uploads", params, script])
            subprocess.run(command, cwd=work, env=env, check=True)

        timings: dict[str, list[float]] = {"bare": [], "sandboxed": []}
        for _ in range(5):  # warm the page cache
            bare()
            sandboxed()
        for _ in range(args.runs):
            for name, run in (("bare", bare), ("sandboxed", sandboxed)):
                t0 = time.perf_counter()
                run()
                timings[name].append((time.perf_counter() - t0) * 1000)
    figures = {name: {"median_ms": statistics.median(v), "p90_ms": percentile(v, 90)} for name, v in timings.items()}
    cost = figures["sandboxed"]["median_ms"] - figures["bare"]["median_ms"]
    figures["cost_median_ms"] = cost
    figures["runs"] = args.runs
    figures["as_root"] = sandbox.ids is not None
    print(f"job start, {args.runs} runs each ({'root: setpriv to the job user' if sandbox.ids else 'user namespace'})")
    for name in ("bare", "sandboxed"):
        print(f"  {name:10s} median {figures[name]['median_ms']:6.2f} ms   p90 {figures[name]['p90_ms']:6.2f} ms")
    print(f"  sandbox cost per job start: {cost:.2f} ms (median; target < 20 ms): "
          f"{'MET' if cost < 20 else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
