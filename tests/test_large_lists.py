"""Long job lists are streamed from a database cursor: same documents, bounded memory."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from conftest import ApiServer, make_settings
from uwsschema import UWS_NS, validate

from opus.storage.userstore import UserStore
from opus.timeutil import utcnow
from opus.auth.admin import UserAdmin
from opus.uws import Job, Phase
N = 2500


@pytest.fixture(scope="module")
def big(tmp_path_factory, request):
    tmp_path = tmp_path_factory.mktemp("big")
    server = ApiServer(make_settings(tmp_path))
    admin = UserAdmin(UserStore(server.services.store.engine))
    added = {name: admin.add(name, admin=name == "root") for name in ("root", "alice")}
    tokens = {name: token for name, (_user, token) in added.items()}
    start = utcnow() - timedelta(days=1)
    for i in range(N):
        server.services.store.create(Job(
            job_id=f"{i:016x}", jobname="dummy", phase=Phase.COMPLETED if i % 2 else Phase.PENDING,
            creation_time=start + timedelta(milliseconds=10 * i), execution_duration=60,
            destruction_time=start + timedelta(days=30), owner_id="alice" if i % 5 == 0 else "bob",
            owner_key=added["alice"][0].owner_key if i % 5 == 0 else "remote:bob",
            run_id=f"run<{i}>" if i % 7 == 0 else None))
    server.tokens = tokens
    yield server
    server.stop()


def _get(big, who, **params):
    return requests.get(f"{big.url}/rest/dummy", params=params, auth=(who, big.tokens[who]),
                        headers=params.pop("headers", {}))


def test_the_whole_list_streams_and_is_valid(big):
    r = _get(big, "root")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/xml")
    root = validate(r.content)
    refs = root.findall(f"{{{UWS_NS}}}jobref")
    assert len(refs) == N
    assert [ref.get("id") for ref in refs[:3]] == [f"{i:016x}" for i in (N - 1, N - 2, N - 3)]  # newest first
    assert refs[-1].get("id") == f"{0:016x}"
    run_ids = [ref.findtext(f"{{{UWS_NS}}}runId") for ref in refs if ref.find(f"{{{UWS_NS}}}runId") is not None]
    assert f"run<{7 * ((N - 1) // 7)}>" in run_ids  # escaped and read back


def test_streamed_json_filters_and_limits_match_the_small_lists(big):
    r = requests.get(f"{big.url}/rest/dummy", params={"PHASE": "COMPLETED"},
                     auth=("root", big.tokens["root"]), headers={"Accept": "application/json"})
    jobs = r.json()["jobs"]
    assert len(jobs) == N // 2 and {j["phase"] for j in jobs} == {"COMPLETED"}
    long = _get(big, "root", LAST=1500)
    assert len(validate(long.content).findall(f"{{{UWS_NS}}}jobref")) == 1500
    short = _get(big, "root", LAST=1000)  # built in memory: the same first thousand
    ids = [e.get("id") for e in validate(short.content).findall(f"{{{UWS_NS}}}jobref")]
    assert ids == [e.get("id") for e in validate(long.content).findall(f"{{{UWS_NS}}}jobref")][:1000]


def test_a_streamed_list_shows_only_the_callers_jobs(big):
    refs = validate(_get(big, "alice").content).findall(f"{{{UWS_NS}}}jobref")
    assert len(refs) == N // 5
    assert all(int(ref.get("id"), 16) % 5 == 0 for ref in refs)


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [e.get("id") for e in validate(response.content).findall(f"{{{UWS_NS}}}jobref")]


def test_before_and_runid_search_every_job_not_only_the_newest(big):
    """OPUS's BEFORE and RUNID are filters of the query: the web client's "run id" and "created
    before" once searched the newest 2,000 jobs and missed the oldest ones."""
    assert _ids(_get(big, "root", RUNID="run<0>")) == [f"{0:016x}"]  # the oldest job
    sevens = _ids(_get(big, "root", RUNID="RUN<1*"))  # "*": any characters, any case
    assert sevens and all(int(i, 16) % 7 == 0 and str(int(i, 16)).startswith("1") for i in sevens)
    assert _ids(_get(big, "root", RUNID="run<1*", LAST=2)) == sevens[:2]  # built in memory, same answer
    first = requests.get(f"{big.url}/rest/dummy", params={"LAST": "3"}, auth=("root", big.tokens["root"]),
                         headers={"Accept": "application/json"}).json()["jobs"]
    assert _ids(_get(big, "root", BEFORE=first[-1]["creationTime"], LAST=1)) == [f"{N - 4:016x}"]
    alice = _ids(_get(big, "alice", RUNID="*"))  # a filter never shows another owner's jobs
    assert alice and all(int(i, 16) % 35 == 0 for i in alice)


@pytest.mark.parametrize("params, text", [
    ({"BEFORE": "yesterday"}, "BEFORE"), ({"RUNID": ["a", "b"]}, "once each"),
    ({"RUNID": "x" * 201}, "at most 200"), ({"RUNID": "a\x00b"}, "NUL character"),
    ({"BEFORE": ["2026-01-01T00:00:00Z"] * 2}, "once each")])
def test_bad_list_filters_are_400(big, params, text):
    r = _get(big, "root", **params)
    assert r.status_code == 400 and text in r.text, r.text
