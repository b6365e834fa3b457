"""Issue 18: no needless work on the request path, counted (not timed): reads, renderings, stat()
calls and transactions per request.  Timings are bench/'s (bench/profile_requests.py)."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

from helpers import wait_for
from opus.server import render
from opus.storage.jobstore import DuplicateJobId
from opus.timeutil import utcnow
from opus.uws import Job, Parameter, Phase


def _count_calls(monkeypatch, owner, name):
    calls = []
    real = getattr(owner, name)

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, counting)
    return calls


def test_waiters_on_one_job_share_one_read_and_one_rendering(api, monkeypatch):
    """ABORT wakes every WAIT on the job: one re-read of the job and one XML rendering serve them
    all (before: one of each per waiter)."""
    url = api.create()
    job_id = url.rsplit("/", 1)[-1]
    n = 40
    answers: list[tuple[int, str]] = []

    def waiter():
        r = api.session().get(f"{url}?WAIT=60")
        answers.append((r.status_code, r.text))

    threads = [threading.Thread(target=waiter) for _ in range(n)]
    for t in threads:
        t.start()
    notifier = api.services.notifier
    wait_for(lambda: len(notifier._waiters.get(job_id, ())) == n, what=f"{n} registered waiters")
    reads = _count_calls(monkeypatch, api.services.store, "get")
    renders = _count_calls(monkeypatch, render, "job_xml")
    r = api.http.post(f"{url}/phase", data={"PHASE": "ABORT"}, allow_redirects=False)
    assert r.status_code == 303
    for t in threads:
        t.join(60)
    assert len(answers) == n
    assert all(status == 200 and "<uws:phase>ABORTED</uws:phase>" in body for status, body in answers)
    assert len({body for _, body in answers}) == 1
    # One read by the ABORT request itself, one shared by all the waiters.
    assert len(reads) <= 2, f"{len(reads)} reads of the job for {n} waiters"
    assert len(renders) == 1, f"{len(renders)} renderings for {n} waiters"


def test_waiters_still_see_access_rules_and_deletion(api):
    """A shared wake-up still answers each waiter by its own rights: a deleted job is a 404."""
    url = api.create()
    job_id = url.rsplit("/", 1)[-1]
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(api.session().get(f"{url}?WAIT=60").status_code))
               for _ in range(5)]
    for t in threads:
        t.start()
    wait_for(lambda: len(api.services.notifier._waiters.get(job_id, ())) == 5, what="5 registered waiters")
    assert api.http.delete(url, allow_redirects=False).status_code == 303
    for t in threads:
        t.join(60)
    assert answers == [404] * 5


def test_creation_stats_the_definition_file_once(api, monkeypatch):
    """Naming a definition costs one stat() of its file (it still says whether the file changed),
    not an is_file() and a stat()."""
    api.create()  # warm: the definition parsed and cached
    jdl = os.path.realpath(api.settings.JDL_DIR)
    stats = []
    real = os.stat

    def counting(path, *args, **kwargs):
        if os.path.realpath(os.fspath(path)).startswith(jdl):
            stats.append(path)
        return real(path, *args, **kwargs)
    monkeypatch.setattr(os, "stat", counting)
    api.create()
    assert len(stats) == 1, stats


def test_a_definition_edited_in_place_is_seen_at_once(api):
    """The cache of parsed definitions is checked against the file on every use: an admin's edit
    counts from the next request."""
    api.create()
    path = os.path.join(api.settings.JDL_DIR, "dummy.json")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace('"version": "1.0"', '"version": "1.0-edited"'))
    r = api.http.get(f"{api.url}/jdl/dummy/json")
    assert r.status_code == 200
    assert "1.0-edited" in r.text


# ---- group commit of creations ----------------------------------------------------------------------
def _job(job_id, **kw):
    now = utcnow()
    return Job(job_id=job_id, jobname="dummy", phase=Phase.PENDING, creation_time=now, execution_duration=60,
               destruction_time=now + timedelta(days=1), parameters=[Parameter("text", job_id)], **kw)


def _create_all(job_store, jobs):
    """Create ``jobs`` from one thread each while the writer is busy: they queue up, then the next
    writer takes them all.  Returns {job id: the exception its creation raised, or None}."""
    outcome = {}

    def create(job):
        try:
            job_store.create(job)
            outcome[job.job_id] = None
        except Exception as exc:  # noqa: BLE001 - the test looks at which one failed
            outcome[job.job_id] = exc

    batcher = job_store._inserts.batcher
    with batcher.held():  # as when another batch is being written
        threads = [threading.Thread(target=create, args=(job,)) for job in jobs]
        for t in threads:
            t.start()
        wait_for(lambda: len(batcher._queued) == len(jobs), what="every creation queued")
    for t in threads:
        t.join(30)
    return outcome


def test_creations_that_arrive_together_are_written_in_one_transaction(job_store, monkeypatch):
    transactions = _count_calls(monkeypatch, job_store._inserts.batcher, "_transaction")
    outcome = _create_all(job_store, [_job(f"g{i:03d}") for i in range(16)])
    assert outcome == {f"g{i:03d}": None for i in range(16)}
    assert len(transactions) == 1, f"{len(transactions)} transactions for 16 creations"
    for i in range(16):
        job = job_store.get(f"g{i:03d}")
        assert job is not None and [p.value for p in job.parameters] == [f"g{i:03d}"]


def test_a_taken_id_in_a_batch_fails_only_its_own_creation(job_store):
    job_store.create(_job("taken"))
    outcome = _create_all(job_store, [_job("b1"), _job("taken"), _job("b2"), _job("b3")])
    assert isinstance(outcome.pop("taken"), DuplicateJobId)
    assert outcome == {"b1": None, "b2": None, "b3": None}
    assert all(job_store.get(i) is not None for i in ("b1", "b2", "b3"))
    assert [p.value for p in job_store.get("taken").parameters] == ["taken"]


# ---- urlencoded bodies, parsed without bottle's form objects: the same answers --------------------------
def test_urlencoded_creation_reads_values_as_before(api):
    r = api.http.post(f"{api.url}/rest/dummy", data=b"text=a+b%2Bc%C3%A9&&RUNID=r%26;x",
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, allow_redirects=False)
    assert r.status_code == 303, r.text
    job = api.http.get(r.headers["Location"], headers={"Accept": "application/json"}).json()
    assert job["runId"] == "r&;x"
    assert {p["id"]: p["value"] for p in job["parameters"]}["text"] == "a b+cé"


def test_urlencoded_bodies_that_are_not_utf8_or_too_many_fields_are_400(api):
    post = api.http.post
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    bad = post(f"{api.url}/rest/dummy", data=b"text=%FF", headers=headers, allow_redirects=False)
    assert bad.status_code == 400 and "malformed form body" in bad.text
    many = "&".join(f"f{i}=1" for i in range(api.settings.max_form_parts + 1))
    over = post(f"{api.url}/rest/dummy", data=many, headers=headers, allow_redirects=False)
    assert over.status_code == 400 and "MAX_FORM_PARTS" in over.text


def test_phase_changes_that_arrive_together_are_written_in_one_transaction(job_store, monkeypatch):
    """Compare-and-set phase changes of many threads: one transaction, each its own row count."""
    for i in range(8):
        job_store.create(_job(f"p{i}"))
    job_store.set_phase("p0", Phase.QUEUED)  # p0 can no longer go PENDING -> QUEUED: its change must say so
    ops = job_store._gate._ops
    transactions = _count_calls(monkeypatch, ops, "_transaction")
    moved = {}

    def run(job_id):
        moved[job_id] = job_store.set_phase(job_id, Phase.QUEUED, [Phase.PENDING])

    with ops.held():  # as when another batch is being written
        threads = [threading.Thread(target=run, args=(f"p{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        wait_for(lambda: len(ops._queued) == 8, what="every phase change queued")
    for t in threads:
        t.join(30)
    assert moved == {"p0": False, **{f"p{i}": True for i in range(1, 8)}}
    assert len(transactions) == 1
    assert {job_store.get_phase(f"p{i}") for i in range(8)} == {Phase.QUEUED}
