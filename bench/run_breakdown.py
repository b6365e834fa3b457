"""Where a trivial job's RUN -> COMPLETED goes, step by step (issue 18, item 4).

    .venv/bin/python bench/run_breakdown.py [--runs 30] [--no-prefork]

Serves OPUS in this process (wsgiref, threads) with the real local manager and job wrapper, and
runs the ``dummy`` job ``--runs`` times: ``POST <job>/phase PHASE=RUN``, then ``GET ?WAIT`` until
COMPLETED.  Each step's instant comes from where it happens: the phase changes from the notifier
(committed QUEUED, EXECUTING, COMPLETED), the launch from the job's launch record
(``launch.lock``: the server's "launched" line before it starts the wrapper, the wrapper's first
line, the script's start and end).  Prints the median and p90 of each step, in ms.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from opus.managers import jobrecord  # noqa: E402
from opus.server import create_app  # noqa: E402
from opus.service.root import Root  # noqa: E402
from opus.settings import load_settings  # noqa: E402
from opus.storage import create_engine_for, upgrade_schema  # noqa: E402
from opus.storage.jobfiles import JobFiles  # noqa: E402

STEPS = [("queued", "POST RUN sent -> QUEUED committed"),
         ("launched", "QUEUED -> launch recorded (dispatcher pick-up)"),
         ("wrapper", "launch recorded -> wrapper's first line (wrapper start)"),
         ("script", "wrapper's first line -> script started (sandbox, set-up)"),
         ("ended", "script started -> script ended"),
         ("executing", "POST RUN sent -> EXECUTING committed"),
         ("completed", "script ended -> COMPLETED committed (report, commit)"),
         ("returned", "COMPLETED committed -> WAIT returned"),
         ("total", "POST RUN sent -> WAIT returned COMPLETED")]


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _at(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=None).timestamp() \
        - datetime(1970, 1, 1).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-prefork", action="store_true",
                        help="LOCAL_PREFORK = False: a new interpreter per job wrapper (the old way)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="opus-run-breakdown-"))
    try:
        jdl = tmp / "jdl"
        shutil.copytree(REPO / "jdl", jdl)
        httpd = make_server("127.0.0.1", 0, lambda e, s: app(e, s), server_class=_Server, handler_class=_Quiet)
        url = f"http://127.0.0.1:{httpd.server_port}"
        settings = load_settings(None, DATA_DIR=str(tmp / "var"), JDL_DIR=str(jdl), MAINTENANCE_INTERVAL=0,
                                 LOG_LEVEL="WARNING", LOCAL_PREFORK=not args.no_prefork,
                                 ).with_overrides(CALLBACK_URL=url)
        upgrade_schema(create_engine_for(settings.database_url))
        root = Root.build(settings)
        app = create_app(settings, root)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        seen: dict[tuple[str, str], float] = {}
        records: dict[str, list[dict[str, Any]]] = {}

        def on_change(job_id: str, phase: str) -> None:
            seen[(job_id, phase)] = time.time()
            if phase == "COMPLETED":
                records[job_id] = jobrecord.lines(JobFiles.of(settings.jobs_dir, job_id).root)
        root.notifier.subscribe(on_change)
        http = requests.Session()
        steps: dict[str, list[float]] = {key: [] for key, _ in STEPS}
        for i in range(args.runs + 3):
            r = http.post(f"{url}/rest/dummy", data={"text": "x"}, allow_redirects=False)
            job_url = r.headers["Location"]
            job_id = job_url.rsplit("/", 1)[-1]
            t0 = time.time()
            http.post(f"{job_url}/phase", data={"PHASE": "RUN"}, allow_redirects=False)
            phase = "QUEUED"
            while phase != "COMPLETED":
                phase = http.get(f"{job_url}?WAIT=30&PHASE={phase}",
                                 headers={"Accept": "application/json"}).json()["phase"]
                if phase in ("ERROR", "ABORTED"):
                    raise SystemExit(f"job {job_id} ended {phase}")
            t_end = time.time()
            if i < 3:
                continue  # warm-up
            lines = records.get(job_id, [])
            launched = next((_at(x["launched"]) for x in lines if "launched" in x), None)
            wrapper = next((_at(x["at"]) for x in lines if "wrapper" in x), None)
            script = next((_at(x["at"]) for x in lines if x.get("script") == "started"), None)
            ended = next((_at(x["ended"]) for x in lines if "ended" in x), None)
            q, e, c = (seen.get((job_id, p)) for p in ("QUEUED", "EXECUTING", "COMPLETED"))
            for key, a, b in [("queued", t0, q), ("launched", q, launched), ("wrapper", launched, wrapper),
                              ("script", wrapper, script), ("ended", script, ended), ("executing", t0, e),
                              ("completed", ended, c), ("returned", c, t_end), ("total", t0, t_end)]:
                if a is not None and b is not None:
                    steps[key].append((b - a) * 1000)
        how = "new interpreter per wrapper" if args.no_prefork else "wrappers forked by the launcher"
        print(f"{args.runs} runs of the dummy job, {how} (median / p90, ms; wall clock, this machine as loaded now)")
        for key, label in STEPS:
            v = sorted(steps[key])
            if v:
                p90 = v[min(len(v) - 1, int(0.9 * len(v)))]
                print(f"  {label:<62} {statistics.median(v):7.1f} / {p90:7.1f}")
        root.stop()
        httpd.shutdown()
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
