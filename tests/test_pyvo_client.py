"""pyvo, the Python client most users have, against a live OPUS (CHECKLIST §7).

``pyvo.io.uws`` parses the documents strictly (``pedantic=True`` and warnings as errors), and
``pyvo.dal.tap.AsyncTAPJob`` drives a job through its life: phase, executionDuration and
destruction get/set, run, wait, results, errors, abort, delete.
"""

from __future__ import annotations

import io
import warnings
from datetime import datetime, timedelta, timezone

import pytest
import requests
from pyvo.dal.exceptions import DALQueryError, DALServiceError
from pyvo.dal.tap import AsyncTAPJob
from pyvo.io.uws import parse_job, parse_job_list

from helpers import wait_phase

WAIT_TIMEOUT = 30


# ---- helpers ----------------------------------------------------------------------------------------------
def create(live, jobname: str, data=None, files=None) -> str:
    """Create a job as a pyvo user would: a plain POST, not following the 303."""
    r = requests.post(f"{live.url}/rest/{jobname}", data=data or {}, files=files, allow_redirects=False)
    assert r.status_code == 303, r.text
    location = r.headers["Location"]
    assert location.startswith(f"{live.url}/rest/{jobname}/")
    return location


def strict_job(source):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return parse_job(source, pedantic=True)


def strict_job_list(source):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return parse_job_list(source, pedantic=True)


def as_utc(t) -> datetime:
    """An astropy Time (UTC) from pyvo as an aware datetime."""
    return t.to_datetime().replace(tzinfo=timezone.utc)


# ---- pyvo.io.uws: strict parsing ---------------------------------------------------------------------------
def test_parse_job_in_every_phase(live):
    pending = create(live, "dummy", {"text": "pending", "RUNID": "pyvo-run"})
    upload = create(live, "copy", files={"infile": ("in.bin", b"\x00\x01\x02", "application/octet-stream")})
    done = create(live, "dummy", {"text": "done", "PHASE": "RUN"})
    failed = create(live, "fail", {"message": "kaputt", "PHASE": "RUN"})
    timed_out = create(live, "sleep", {"seconds": "30", "EXECUTIONDURATION": "1", "PHASE": "RUN"})
    for url in (done, failed, timed_out):
        live.wait_final(url, timeout=60)

    job = strict_job(pending)                     # from the URL
    assert job.jobid == pending.rsplit("/", 1)[1]
    assert job.version == "1.1"
    assert job.phase == "PENDING"
    assert job.runid == "pyvo-run"
    assert job.ownerid is None
    assert job.starttime is None and job.endtime is None
    assert int(job.executionduration.value) == 60
    assert job.destruction is not None and job.creationtime is not None
    assert [(p.id_, p.content) for p in job.parameters] == [("text", "pending")]
    assert list(job.results) == []
    assert job.errorsummary is None

    job = strict_job(io.BytesIO(requests.get(upload).content))   # from a file object
    assert job.phase == "PENDING"
    (param,) = list(job.parameters)
    assert param.id_ == "infile" and param.byreference is True
    assert param.content == f"{upload}/parameters/infile"

    job = strict_job(done)
    assert job.phase == "COMPLETED"
    assert job.starttime is not None and job.endtime is not None
    assert [(r.id_, r.href) for r in job.results] == [("output", f"{done}/results/output")]
    assert job.errorsummary is None

    job = strict_job(failed)
    assert job.phase == "ERROR"
    assert job.errorsummary is not None
    assert job.errorsummary.type_ == "fatal"
    assert job.errorsummary.has_detail is True
    assert "kaputt" in job.errorsummary.message.content

    job = strict_job(timed_out)
    assert job.phase == "ABORTED"
    assert int(job.executionduration.value) == 1
    assert "executionDuration" in job.errorsummary.message.content


def test_parse_job_executing(live):
    url = create(live, "sleep", {"seconds": "30", "PHASE": "RUN"})
    try:
        wait_phase(live.http, url, "EXECUTING")
        job = strict_job(url)
        assert job.phase == "EXECUTING"
        assert job.starttime is not None and job.endtime is None
    finally:
        live.http.post(url + "/phase", data={"PHASE": "ABORT"})
    job = strict_job(url)
    assert job.phase == "ABORTED" and job.endtime is not None


