"""Job creation is one commit, and a creation that answers an error creates nothing.

* A creation with PHASE=RUN inserts the job QUEUED: no PENDING row ever exists that a kill between
  two writes could leave behind (issue 14, point 2).
* A creation that fails validation (a missing required input, a bad upload, a value over a
  limit) leaves no job and no file, and does not count against the caller's limit of unfinished
  jobs (issue 13, point 14).
* ``Idempotency-Key``: a retry of the same creation returns the job the first one made, concurrent
  retries make one job (on SQLite and PostgreSQL), the same key with another request is a 422.
* ``WAIT`` below -1 or not an integer is a 400 (issue 13, point 12).
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from conftest import ApiServer, make_settings, signed_in_sessions
from helpers import wait_final

from opus.storage import JobStore, create_engine_for, upgrade_schema
from opus.storage.jobstore import CreationKey, CreationKeyTaken
from opus.storage.tables import jobs
from opus.timeutil import utcnow
from opus.uws import Job, Phase

KEY = "Idempotency-Key"


def _all_job_ids(server) -> list[str]:
    with server.services.store.engine.connect() as conn:
        return list(conn.execute(select(jobs.c.job_id)).scalars())


def _job_dirs(server) -> list[str]:
    jobs_dir = server.settings.jobs_dir
    return sorted(p.name for p in jobs_dir.iterdir()) if jobs_dir.exists() else []


# ---- one commit ------------------------------------------------------------------------------------
def test_a_run_creation_is_inserted_queued_and_never_moved_from_pending(api):
    store = api.services.store
    inserted = []
    create = store.create

    def spy_create(job, *args, **kwargs):
        inserted.append(job.phase)
        return create(job, *args, **kwargs)

    set_phase = store.set_phase

    def killed_between_two_writes(job_id, target, sources=None, **fields):
        # A server killed after a PENDING insert would never make this move: fail it as a kill would.
        if target is Phase.QUEUED:
            raise RuntimeError("killed between the insert and the queueing")
        return set_phase(job_id, target, sources, **fields)

    store.create, store.set_phase = spy_create, killed_between_two_writes
    url = api.create("dummy", {"text": "once"}, run=True)
    assert inserted == [Phase.QUEUED]
    assert wait_final(api.http, url) == "COMPLETED"
    r = api.http.get(f"{api.url}/rest/dummy", params={"PHASE": "PENDING"}, headers={"Accept": "application/json"})
    assert r.json()["jobs"] == []


def test_a_pending_creation_stays_pending_and_run_later_queues_it(api):
    url = api.create("dummy", {"text": "later"})
    assert api.http.get(url + "/phase").text == "PENDING"
    assert api.http.post(url + "/phase", data={"PHASE": "RUN"}, allow_redirects=False).status_code == 303
    assert wait_final(api.http, url) == "COMPLETED"


# ---- a failed creation creates nothing ------------------------------------------------------------------
@pytest.fixture
def limited(tmp_path):
    """A server with small upload limits and a user, alice, allowed one unfinished job."""
    server = ApiServer(make_settings(tmp_path, MAX_UPLOAD_SIZE=1024, ALLOW_ANONYMOUS=False))
    sessions = signed_in_sessions(server, users=(("alice", {"max_active_jobs": 1}),))
    server.http = sessions["alice"]
    yield server
    server.stop()


@pytest.mark.parametrize("jobname, data, files, status", [
    ("copy", {"PHASE": "RUN"}, None, 400),                                   # a required input missing
    ("dummy", {"PHASE": "RUN", "text": "x"}, {"text": ("t.txt", b"a file")}, 400),  # a file for a string
    ("copy", {"PHASE": "RUN"}, {"infile": ("big.bin", b"x" * 4096)}, 413),    # an upload over the limit
    ("dummy", {"PHASE": "RUN", "nosuch": "1"}, None, 400),                    # an unknown parameter
    ("dummy", {"PHASE": "RUN", "EXECUTIONDURATION": "soon"}, None, 400),      # a bad control value
])
def test_a_creation_that_fails_leaves_no_job_and_no_file(limited, jobname, data, files, status):
    r = limited.http.post(f"{limited.url}/rest/{jobname}", data=data, files=files, allow_redirects=False)
    assert r.status_code == status, r.text
    assert _all_job_ids(limited) == []
    assert _job_dirs(limited) == []
    # Nothing counts against alice's limit of one unfinished job: she may still create one.
    url = limited.create("dummy", {"text": "fine"})
    assert limited.http.get(url + "/phase").text == "PENDING"


def test_the_limit_of_unfinished_jobs_still_holds(limited):
    limited.create("dummy", {"text": "one"})
    r = limited.http.post(f"{limited.url}/rest/dummy", data={"text": "two"}, allow_redirects=False)
    assert r.status_code == 403 and "limit" in r.text


# ---- Idempotency-Key ----------------------------------------------------------------------------------
def _post(server, data, key, http=None, files=None, jobname="dummy"):
    return (http or server.http).post(f"{server.url}/rest/{jobname}", data=data, files=files,
                                      headers={KEY: key}, allow_redirects=False)


def test_a_retry_with_the_same_key_returns_the_same_job(api):
    key = str(uuid.uuid4())
    first = _post(api, {"text": "hello", "PHASE": "RUN"}, key)
    assert first.status_code == 303, first.text
    again = _post(api, {"PHASE": "RUN", "text": "hello"}, f'"{key}"')  # another field order, a quoted key
    assert again.status_code == 303, again.text
    assert again.headers["Location"] == first.headers["Location"]
    assert _all_job_ids(api) == [first.headers["Location"].rsplit("/", 1)[1]]
    # Another key (or none) is another job.
    other = _post(api, {"text": "hello", "PHASE": "RUN"}, key + "x").headers["Location"]
    assert other != first.headers["Location"]
    assert len(_all_job_ids(api)) == 2
    for url in (first.headers["Location"], other):
        assert wait_final(api.http, url) == "COMPLETED"


def test_the_same_key_with_another_request_is_refused(api):
    key = "order-42"
    first = _post(api, {"text": "hello"}, key)
    assert first.status_code == 303
    for data, jobname in (({"text": "bye"}, "dummy"), ({"text": "hello", "PHASE": "RUN"}, "dummy"),
                          ({"seconds": "1"}, "sleep")):
        r = _post(api, data, key, jobname=jobname)
        assert r.status_code == 422, r.text
        assert KEY in r.text and "different request" in r.text
    assert len(_all_job_ids(api)) == 1
    assert api.http.get(first.headers["Location"] + "/phase").text == "PENDING"


def test_uploads_are_part_of_the_request_a_key_names(api):
    key = "upload-1"
    first = _post(api, {}, key, files={"infile": ("a.bin", b"first content")}, jobname="copy")
    assert first.status_code == 303, first.text
    same = _post(api, {}, key, files={"infile": ("a.bin", b"first content")}, jobname="copy")
    assert same.headers["Location"] == first.headers["Location"]
    other = _post(api, {}, key, files={"infile": ("a.bin", b"other content")}, jobname="copy")
    assert other.status_code == 422, other.text
    # The upload stored is the one sent (the digest read it without consuming it).
    assert api.http.get(first.headers["Location"] + "/parameters/infile").content == b"first content"


def test_keys_belong_to_their_owner_and_expire_with_their_job(tmp_path):
    server = ApiServer(make_settings(tmp_path))
    try:
        sessions = signed_in_sessions(server, users=(("alice", {}), ("bob", {})))
        a = _post(server, {"text": "x"}, "k1", http=sessions["alice"])
        b = _post(server, {"text": "x"}, "k1", http=sessions["bob"])
        anon = _post(server, {"text": "x"}, "k1", http=sessions["anonymous"])
        assert len({a.headers["Location"], b.headers["Location"], anon.headers["Location"]}) == 3
        # Deleted: the key is free again, and makes a new job.
        assert sessions["alice"].delete(a.headers["Location"], allow_redirects=False).status_code == 303
        again = _post(server, {"text": "x"}, "k1", http=sessions["alice"])
        assert again.status_code == 303 and again.headers["Location"] != a.headers["Location"]
    finally:
        server.stop()


def test_a_retry_is_answered_even_at_the_limit_of_unfinished_jobs(limited):
    first = _post(limited, {"text": "x"}, "retry-at-limit")
    again = _post(limited, {"text": "x"}, "retry-at-limit")
    assert again.status_code == 303 and again.headers["Location"] == first.headers["Location"]


@pytest.mark.parametrize("key", ["", '""', "x" * 256, "caf\u00e9", "a\tb"])
def test_a_malformed_key_is_a_400(api, key):
    r = api.http.post(f"{api.url}/rest/dummy", data={"text": "x"}, headers={KEY: key.encode("utf-8")},
                      allow_redirects=False)
    assert r.status_code == 400, r.text
    assert KEY in r.text
    assert _all_job_ids(api) == []


def test_concurrent_retries_with_one_key_make_one_job(tmp_path, database_url):
    server = ApiServer(make_settings(tmp_path, DATABASE_URL=database_url))
    try:
        answers: list[requests.Response] = []
        start = threading.Barrier(8)

        def retry():
            http = requests.Session()
            start.wait()
            answers.append(_post(server, {"text": "race", "PHASE": "RUN"}, "the-one-key", http=http))

        threads = [threading.Thread(target=retry) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [a.status_code for a in answers] == [303] * 8, [a.text for a in answers]
        assert len({a.headers["Location"] for a in answers}) == 1
        assert len(_all_job_ids(server)) == 1
        assert len(_job_dirs(server)) <= 1  # no files of a loser left behind
        assert wait_final(server.http, answers[0].headers["Location"]) == "COMPLETED"  # and it ran
    finally:
        server.stop()


def test_the_store_gives_a_key_to_one_job_only(tmp_path, database_url):
    engine = create_engine_for(database_url)
    upgrade_schema(engine)
    store = JobStore(engine)
    key = CreationKey("k" * 64, "d" * 64)
    won, lost = [], []
    start = threading.Barrier(8)

    def insert(n):
        now = utcnow()
        job = Job(job_id=f"{n:016x}", jobname="dummy", phase=Phase.QUEUED, creation_time=now,
                  execution_duration=60, destruction_time=now + timedelta(days=1))
        start.wait()
        try:
            store.create(job, key)
            won.append(job.job_id)
        except CreationKeyTaken:
            lost.append(job.job_id)

    threads = [threading.Thread(target=insert, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(won) == 1 and len(lost) == 7
        assert store.find_by_key(key.key) == (won[0], key.digest)
        store.delete(won[0])
        assert store.find_by_key(key.key) is None  # the key goes with its job
    finally:
        engine.dispose()


def test_the_key_migration_goes_down_and_up(tmp_path, database_url):
    engine = create_engine_for(database_url)
    try:
        upgrade_schema(engine)
        from alembic import command

        from opus.storage.database import _alembic_config
        command.downgrade(_alembic_config(engine), "0005")
        upgrade_schema(engine)
        store = JobStore(engine)
        now = utcnow()
        store.create(Job(job_id="00aa", jobname="dummy", phase=Phase.PENDING, creation_time=now,
                         execution_duration=60, destruction_time=now), CreationKey("a" * 64, "b" * 64))
        assert store.find_by_key("a" * 64) == ("00aa", "b" * 64)
    finally:
        engine.dispose()


# ---- WAIT ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["-2", "-100", "1.5", "soon", "", "9" * 30])
def test_a_bad_wait_is_a_400(api, value):
    url = api.create("dummy", {"text": "x"})
    r = api.http.get(url, params={"WAIT": value})
    assert r.status_code == 400, (value, r.status_code, r.text)
    assert "WAIT" in r.text


def test_wait_minus_one_and_zero_are_accepted(api):
    url = api.create("dummy", {"text": "x"})
    assert api.http.get(url, params={"WAIT": "0"}).status_code == 200
    r = api.http.get(url, params={"WAIT": "-1", "PHASE": "COMPLETED"})  # not in that phase: at once
    assert r.status_code == 200
