"""The SQLite writer process (opus/storage/writerproc.py): creations are written by a process of each
server process.  What it stores is what SQLAlchemy stores; a taken id is still a DuplicateJobId; and
when the writer is killed (kill -9, before or after its COMMIT), stopped or gone, no job is lost or
written twice.  The faults are real: signals to the real writer process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from gunicorn_server import is_alive
from helpers import wait_for
from sqlalchemy import text

from opus.storage import JobStore, create_engine_for, upgrade_schema
from opus.storage import writerproc
from opus.storage.jobstore import DuplicateJobId
from opus.timeutil import utcnow
from opus.uws import Job, Parameter, Phase

REPO = Path(__file__).resolve().parent.parent


def _job(job_id: str, **kw) -> Job:
    now = utcnow()
    kw.setdefault("phase", Phase.PENDING)
    return Job(job_id=job_id, jobname="dummy", creation_time=now, execution_duration=60,
               destruction_time=now + timedelta(days=1), **kw)


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'opus.sqlite'}"
    engine = create_engine_for(url)
    upgrade_schema(engine)
    engine.dispose()
    return url


@contextmanager
def _store_at(url: str) -> Iterator[JobStore]:
    """A JobStore whose creations go through a writer process, closed at the end."""
    engine = create_engine_for(url)
    store = JobStore(engine, writer_process=True)
    try:
        yield store
    finally:
        store.close()
        engine.dispose()


@pytest.fixture
def store(url):
    with _store_at(url) as store:
        yield store


def _count(store: JobStore, job_id: str | None = None) -> int:
    with store.engine.connect() as conn:
        if job_id is None:
            return conn.execute(text("SELECT count(*) FROM jobs")).scalar_one()
        return conn.execute(text("SELECT count(*) FROM jobs WHERE job_id = :id"), {"id": job_id}).scalar_one()


def _writer_pid(store: JobStore) -> int:
    pid = store._inserts.writer.pid
    assert pid is not None and pid != os.getpid()
    return pid


def _gone(pid: int) -> bool:
    return bool(wait_for(lambda: not is_alive(pid), timeout=60, what=f"process {pid} to end"))


def _raw(store: JobStore, job_id: str) -> tuple[dict, list]:
    with store.engine.connect() as conn:
        job = conn.execute(text("SELECT * FROM jobs WHERE job_id = :id"), {"id": job_id}).mappings().one()
        params = conn.execute(text("SELECT * FROM parameters WHERE job_id = :id ORDER BY name"),
                              {"id": job_id}).all()
    return {k: v for k, v in job.items() if k not in ("seq", "job_id")}, [tuple(p)[1:] for p in params]


def test_the_writer_stores_what_sqlalchemy_stores(store):
    extra = {"run_id": "r1", "owner_id": "alice", "owner_key": "user:7", "quote": utcnow() + timedelta(minutes=5),
             "parameters": [Parameter("text", "x \u00e9\u6f22 y"), Parameter("f", "param:f", by_reference=True),
                            Parameter("big", "z", is_post=True)]}
    fast, slow = _job("00fa", **extra), _job("00f5", **extra)
    slow.creation_time, slow.destruction_time, slow.quote = fast.creation_time, fast.destruction_time, fast.quote
    store.create(fast)
    pid = _writer_pid(store)  # written by the writer process, not in this one
    store._driver_insert = False
    store.create(slow)
    store._driver_insert = True
    assert _raw(store, "00fa") == _raw(store, "00f5")
    assert store.get("00fa").parameters[0].value in ("x \u00e9\u6f22 y", "param:f", "z")
    assert _writer_pid(store) == pid


def test_a_taken_id_is_still_a_duplicate(store):
    store.create(_job("0d0d"))
    with pytest.raises(DuplicateJobId):
        store.create(_job("0d0d"))
    assert _count(store, "0d0d") == 1


def test_many_threads_at_once_lose_nothing(store):
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(25):
                store.create(_job(f"{k:02x}{i:02x}", parameters=[Parameter("text", f"{k} {i}")]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _count(store) == 400
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM parameters")).scalar_one() == 400


def test_a_killed_writer_is_replaced(store):
    store.create(_job("0a01"))
    first = _writer_pid(store)
    os.kill(first, signal.SIGKILL)
    assert _gone(first)
    store.create(_job("0a02"))
    assert _writer_pid(store) != first
    assert _count(store, "0a01") == _count(store, "0a02") == 1


def test_writer_killed_after_its_commit_before_its_answer(url, monkeypatch):
    """The writer commits, then dies before answering: the job is found, not written again."""
    monkeypatch.setenv(writerproc.EXIT_AFTER_COMMITS_ENV, "1")
    with _store_at(url) as store:
        store.create(_job("0c01", parameters=[Parameter("text", "once")]))  # returns: committed
        assert _count(store, "0c01") == 1
        assert [p.value for p in store.get("0c01").parameters] == ["once"]
        store.create(_job("0c02"))  # a new writer, which dies the same way
        assert _count(store) == 2


def test_writer_killed_before_its_commit(store):
    """A stopped writer holds the request; killed, it never commits: the job is written in-process."""
    store.create(_job("0b00"))
    pid = _writer_pid(store)
    os.kill(pid, signal.SIGSTOP)
    done: list[object] = []
    t = threading.Thread(target=lambda: done.append(store.create(_job("0b01"))))
    t.start()
    time.sleep(0.5)
    assert not done  # held by the stopped writer
    os.kill(pid, signal.SIGKILL)
    t.join(timeout=30)
    assert done == [None]
    assert _count(store, "0b01") == 1
    store.create(_job("0b02"))  # and a new writer takes the next
    assert _writer_pid(store) != pid
    assert _count(store) == 3


def test_the_writer_ends_with_its_server_process(url):
    """A server process killed outright: its writer sees the end of its socket and exits."""
    script = textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(REPO)!r})
        from datetime import timedelta
        from opus.storage import JobStore, create_engine_for
        from opus.timeutil import utcnow
        from opus.uws import Job, Phase
        store = JobStore(create_engine_for({url!r}), writer_process=True)
        now = utcnow()
        store.create(Job(job_id="0e01", jobname="dummy", creation_time=now, execution_duration=60,
                         destruction_time=now + timedelta(days=1), phase=Phase.PENDING))
        print(json.dumps(store._inserts.writer.pid), flush=True)
        os.kill(os.getpid(), 9)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    writer = json.loads(done.stdout)
    assert isinstance(writer, int)
    assert _gone(writer)


def test_a_writer_that_cannot_start_leaves_the_insert_in_process(store, monkeypatch):
    monkeypatch.setattr(writerproc, "COMMAND", ("/nonexistent/python",))
    store.create(_job("0f01"))
    assert store._inserts.writer.pid is None
    assert _count(store, "0f01") == 1


def test_a_writer_that_always_dies_is_given_up(store, monkeypatch):
    """A writer that exits at once (here: a program that is no writer) costs a start per creation
    only MAX_FAILURES times; then the process writes its creations itself."""
    monkeypatch.setattr(writerproc, "COMMAND", (sys.executable, "-c", "pass"))
    starts = []
    real = writerproc.InsertWriter._start
    monkeypatch.setattr(writerproc.InsertWriter, "_start", lambda self: (starts.append(1), real(self))[1])
    for i in range(writerproc.MAX_FAILURES + 3):
        store.create(_job(f"0e{i:02x}"))
    assert len(starts) == writerproc.MAX_FAILURES
    assert _count(store) == writerproc.MAX_FAILURES + 3


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB tmpfs for the database (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (scripts/test.sh runs as root in CI)")
    where = tmp_path / "tiny"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "opus-test-writer", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_a_full_disk_raises_the_drivers_error_and_loses_nothing(tiny_disk):
    """SQLite cannot grow its WAL: the creation fails as it always did (the driver's OperationalError,
    which the server answers 503), the writer survives it, and once there is room again it writes."""
    import sqlite3
    url = f"sqlite:///{tiny_disk / 'opus.sqlite'}"
    engine = create_engine_for(url)
    upgrade_schema(engine)
    engine.dispose()
    with _store_at(url) as store:
        store.create(_job("1f00"))
        pid = _writer_pid(store)
        filler = tiny_disk / "filler"
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        with pytest.raises(sqlite3.OperationalError, match="full"):
            store.create(_job("1f01", parameters=[Parameter("text", "y" * 200_000)]))
        filler.unlink()
        store.create(_job("1f02", parameters=[Parameter("text", "y" * 200_000)]))
        assert _writer_pid(store) == pid  # the same writer: it rolled back and went on
        assert _count(store, "1f01") == 0 and _count(store, "1f02") == 1


def test_a_writer_that_does_not_answer_in_time_is_killed(url, monkeypatch):
    """A stopped writer (SIGSTOP: its request taken, never answered) past ANSWER_TIMEOUT: it is
    killed, and the job, absent, is written in-process, once."""
    monkeypatch.setattr(writerproc, "ANSWER_TIMEOUT", 1.0)
    with _store_at(url) as store:
        store.create(_job("1a00"))
        pid = _writer_pid(store)
        os.kill(pid, signal.SIGSTOP)
        store.create(_job("1a01"))  # returns after the timeout
        assert _gone(pid)
        assert _count(store, "1a01") == 1
        store.create(_job("1a02"))
        assert _writer_pid(store) != pid and _count(store) == 3


def test_a_forked_child_starts_its_own_writer(store):
    store.create(_job("2a00"))
    parent = _writer_pid(store)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            store.create(_job("2a01"))
            code = 0 if store._inserts.writer.pid not in (None, parent) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _writer_pid(store) == parent
    store.create(_job("2a02"))  # the parent's writer still works
    assert _count(store) == 3
