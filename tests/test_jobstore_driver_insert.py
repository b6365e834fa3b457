"""JobStore.create goes straight to the driver (on SQLite a shorter write lock, everywhere more
jobs/s): it must job_store exactly what SQLAlchemy's own INSERT stores, and still report a taken job id.
Run on SQLite and on PostgreSQL (the `database_url` fixture)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from opus.storage.jobstore import DuplicateJobId
from opus.storage.tables import jobs, parameters
from opus.timeutil import utcnow
from opus.uws import ErrorSummary, Job, Parameter, Phase
def _job(job_id, **kw):
    kw = dict(kw)
    now = utcnow()
    kw.setdefault("phase", Phase.PENDING)
    return Job(job_id=job_id, jobname="dummy", creation_time=now, execution_duration=60,
               destruction_time=now + timedelta(days=1), **kw)


def _raw_rows(job_store, job_id):
    with job_store.engine.connect() as conn:
        # the strings and integers as stored, without SQLAlchemy's result processing
        job = conn.execute(text("SELECT * FROM jobs WHERE job_id = :id"), {"id": job_id}).mappings().one()
        params = conn.execute(text("SELECT * FROM parameters WHERE job_id = :id ORDER BY name"),
                              {"id": job_id}).all()
    return {k: v for k, v in job.items() if k not in ("seq", "job_id")}, [tuple(p)[1:] for p in params]


@pytest.mark.parametrize("extra", [
    {},
    {"run_id": "r1", "owner_id": "alice", "owner_key": "user:7", "quote": utcnow() + timedelta(minutes=5), "jdl_version": "3",
     "parameters": [Parameter("text", "x y"), Parameter("f", "param:f", by_reference=True),
                    Parameter("big", "z", is_post=True)]},
    {"phase": Phase.ERROR, "error": ErrorSummary("it broke", "transient", True)},
])
def test_the_driver_insert_stores_what_sqlalchemy_stores(job_store, extra):
    fast, slow = _job("00fa", **extra), _job("00f5", **extra)
    slow.creation_time, slow.destruction_time, slow.quote = fast.creation_time, fast.destruction_time, fast.quote
    job_store.create(fast)
    job_store._driver_insert = False  # the generic path: SQLAlchemy's insert()
    job_store.create(slow)
    job_store._driver_insert = True
    assert _raw_rows(job_store, "00fa") == _raw_rows(job_store, "00f5")
    got = job_store.get("00fa")
    assert got.creation_time == job_store.get("00f5").creation_time and got.creation_time.tzinfo is not None
    assert [(p.name, p.value, p.by_reference, p.is_post) for p in got.parameters] == \
        sorted((p.name, p.value, p.by_reference, p.is_post) for p in fast.parameters)
    assert [r.job_id for r in job_store.list("dummy")] == ["00f5", "00fa"]  # same instant: by seq


def test_a_taken_job_id_is_reported_and_nothing_is_left_half_written(job_store):
    job_store.create(_job("00dd", parameters=[Parameter("text", "first")]))
    with pytest.raises(DuplicateJobId):
        job_store.create(_job("00dd", parameters=[Parameter("text", "second")]))
    with job_store.engine.connect() as conn:
        assert conn.execute(select(jobs.c.job_id)).scalars().all() == ["00dd"]
        assert conn.execute(select(parameters.c.value)).scalars().all() == ["first"]
    job_store.create(_job("00de"))  # the connection went back to the pool usable
    assert job_store.get("00de") is not None
