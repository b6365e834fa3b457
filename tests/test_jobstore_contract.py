"""The JobStore contract, run on SQLite and on PostgreSQL (the `database_url` fixture)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect

from opus.storage import JobStore
from opus.storage.database import schema_is_current
from opus.storage.jobstore import DuplicateJobId
from opus.storage.rows import instant_text
from opus.timeutil import utcnow
from opus.uws import ErrorSummary, Job, Parameter, Phase, Result
@pytest.fixture
def store(db_engine):
    changes = []
    s = JobStore(db_engine, on_change=lambda job_id, phase: changes.append((job_id, phase)))
    s.changes = changes
    return s


def make_job(job_id, jobname="dummy", phase=Phase.PENDING, created=None, **kw):
    return Job(job_id=job_id, jobname=jobname, phase=phase, creation_time=created or utcnow(),
               execution_duration=60, destruction_time=utcnow() + timedelta(days=1), **kw)


def test_schema_is_current_after_upgrade(store):
    assert schema_is_current(store.engine)
    assert {"jobs", "parameters", "results"} <= set(inspect(store.engine).get_table_names())


def test_migrations_match_the_table_definitions(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from opus.storage.tables import metadata
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_create_and_get_round_trip(store):
    job = make_job("00aa", run_id="r1", owner_id="alice", owner_key="user:7", quote=utcnow(),
                   parameters=[Parameter("text", "x y"), Parameter("f", "param:f", by_reference=True)])
    store.create(job)
    got = store.get("00aa")
    assert got.job_id == "00aa" and got.run_id == "r1" and got.owner_id == "alice" and got.owner_key == "user:7"
    # A named owner without the key that access goes by is refused: the job would look anonymous.
    with pytest.raises(ValueError):
        store.create(make_job("00ab", owner_id="alice"))
    assert got.phase is Phase.PENDING
    assert got.creation_time.tzinfo is not None
    assert abs((got.creation_time - job.creation_time).total_seconds()) < 0.001
    assert got.creation_time.microsecond % 1000 == 0  # stored as UWS prints it
    assert {(p.name, p.value, p.by_reference) for p in got.parameters} == {("text", "x y", False),
                                                                          ("f", "param:f", True)}
    assert store.changes == []  # a new job is not announced: nobody waits on it yet
    assert store.get("nope") is None


def test_duplicate_job_id_is_refused(store):
    store.create(make_job("dup1"))
    with pytest.raises(DuplicateJobId):
        store.create(make_job("dup1"))


def test_compare_and_set_phase(store):
    store.create(make_job("cas1"))
    assert store.set_phase("cas1", Phase.QUEUED, [Phase.PENDING])
    assert not store.set_phase("cas1", Phase.QUEUED, [Phase.PENDING])
    assert store.set_phase("cas1", Phase.ABORTED, [Phase.QUEUED, Phase.EXECUTING])
    # A late completion can never overwrite the abort.
    assert not store.complete("cas1", Phase.COMPLETED, [Phase.EXECUTING], [Result("r", "r.txt")])
    job = store.get("cas1")
    assert job.phase is Phase.ABORTED and job.results == []
    assert [c[1] for c in store.changes] == ["QUEUED", "ABORTED"]


def test_concurrent_compare_and_set_has_one_winner(store):
    store.create(make_job("race", phase=Phase.EXECUTING))
    wins = []
    barrier = threading.Barrier(8)

    def attempt(target):
        barrier.wait()
        if store.set_phase("race", target, [Phase.EXECUTING]):
            wins.append(target)

    threads = [threading.Thread(target=attempt, args=(Phase.ABORTED if i % 2 else Phase.COMPLETED,))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get_phase("race") is wins[0]


def test_complete_records_results_and_error(store):
    store.create(make_job("c1", phase=Phase.EXECUTING))
    ok = store.complete("c1", Phase.ERROR, [Phase.EXECUTING], [Result("out", "out.txt", "text/plain", 3, "ab")],
                        end_time=utcnow(), error=ErrorSummary("boom"))
    assert ok
    job = store.get("c1")
    assert job.error.message == "boom" and job.error.type == "fatal" and job.error.has_detail
    assert [(r.result_id, r.file_name, r.size) for r in job.results] == [("out", "out.txt", 3)]
    assert job.end_time is not None


def test_list_filters_and_order(store):
    base = utcnow() - timedelta(hours=1)
    for i in range(6):
        phase = [Phase.PENDING, Phase.COMPLETED, Phase.ERROR, Phase.ARCHIVED][i % 4]
        store.create(make_job(f"j{i}", created=base + timedelta(minutes=i), phase=phase))
    store.create(make_job("other", jobname="sleep", created=base))
    refs = store.list("dummy")
    assert [r.job_id for r in refs] == ["j5", "j4", "j2", "j1", "j0"]  # newest first, no ARCHIVED
    assert [r.job_id for r in store.list("dummy", last=2)] == ["j5", "j4"]
    assert [r.job_id for r in store.list("dummy", phases=[Phase.ARCHIVED])] == ["j3"]
    assert [r.job_id for r in store.list("dummy", phases=[Phase.PENDING, Phase.ERROR])] == ["j4", "j2", "j0"]
    after = base + timedelta(minutes=2)
    assert [r.job_id for r in store.list("dummy", after=after)] == ["j5", "j4"]  # strictly after
    assert [r.job_id for r in store.list("dummy", after=base, last=1, phases=[Phase.PENDING])] == ["j4"]
    assert {r.job_id for r in store.list(None)} == {"j5", "j4", "j2", "j1", "j0", "other"}


def test_listed_creation_time_is_the_stored_instant_as_uws_prints_it(store):
    """A list's creation times are read without datetime objects (rows.instant_text): the text must
    be the stored instant to the millisecond, on both drivers, for every millisecond value."""
    base = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    created = [base, base + timedelta(milliseconds=7), base + timedelta(seconds=59, milliseconds=999),
               base + timedelta(days=245, microseconds=123456)]  # the store keeps milliseconds
    for i, when in enumerate(created):
        store.create(make_job(f"t{i}", created=when))
    refs = {r.job_id: r for r in store.list("dummy")}
    assert [refs[f"t{i}"].created for i in range(4)] == [
        "2024-05-01T12:00:00.000Z", "2024-05-01T12:00:00.007Z", "2024-05-01T12:00:59.999Z",
        "2025-01-01T12:00:00.123Z"]
    for i, when in enumerate(created):
        assert refs[f"t{i}"].creation_time == store.get(f"t{i}").creation_time
        assert refs[f"t{i}"].creation_time.tzinfo is not None
    assert [r.created for r in store.iter_list("dummy")] == [r.created for r in store.list("dummy")]


@pytest.mark.parametrize("value, text", [
    ("2024-05-01T12:00:00.007Z", "2024-05-01T12:00:00.007Z"),     # PostgreSQL's to_char
    ("2024-05-01 12:00:00.007000", "2024-05-01T12:00:00.007Z"),   # SQLAlchemy's SQLite text
    ("2024-05-01 12:00:00", "2024-05-01T12:00:00.000Z"),          # another text: parsed
    ("2024-05-01T12:00:00.5", "2024-05-01T12:00:00.500Z"),
    (datetime(2024, 5, 1, 12, 0, 0, 7999), "2024-05-01T12:00:00.007Z"),  # PostgreSQL: naive UTC
    (datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), "2024-05-01T12:00:00.000Z"),
])
def test_instant_text_of_each_driver_value(value, text):
    assert instant_text(value) == text


def test_list_before_and_run_id(store):
    """OPUS's BEFORE (strictly before) and RUNID (exact; with "*", any characters and any case; LIKE's
    own % and _ are plain characters)."""
    base = utcnow() - timedelta(hours=1)
    for i, run_id in enumerate(["Survey-A", "survey-b", "calib_1", "calib%1", None, "survey-b"]):
        store.create(make_job(f"r{i}", created=base + timedelta(minutes=i), run_id=run_id))
    ids = lambda **kw: [r.job_id for r in store.list("dummy", **kw)]  # noqa: E731
    assert ids(before=base + timedelta(minutes=2)) == ["r1", "r0"]
    assert ids(run_id="survey-b") == ["r5", "r1"] and ids(run_id="Survey-a") == []
    assert ids(run_id="*survey*") == ["r5", "r1", "r0"]
    assert ids(run_id="calib_*") == ["r2"] and ids(run_id="calib%*") == ["r3"]  # _ and % are themselves
    assert ids(run_id="*") == ["r5", "r3", "r2", "r1", "r0"]  # no run id: never matched
    assert ids(run_id="*survey*", before=base + timedelta(minutes=5), last=1) == ["r1"]
    streamed = [r.job_id for r in store.iter_list("dummy", run_id="*SURVEY*", before=base + timedelta(minutes=3))]
    assert streamed == ["r1", "r0"]


def test_same_millisecond_jobs_keep_creation_order(store):
    now = utcnow()
    for i in range(5):
        store.create(make_job(f"s{i}", created=now))
    assert [r.job_id for r in store.list("dummy")] == ["s4", "s3", "s2", "s1", "s0"]


def test_set_parameters_only_in_allowed_phase(store):
    store.create(make_job("p1", parameters=[Parameter("a", "1")]))
    assert store.set_parameters("p1", [Parameter("a", "2"), Parameter("b", "3")], [Phase.PENDING])
    assert {p.name: p.value for p in store.get("p1").parameters} == {"a": "2", "b": "3"}
    store.set_phase("p1", Phase.QUEUED, [Phase.PENDING])
    assert not store.set_parameters("p1", [Parameter("a", "9")], [Phase.PENDING])
    assert {p.name: p.value for p in store.get("p1").parameters} == {"a": "2", "b": "3"}


def test_delete_and_archive(store):
    store.create(make_job("d1", parameters=[Parameter("a", "1")]))
    assert store.delete("d1")
    assert store.get("d1") is None and not store.delete("d1")
    assert store.changes[-1] == ("d1", "DELETED")
    store.create(make_job("a1", phase=Phase.EXECUTING))
    store.complete("a1", Phase.COMPLETED, [Phase.EXECUTING], [Result("r", "r")])
    assert store.archive("a1")
    job = store.get("a1")
    assert job.phase is Phase.ARCHIVED and job.results == []
    store.create(make_job("a2"))
    assert not store.archive("a2")  # only finished jobs are archived


def test_expired_and_claims(store):
    past = utcnow() - timedelta(seconds=5)
    store.create(make_job("e1"))
    store.update_job("e1", list(Phase), destruction_time=past)
    store.create(make_job("e2"))
    assert store.expired(utcnow()) == ["e1"]
    store.create(make_job("q1", phase=Phase.QUEUED))
    store.create(make_job("q2", phase=Phase.QUEUED))
    assert store.claimable(10) == ["q1", "q2"]
    assert store.claim("q1", "local:starting")
    assert not store.claim("q1", "local:other")
    assert store.claimable(10) == ["q2"]
    assert store.running() == [("q1", "local:starting", Phase.QUEUED)]
    assert store.count_by_phase() == {"PENDING": 2, "QUEUED": 2}
