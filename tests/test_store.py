"""The result store: entities of inputs and results, /store, and jobs chained through it."""

from __future__ import annotations

import hashlib

import pytest
from conftest import LiveServer, make_settings, run_job, signed_in_sessions


@pytest.fixture
def srv(tmp_path):
    server = LiveServer(make_settings(tmp_path))
    server.as_ = signed_in_sessions(server)
    yield server
    server.stop()


def _run(srv, who, jobname, data=None, files=None) -> str:
    return run_job(srv.as_[who], srv.url, jobname, data, files)


def _result(srv, who, url, result_id) -> dict:
    results = srv.as_[who].get(url + "/results", headers={"Accept": "application/json"}).json()
    return next(r for r in results if r["id"] == result_id)


def test_results_are_entities_served_by_the_store(srv):
    alice = srv.as_["alice"]
    url = _run(srv, "alice", "dummy", {"text": "x" * 5000})
    res = _result(srv, "alice", url, "output")
    entity = res["entity"]
    assert res["store"] == f"{srv.url}/store/{entity}/output.txt"
    body = ("x" * 5000 + "\n").encode()
    for target in (f"{srv.url}/store?ID={entity}", res["store"]):
        r = alice.get(target)
        assert r.status_code == 200 and r.content == body
        assert r.headers["Content-Type"].startswith("text/plain")
        assert r.headers["Content-Length"] == str(len(body))
        assert r.headers["Digest"] == "sha-256=" + hashlib.sha256(body).hexdigest()
    r = alice.get(res["store"], headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == body[10:20]
    meta = alice.get(f"{srv.url}/store/{entity}").json()
    assert meta["sha256"] == hashlib.sha256(body).hexdigest() and meta["size"] == len(body)
    assert meta["generatedBy"]["jobId"] == url.rsplit("/", 1)[1] and meta["owner"] == "alice"
    # the same access rule as jobs
    assert srv.as_["bob"].get(res["store"]).status_code == 403
    assert srv.as_["root"].get(res["store"]).status_code == 200
    assert alice.get(f"{srv.url}/store/{entity}/other.txt").status_code == 404
    assert alice.get(f"{srv.url}/store/0123456789abcdef").status_code == 404
    r = alice.get(f"{srv.url}/store", params={"ID": "../etc"})
    assert r.status_code == 400 and "16 hexadecimal digits" in r.text


def test_a_store_url_as_input_chains_the_jobs_and_a_known_upload_is_linked(srv):
    alice = srv.as_["alice"]
    first = _run(srv, "alice", "dummy", {"text": "chained"})
    entity = _result(srv, "alice", first, "output")["entity"]
    # the second job uses the first one's result by its /store URL: nothing fetched, the same entity
    second = _run(srv, "alice", "copy", {"infile": f"{srv.url}/store/{entity}/output.txt"})
    assert alice.get(second + "/results/copy").text == "chained\n"
    used = srv.services.entities.used_by([second.rsplit("/", 1)[1]])
    assert [(role, e) for _job, role, e in used] == [("infile", entity)]
    # the third uploads a copy of that result: recognised by its hash
    third = _run(srv, "alice", "copy", files={"infile": ("again.txt", b"chained\n")})
    used = srv.services.entities.used_by([third.rsplit("/", 1)[1]])
    assert [(role, e) for _job, role, e in used] == [("infile", entity)]
    users = {u["jobId"] for u in alice.get(f"{srv.url}/store/{entity}").json()["usedBy"]}
    assert users == {second.rsplit("/", 1)[1], third.rsplit("/", 1)[1]}
    # ... but someone else's upload of the same bytes is an entity of its own
    bobs = _run(srv, "bob", "copy", files={"infile": ("mine.txt", b"chained\n")})
    (_j, _r, bob_entity), = srv.services.entities.used_by([bobs.rsplit("/", 1)[1]])
    assert bob_entity != entity
    # and nobody may use someone else's entity
    r = srv.as_["bob"].post(f"{srv.url}/rest/copy", data={"infile": f"{srv.url}/store?ID={entity}"},
                            allow_redirects=False)
    assert r.status_code == 403 and "belongs to someone else" in r.text


def test_a_deleted_jobs_entities_keep_their_record_not_their_file(srv):
    alice = srv.as_["alice"]
    first = _run(srv, "alice", "dummy", {"text": "gone soon"})
    entity = _result(srv, "alice", first, "output")["entity"]
    second = _run(srv, "alice", "copy", {"infile": f"{srv.url}/store?ID={entity}"})
    assert alice.delete(first, allow_redirects=False).status_code == 303
    r = alice.get(f"{srv.url}/store?ID={entity}")
    assert r.status_code == 410 and "deleted" in r.text
    meta = alice.get(f"{srv.url}/store/{entity}").json()
    assert meta["available"] is False and meta["generatedBy"]["jobId"] == first.rsplit("/", 1)[1]
    assert alice.get(second + "/results/copy").text == "gone soon\n"  # the user's copy is its own file
    r = alice.post(f"{srv.url}/rest/copy", data={"infile": f"{srv.url}/store/{entity}/output.txt"},
                   allow_redirects=False)
    assert r.status_code == 400 and "no longer has a file" in r.text


def test_the_destruction_sweep_keeps_entity_records_without_files(srv):
    from datetime import timedelta

    from opus.timeutil import utcnow
    alice = srv.as_["alice"]
    urls = [_run(srv, "alice", "dummy", {"text": f"t{i}"}) for i in range(3)]
    second = _run(srv, "alice", "copy", {"infile": _result(srv, "alice", urls[0], "output")["store"]})
    entities = [_result(srv, "alice", u, "output")["entity"] for u in urls]
    ids = [u.rsplit("/", 1)[1] for u in urls]
    with srv.services.notifier.watch(ids[1]) as waiter:
        destroyed = srv.services.maintenance.destroy_expired(now=utcnow() + timedelta(days=3650))
        assert waiter.wait(60) and waiter.phase == "DELETED"
    assert destroyed == 4  # the three and the copy job: one batch, one transaction
    for url, entity in zip(urls, entities):
        assert alice.get(url).status_code == 404
        assert alice.get(f"{srv.url}/store?ID={entity}").status_code == 410
        assert alice.get(f"{srv.url}/store/{entity}").json()["available"] is False
        assert not (srv.settings.jobs_dir / url.rsplit("/", 1)[1]).exists()
    assert srv.services.entities.used_by([second.rsplit("/", 1)[1]]) == []
