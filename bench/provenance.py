#!/usr/bin/env python3
"""Provenance benchmark: ProvSAP DEPTH=ALL over a chain of N jobs (1,000 by default).

    .venv/bin/python bench/provenance.py [--jobs N] [--reps R] [--database URL] [--json FILE]

Builds the chain directly through the stores (no job runs): job 1 (``dummy``) generates an
entity; job k (``copy``) uses the entity of job k-1 as ``infile`` and generates two.  Each job is
recorded the way a real completion records it (``JobStore.complete`` with the entity rows).  Then
serves the application over HTTP on 127.0.0.1 and times, as PROV-JSON:

* ``/provsap?ID=<last result>&DEPTH=ALL`` (BACK: N activities, N entities);
* ``/provsap?ID=<first result>&DEPTH=ALL&DIRECTION=FORTH`` (N activities, 2N entities);
* ``/rest/copy/<last job>/provenance?DEPTH=ALL``.

Prints the median and the best of R repetitions for each; the target is under a second for
DEPTH=ALL BACK on 1,000 jobs.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests

from opus.service.root import Root
from opus.settings import load_settings
from opus.storage import create_engine_for, upgrade_schema
from opus.storage.entitystore import EntityStore
from opus.timeutil import utcnow
from opus.uws import Job, Parameter, Phase, Result
class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def build_chain(services: Root, n: int) -> tuple[list[str], list[str]]:
    """(job ids, the main entity id of each job), oldest first."""
    store = services.store
    entities = EntityStore(store)
    start = utcnow() - timedelta(hours=1)
    job_ids, main = [], []
    for k in range(n):
        first = k == 0
        job = Job(job_id=secrets.token_hex(8), jobname="dummy" if first else "copy", phase=Phase.PENDING,
                  creation_time=start, execution_duration=60, destruction_time=None, jdl_version="1.0",
                  parameters=[Parameter("text", f"step {k}")] if first else
                  [Parameter("infile", f"http://127.0.0.1/store/{main[-1]}/copy.dat")])
        store.create(job)
        sha = secrets.token_hex(32)
        if first:
            found = [Result("output", "output.txt", "text/plain", 8, sha)]
        else:
            found = [Result("copy", "copy.dat", "application/octet-stream", 8, sha),
                     Result("size", "size.txt", "text/plain", 2, secrets.token_hex(32))]
        linked = {} if first else {"infile": [main[-1]]}
        rows, uses = entities.plan_completion(job, found, {}, [], linked)
        t0 = start + timedelta(seconds=k)
        store.complete(job.job_id, Phase.COMPLETED, [Phase.PENDING], found,
                       also=lambda conn, rows=rows, uses=uses: EntityStore.record(conn, rows, uses),
                       start_time=t0, end_time=t0 + timedelta(milliseconds=500))
        job_ids.append(job.job_id)
        main.append(next(r["entity_id"] for r in rows if r["role"] in ("output", "copy")))
    return job_ids, main


def timed(url: str, params: dict, reps: int) -> tuple[list[float], dict]:
    times, doc = [], {}
    for _ in range(reps):
        t = time.perf_counter()
        r = requests.get(url, params=params, timeout=120)
        times.append(time.perf_counter() - t)
        if r.status_code != 200:
            raise SystemExit(f"{url} {params}: HTTP {r.status_code}: {r.text[:300]}")
        doc = r.json()
    return times, doc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--database", default="sqlite", help="sqlite (default) or a PostgreSQL URL")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.jobs < 2 or args.reps < 1:
        parser.error("--jobs must be at least 2 and --reps at least 1")
    with tempfile.TemporaryDirectory(prefix="opus-provbench-") as tmp:
        overrides = dict(DATA_DIR=tmp, MAINTENANCE_INTERVAL=0, LOG_LEVEL="WARNING", JDL_DIR=str(REPO / "jdl"))
        if args.database != "sqlite":
            overrides["DATABASE_URL"] = args.database
        settings = load_settings(None, **overrides)
        upgrade_schema(create_engine_for(settings.database_url))
        services = Root.build(settings)
        from opus.server import create_app
        app = create_app(settings, services, start=False)
        t = time.perf_counter()
        job_ids, main_entities = build_chain(services, args.jobs)
        print(f"built a chain of {args.jobs} jobs in {time.perf_counter() - t:.1f} s")
        httpd = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_Quiet)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{httpd.server_port}"
        cases = [
            ("ProvSAP DEPTH=ALL BACK from the last result", f"{base}/provsap",
             {"ID": main_entities[-1], "DEPTH": "ALL"}),
            ("ProvSAP DEPTH=ALL FORTH from the first result", f"{base}/provsap",
             {"ID": main_entities[0], "DEPTH": "ALL", "DIRECTION": "FORTH"}),
            ("job provenance DEPTH=ALL of the last job", f"{base}/rest/copy/{job_ids[-1]}/provenance",
             {"DEPTH": "ALL"}),
        ]
        figures = {}
        try:
            requests.get(cases[0][1], params=cases[0][2], timeout=120)  # warm-up
            for what, url, params in cases:
                times, doc = timed(url, params, args.reps)
                counts = {k: len(doc.get(k, {})) for k in ("activity", "entity", "used", "wasGeneratedBy")}
                figures[what] = {"median_s": statistics.median(times), "best_s": min(times), **counts}
                print(f"{what}: median {statistics.median(times) * 1000:.0f} ms, best {min(times) * 1000:.0f} ms "
                      f"({counts['activity']} activities, {counts['entity']} entities, {counts['used']} used, "
                      f"{counts['wasGeneratedBy']} wasGeneratedBy)")
        finally:
            httpd.shutdown()
            httpd.server_close()
            services.store.engine.dispose()
        target = figures[cases[0][0]]["median_s"]
        print(f"target: DEPTH=ALL on {args.jobs} jobs under 1 s: {'met' if target < 1 else 'NOT met'}")
        if args.json:
            Path(args.json).write_text(json.dumps({"jobs": args.jobs, "reps": args.reps, "figures": figures},
                                                  indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
