"""Group commits on PostgreSQL cannot deadlock (issue 18): every batch is written in the order of its
job ids, not in the order its writes arrived.

Two real processes (as two gunicorn workers are), each with its own JobStore on the test PostgreSQL,
queue the same jobs' writes in opposite orders, then write them as one batch each, at the same
moment.  In arrival order, each would lock the rows it reaches first and wait for the other's:
PostgreSQL breaks such a cycle after ``deadlock_timeout`` by aborting one transaction
(``DeadlockDetected``), and that batch is rolled back and redone write by write.  In job-id order,
the second batch waits for the first to commit, then goes on.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import timedelta

import pytest
from conftest import pg_url_or_skip, reset_postgres
from helpers import wait_for
from sqlalchemy import event

from opus.storage import JobStore, create_engine_for, upgrade_schema
from opus.storage.jobstore import DuplicateJobId
from opus.timeutil import utcnow
from opus.uws import Job, Parameter, Phase

pytestmark = pytest.mark.postgres


def _job(job_id: str) -> Job:
    now = utcnow()
    return Job(job_id=job_id, jobname="dummy", phase=Phase.PENDING, creation_time=now, execution_duration=60,
               destruction_time=now + timedelta(days=1), parameters=[Parameter("text", job_id)])


def _writer(url, kind, job_ids, tag, ready, go, out):
    """One worker process: queue a write per job of ``job_ids``, in that order, then (at ``go``)
    write them as one batch.  Puts what happened on ``out``."""
    engine = create_engine_for(url)
    store = JobStore(engine)
    batcher = store._inserts.batcher if kind == "insert" else store._gate._ops
    failures: list[str] = []  # the exceptions that failed a whole batch
    transactions = []
    real = batcher._transaction

    def transaction(batch):
        transactions.append(len(batch))
        try:
            real(batch)
        except Exception as exc:
            failures.append(type(getattr(exc, "orig", None) or exc).__name__)  # the driver's error
            raise
    batcher._transaction = transaction
    if kind == "update":
        # Each UPDATE holds its row a little before the next, as a busy server's would: the two
        # batches are certain to overlap.  (The insert path is the driver's, below SQLAlchemy.)
        @event.listens_for(engine, "after_cursor_execute")
        def hold(conn, cursor, statement, *args):
            if statement.startswith("UPDATE jobs"):
                time.sleep(0.05)
    outcome: dict[str, str] = {}

    def write(job_id):
        try:
            if kind == "insert":
                store.create(_job(job_id))
                outcome[job_id] = "created"
            else:
                outcome[job_id] = "moved" if store.update_job(job_id, run_id=tag) else "not moved"
        except DuplicateJobId:
            outcome[job_id] = "taken"
        except Exception as exc:  # noqa: BLE001 - reported to the test
            outcome[job_id] = f"error: {exc!r}"

    threads = []
    with batcher.held():  # as when another batch is being written
        for i, job_id in enumerate(job_ids):
            threads.append(threading.Thread(target=write, args=(job_id,)))
            threads[-1].start()
            wait_for(lambda n=i + 1: len(batcher._queued) == n, what=f"write {i} queued")
        ready.set()
        go.wait(60)
    for t in threads:
        t.join(60)
    out.put({"tag": tag, "failures": failures, "transactions": transactions, "outcome": outcome})
    engine.dispose()


def _race(url, kind, job_ids):
    """Run two writer processes, one with ``job_ids`` in order and one in reverse; their reports."""
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs, ready = [], []
    for tag, order in (("up", job_ids), ("down", job_ids[::-1])):
        ready.append(ctx.Event())
        procs.append(ctx.Process(target=_writer, args=(url, kind, order, tag, ready[-1], go, out), daemon=True))
        procs[-1].start()
    try:
        for r in ready:
            assert r.wait(120), "a writer process did not get ready"
        go.set()
        reports = {}
        for _ in procs:
            report = out.get(timeout=120)
            reports[report["tag"]] = report
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    return reports


@pytest.fixture
def pg_store():
    url = pg_url_or_skip()
    reset_postgres(url)
    engine = create_engine_for(url)
    upgrade_schema(engine)
    yield url, JobStore(engine)
    engine.dispose()


def test_batched_updates_of_two_processes_in_opposite_orders_do_not_deadlock(pg_store):
    url, store = pg_store
    ids = [f"u{i:02d}" for i in range(8)]
    for job_id in ids:
        store.create(_job(job_id))
    reports = _race(url, "update", ids)
    for tag, report in reports.items():
        assert report["failures"] == [], f"{tag}: a batch failed: {report['failures']}"
        assert report["transactions"] == [len(ids)], f"{tag}: not one batch: {report['transactions']}"
        assert report["outcome"] == {job_id: "moved" for job_id in ids}
    # Both wrote every row; the batch that committed last wrote its tag on all of them.
    assert len({store.get(job_id).run_id for job_id in ids}) == 1


def test_batched_creations_of_two_processes_in_opposite_orders_do_not_deadlock(pg_store):
    """The same new jobs inserted by two processes: one creates them all, the other is told each id
    is taken.  (Job ids are drawn at random, so this happens with creation keys, a client's retry
    reaching two workers; the order is the same.)"""
    url, store = pg_store
    ids = [f"c{i:03d}" for i in range(300)]
    reports = _race(url, "insert", ids)
    failures = [f for report in reports.values() for f in report["failures"]]
    assert "DeadlockDetected" not in failures, failures
    for job_id in ids:
        seen = sorted(report["outcome"][job_id] for report in reports.values())
        assert seen == ["created", "taken"], (job_id, seen)
        assert store.get(job_id) is not None