def test_parse_job_list(live):
    empty = strict_job_list(f"{live.url}/rest/dummy")
    assert list(empty) == []
    done = create(live, "dummy", {"PHASE": "RUN"})
    live.wait_final(done)
    pending = create(live, "dummy", {"RUNID": "r2"})

    jobs = strict_job_list(f"{live.url}/rest/dummy")
    by_id = {j.jobid: j for j in jobs}
    assert set(by_id) == {done.rsplit("/", 1)[1], pending.rsplit("/", 1)[1]}
    assert by_id[done.rsplit("/", 1)[1]].phase == "COMPLETED"
    assert by_id[pending.rsplit("/", 1)[1]].phase == "PENDING"
    assert by_id[pending.rsplit("/", 1)[1]].runid == "r2"
    assert by_id[pending.rsplit("/", 1)[1]].ownerid is None

    filtered = strict_job_list(io.BytesIO(requests.get(f"{live.url}/rest/dummy",
                                                       params={"PHASE": "PENDING", "LAST": 5}).content))
    assert [j.jobid for j in filtered] == [pending.rsplit("/", 1)[1]]


# ---- pyvo.dal.tap.AsyncTAPJob: a whole job life ------------------------------------------------------------
def test_async_job_lifecycle(live_any_db):
    live = live_any_db
    url = create(live, "dummy", {"text": "hello pyvo"})
    job = AsyncTAPJob(url)
    assert job.job_id == url.rsplit("/", 1)[1]
    assert job.phase == "PENDING"
    assert job.uws_version == "1.1"
    assert job.owner is None
    assert job.quote is not None

    assert int(job.execution_duration.value) == 60
    job.execution_duration = 30
    assert int(job.execution_duration.value) == 30
    assert live.http.get(url + "/executionduration").text == "30"

    created = as_utc(job.destruction)
    wanted = datetime.now(timezone.utc).replace(microsecond=250_000) + timedelta(days=2)
    job.destruction = wanted.replace(tzinfo=None)        # pyvo sends naive UTC with a 'Z'
    got = as_utc(job.destruction)
    assert got != created
    assert abs((got - wanted).total_seconds()) < 0.002, (got, wanted)
    assert live.http.get(url + "/destruction").text == wanted.strftime("%Y-%m-%dT%H:%M:%S.250Z")

    job.run()
    job.wait(timeout=WAIT_TIMEOUT)
    assert job.phase == "COMPLETED"
    job.raise_if_error()                                 # no error: no exception
    assert job.result_uris == [f"{url}/results/output"]
    r = requests.get(job.result_uris[0])
    assert r.status_code == 200 and r.text == "hello pyvo\n"

    job.delete()
    assert requests.get(url).status_code == 404
    with pytest.raises(DALServiceError):
        AsyncTAPJob(url)


def test_async_job_error(live_any_db):
    live = live_any_db
    url = create(live, "fail", {"message": "disk on fire", "status": "7"})
    job = AsyncTAPJob(url)
    job.run()
    job.wait(timeout=WAIT_TIMEOUT)
    assert job.phase == "ERROR"
    with pytest.raises(DALQueryError, match="disk on fire"):
        job.raise_if_error()
    assert job.result_uris == []
    with pytest.raises(DALQueryError, match="disk on fire"):   # no result: pyvo reports the error
        job.fetch_result()
    job.delete()
    assert requests.get(url).status_code == 404


def test_async_job_abort(live):
    url = create(live, "sleep", {"seconds": "30"})
    job = AsyncTAPJob(url)
    job.run()
    job.wait(phases=["EXECUTING"], timeout=WAIT_TIMEOUT)
    assert job.phase == "EXECUTING"
    job.abort()
    assert job.phase == "ABORTED"
    with pytest.raises(DALQueryError):
        job.raise_if_error()
    # pyvo refuses to wait on a job that is no longer active
    with pytest.raises(DALServiceError, match="not active"):
        job.wait(timeout=WAIT_TIMEOUT)
    # executionDuration can no longer change; the job is still there until deleted
    with pytest.raises(DALServiceError):
        job.execution_duration = 5
    assert job.phase == "ABORTED"
    job.delete()
    assert requests.get(url).status_code == 404


def test_async_job_execution_duration_exceeded(live):
    url = create(live, "sleep", {"seconds": "3600"})
    job = AsyncTAPJob(url)
    job.execution_duration = 1
    job.run()
    assert live.wait_final(url, timeout=150) == "ABORTED"  # the 1 s limit ended it, not the hour's sleep
    assert job.phase == "ABORTED"
    with pytest.raises(DALQueryError, match="executionDuration"):
        job.raise_if_error()


def test_async_job_as_context_manager_deletes(live):
    url = create(live, "dummy", {"text": "ctx"})
    with AsyncTAPJob(url) as job:
        job.run().wait(timeout=WAIT_TIMEOUT)
        assert job.phase == "COMPLETED"
    assert requests.get(url).status_code == 404
