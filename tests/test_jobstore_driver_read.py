"""JobStore.get reads through the driver (opus.storage.driverread): it must return exactly the Job
that SQLAlchemy's own reads return, for every kind of job, on SQLite and on PostgreSQL (the
`database_url` fixture); and a database that is away must still be seen as an outage (503)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from opus.storage import JobStore, create_engine_for, upgrade_schema
from opus.storage.outage import is_outage
from opus.timeutil import utcnow
from opus.uws import ErrorSummary, Job, Parameter, Phase, Result


def _both(job_store, job_id):
    job_store._driver_read = False  # the generic path: SQLAlchemy's select()s
    slow = job_store.get(job_id)
    job_store._driver_read = True
    return job_store.get(job_id), slow


def _job(job_id, **kw):
    now = utcnow()
    return Job(job_id=job_id, jobname="dummy", creation_time=now, execution_duration=60,
               destruction_time=now + timedelta(days=1), **kw)


def test_a_pending_job_with_every_field_reads_the_same(job_store):
    job_store.create(_job("0a01", phase=Phase.PENDING, run_id="r1", owner_id="alice", owner_key="user:7",
                      quote=utcnow() + timedelta(minutes=5), jdl_version="3",
                      parameters=[Parameter("text", "x y"), Parameter("f", "param:f", by_reference=True),
                                  Parameter("big", "z", is_post=True)]))
    fast, slow = _both(job_store, "0a01")
    assert fast == slow
    assert fast.creation_time.tzinfo is not None and fast.quote.tzinfo is not None
    assert [(p.name, p.by_reference, p.is_post) for p in fast.parameters] == \
        [("big", False, True), ("f", True, False), ("text", False, False)]
    assert all(type(p.by_reference) is bool and type(p.is_post) is bool for p in fast.parameters)


def test_an_ended_job_reads_the_same_with_its_results_and_error(job_store):
    job_store.create(_job("0a02", phase=Phase.QUEUED, parameters=[Parameter("text", "x")]))
    assert job_store.set_phase("0a02", Phase.EXECUTING, start_time=utcnow())
    found = [Result("out", "out.txt", "text/plain", 3, "ab" * 32), Result("log", "run.log")]
    assert job_store.complete("0a02", Phase.ERROR, None, found, end_time=utcnow(),
                          error=ErrorSummary("it broke", "transient", True))
    fast, slow = _both(job_store, "0a02")
    assert fast == slow
    assert fast.phase is Phase.ERROR and fast.error == ErrorSummary("it broke", "transient", True)
    assert [r.result_id for r in fast.results] == ["log", "out"] and fast.results[1].size == 3
    assert fast.start_time.tzinfo is not None and fast.end_time >= fast.start_time


def test_values_any_text_may_hold_read_back_exactly(job_store):
    """PostgreSQL reads the parameters and results as JSON (one statement): quotes, backslashes,
    control characters, non-ASCII, long values and big sizes come back as they were stored."""
    tricky = ['say "hi"', "back\\slash \\u0041", "tab\tnew\nline\r", "é ü 漢字 🚀", "x" * 70_000, "", "null",
              "[1, 2]", "\x01\x1f\x7f"]
    params = [Parameter(f"p{i}", v, by_reference=bool(i % 2)) for i, v in enumerate(tricky)]
    job_store.create(_job("0c03", phase=Phase.QUEUED, parameters=params))
    assert job_store.set_phase("0c03", Phase.EXECUTING, start_time=utcnow())
    assert job_store.complete("0c03", Phase.COMPLETED, None, [
        Result("r\"1", "fichier é.txt", 'text/plain; charset="utf-8"', 2**40 + 1, None),
        Result("r2", "a\\b", "application/octet-stream", 0, "f" * 64)], end_time=utcnow())
    fast, slow = _both(job_store, "0c03")
    assert fast == slow
    assert sorted((p.name, p.value) for p in fast.parameters) == sorted((p.name, p.value) for p in params)
    assert [(r.result_id, r.file_name, r.size, r.sha256) for r in fast.results] == \
        [('r"1', "fichier é.txt", 2**40 + 1, None), ("r2", "a\\b", 0, "f" * 64)]


def test_a_missing_job_is_none(job_store):
    assert _both(job_store, "0bad") == (None, None)


def test_a_database_that_is_away_is_an_outage(tmp_path):
    """SQLite: the database file made unreadable under the job_store (the driver's own error)."""
    db = tmp_path / "db" / "opus.db"
    engine = create_engine_for(f"sqlite:///{db}")
    upgrade_schema(engine)
    job_store = JobStore(engine)
    job_store.create(_job("0a03", phase=Phase.PENDING))
    engine.dispose()  # no pooled connection holds the old file open
    db.unlink()
    db.mkdir()  # the path is a directory now: SQLite cannot open it
    with pytest.raises(Exception) as caught:
        job_store.get("0a03")
    assert is_outage(caught.value)
