"""Where one request's CPU goes, in-process: no socket, no gunicorn, no other process's noise.

    .venv/bin/python bench/profile_requests.py [--n 2000] [--profile] [--database URL]

The WSGI app is called directly (WebTest) with a real store, registry and notifier on a temporary
DATA_DIR (the manager is built but not started: no job runs).  For job creation (urlencoded, one
parameter), GET of a job and a list of LAST=100 it prints, per request: the CPU time of this process
(``time.process_time``, which a loaded machine does not inflate the way it does wall time), the
SQL statements sent to the driver (SQLAlchemy's and the raw driver's alike: sqlite3's trace
callback) and the ``stat()`` calls.  ``--profile`` adds cProfile's top functions for creation.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sqlite3
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import event  # noqa: E402

from opus.server import create_app  # noqa: E402
from opus.service.root import Root  # noqa: E402
from opus.settings import load_settings  # noqa: E402
from opus.storage import create_engine_for, upgrade_schema  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'cgi' is deprecated", DeprecationWarning)
    import webtest  # noqa: E402


class Counters:
    """SQL statements and stat() calls made while counting."""

    def __init__(self) -> None:
        self.sql = 0
        self.stats = 0
        self.on = False
        self.statements: dict[str, int] = {}

    def statement(self, sql: str) -> None:
        if self.on:
            self.sql += 1
            key = " ".join(sql.split())[:70]
            self.statements[key] = self.statements.get(key, 0) + 1


def instrument(root: Root, counters: Counters) -> None:
    engine = root.store.engine
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _trace(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            dbapi_conn.set_trace_callback(counters.statement)
        engine.dispose()  # new connections get the trace
    else:
        @event.listens_for(engine, "before_cursor_execute")
        def _count(_conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
            counters.statement(statement)
    real_stat = os.stat

    def counting_stat(*args: Any, **kwargs: Any) -> Any:
        if counters.on:
            counters.stats += 1
        return real_stat(*args, **kwargs)
    os.stat = counting_stat  # type: ignore[assignment]


def measure(name: str, n: int, call: Callable[[int], None], counters: Counters) -> None:
    for i in range(min(50, n)):  # warm-up: caches, pool, first compilations
        call(i)
    counters.sql = counters.stats = 0
    counters.statements.clear()
    counters.on = True
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        call(i)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    counters.on = False
    print(f"{name:<22} CPU {cpu / n * 1000:6.3f} ms/request  wall {wall / n * 1000:6.3f} ms  "
          f"SQL {counters.sql / n:5.2f}/request  stat() {counters.stats / n:5.2f}/request")
    for sql, count in sorted(counters.statements.items(), key=lambda kv: -kv[1])[:6]:
        print(f"    {count / n:5.2f}  {sql}")


def measure_threads(name: str, n: int, threads: int, call: Callable[[int], None], counters: Counters) -> None:
    """``n`` calls spread over ``threads`` threads at once (the process's CPU, all threads)."""
    import threading

    def work(start: int) -> None:
        for i in range(start, n, threads):
            call(i)
    counters.sql = counters.stats = 0
    counters.statements.clear()
    counters.on = True
    cpu, wall = time.process_time(), time.perf_counter()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    counters.on = False
    commits = counters.statements.get("COMMIT", 0)
    print(f"{name:<22} CPU {cpu / n * 1000:6.3f} ms/request  wall {wall / n * 1000:6.3f} ms  "
          f"SQL {counters.sql / n:5.2f}/request  COMMITs {commits / n:5.2f}/request")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--database", default="sqlite")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="opus-profile-"))
    try:
        jdl = tmp / "jdl"
        shutil.copytree(REPO / "jdl", jdl)
        values: dict[str, Any] = dict(DATA_DIR=str(tmp / "var"), JDL_DIR=str(jdl), MAINTENANCE_INTERVAL=0)
        if args.database != "sqlite":
            values["DATABASE_URL"] = args.database
        settings = load_settings(None, **values).with_overrides(CALLBACK_URL="http://localhost:1")
        upgrade_schema(create_engine_for(settings.database_url))
        root = Root.build(settings)
        counters = Counters()
        instrument(root, counters)
        root.notifier.start()
        app = webtest.TestApp(create_app(settings, root), extra_environ={"HTTP_HOST": "localhost"})
        created: list[str] = []

        def create(_i: int) -> None:
            r = app.post("/rest/dummy", {"text": "x"}, status=303)
            created.append(r.headers["Location"].rsplit("/", 1)[-1])

        def get(i: int) -> None:
            app.get(f"/rest/dummy/{created[i % len(created)]}", status=200)

        def listing(_i: int) -> None:
            app.get("/rest/dummy?LAST=100", status=200)

        measure("create (urlencoded)", args.n, create, counters)
        measure_threads("create, 16 threads", args.n, 16, create, counters)
        measure("GET job", args.n, get, counters)
        measure("list LAST=100", max(args.n // 10, 1), listing, counters)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for i in range(args.n):
                create(i)
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(30)
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats("opus/", 40)
            print(out.getvalue())
        root.notifier.stop()
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
