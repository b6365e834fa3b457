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
