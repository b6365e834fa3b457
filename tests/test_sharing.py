"""Sharing (issue 17, point 5): signed, expiring, revocable links to one file, usable without
credentials and giving nothing else; jobs shared read-only with named users."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from browser import checked_context, launch, sign_in
from conftest import ApiServer, make_settings, signed_in_sessions
from helpers import wait_final, wait_for
from sqlalchemy import update

from opus.storage.tables import share_links
from opus.timeutil import parse_instant


@pytest.fixture
def srv(tmp_path):
    server = ApiServer(make_settings(tmp_path, ALLOW_ANONYMOUS=False, SHARE_MAX_LIFETIME=3600))
    server.notifications = server.services.notifications
    server.as_ = signed_in_sessions(server)
    yield server
    server.notifications.stop()
    server.stop()


def run(session, url, jobname, data=None, files=None):
    r = session.post(f"{url}/rest/{jobname}", data={**(data or {}), "PHASE": "RUN"}, files=files,
                     allow_redirects=False)
    assert r.status_code == 303, r.text
    job_url = r.headers["Location"]
    assert wait_final(session, job_url) == "COMPLETED"
    return job_url


def share(session, url, **fields):
    r = session.post(f"{url}/share", json=fields)
    assert r.status_code == 201, r.text
    return r.json()


def test_a_share_link_gives_one_file_to_anyone_until_it_is_revoked(srv):
    alice, anonymous = srv.as_["alice"], srv.as_["anonymous"]
    job_url = run(alice, srv.url, "dummy", {"text": "for my colleague"})
    job_id = job_url.rsplit("/", 1)[1]
    assert anonymous.get(job_url + "/results/output").status_code == 401  # the server requires sign-in
    link = share(alice, srv.url, job=job_id, result="output", lifetime=600)
    assert link["url"].startswith(f"{srv.url}/share/") and link["url"].endswith("/output.txt")
    r = anonymous.get(link["url"])
    assert r.status_code == 200 and r.text == "for my colleague\n"
    assert r.headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in r.headers["Content-Security-Policy"]
    assert r.headers["Referrer-Policy"] == "no-referrer" and "no-store" in r.headers["Cache-Control"]
    assert anonymous.get(link["url"].rsplit("/", 1)[0]).text == "for my colleague\n"  # without the name
    assert anonymous.get(link["url"], headers={"Range": "bytes=4-5"}).text == "my"
    # wrong credentials do not matter: the link is the credential
    assert requests.get(link["url"], auth=("alice", "wrong")).status_code == 200
    # the owner's list shows it; another user's does not
    assert [x["id"] for x in alice.get(f"{srv.url}/share").json()["links"]] == [link["id"]]
    assert srv.as_["bob"].get(f"{srv.url}/share").json()["links"] == []
    # revoked: 410 for everyone, for good
    assert srv.as_["bob"].delete(f"{srv.url}/share/{link['id']}").status_code == 403
    assert anonymous.get(link["url"]).status_code == 200
    r = alice.delete(f"{srv.url}/share/{link['id']}")
    assert r.status_code == 200 and r.json()["revoked"]
    r = anonymous.get(link["url"])
    assert r.status_code == 410 and "revoked" in r.text
    assert alice.get(link["url"]).status_code == 410


def test_a_share_link_expires(srv):
    alice = srv.as_["alice"]
    job_id = run(alice, srv.url, "dummy", {"text": "short"}).rsplit("/", 1)[1]
    link = share(alice, srv.url, job=job_id, result="output", lifetime=1)
    wait_for(lambda: requests.get(link["url"]).status_code == 410, what="the link to expire")
    assert "expired" in requests.get(link["url"]).text
    # a lifetime beyond SHARE_MAX_LIFETIME is cut to it
    long = share(alice, srv.url, job=job_id, result="output", lifetime=10 ** 8)
    span = parse_instant(long["expires"]) - parse_instant(long["created"])
    assert span.total_seconds() == 3600


def test_a_share_link_gives_nothing_else(srv):
    alice, anonymous = srv.as_["alice"], srv.as_["anonymous"]
    job_url = run(alice, srv.url, "dummy", {"text": "one file only"})
    job_id = job_url.rsplit("/", 1)[1]
    other = run(alice, srv.url, "dummy", {"text": "another"})
    link = share(alice, srv.url, job=job_id, result="output")
    token = link["url"].split("/share/")[1].split("/")[0]
    link_id, signature = token.split(".")
    entities = [e.entity_id for e in srv.services.entities.generated_by([job_id, other.rsplit("/", 1)[1]])]
    # the token is no credential anywhere else
    for path in (job_url, job_url + "/results/output", other + "/results/output", f"{srv.url}/rest/dummy",
                 f"{srv.url}/store/{entities[0]}", f"{srv.url}/share", f"{srv.url}/shared"):
        for headers in ({"Authorization": f"Bearer {token}"}, {"Authorization": f"Bearer {signature}"}, {}):
            assert requests.get(path, headers=headers).status_code == 401, (path, headers)
    # another file name under the link, a path trick, a forged or altered signature
    assert anonymous.get(f"{srv.url}/share/{token}/size.txt").status_code == 404
    assert anonymous.get(f"{srv.url}/share/{token}/..%2f..%2fjob.json").status_code == 404
    forged = f"{link_id}.{'0' * 32}"
    assert anonymous.get(f"{srv.url}/share/{forged}/output.txt").status_code == 403
    assert anonymous.get(f"{srv.url}/share/{'a' * 32}.{signature}").status_code == 403
    # an expiry moved in the database breaks the signature: the database alone makes no link
    with srv.services.store.engine.begin() as conn:
        row = conn.execute(share_links.select().where(share_links.c.link_id == link_id)).first()
        conn.execute(update(share_links).where(share_links.c.link_id == link_id)
                     .values(expires=row.expires + timedelta(days=365)))
    assert anonymous.get(link["url"]).status_code == 403


def test_only_the_owner_shares_and_a_deleted_job_takes_its_links_with_it(srv):
    alice, bob = srv.as_["alice"], srv.as_["bob"]
    job_url = run(alice, srv.url, "copy", files={"infile": ("data.bin", b"\x00\x01 input bytes")})
    job_id = job_url.rsplit("/", 1)[1]
    (entity,) = [e.entity_id for e in srv.services.entities.generated_by([job_id]) if e.role == "copy"]
    assert bob.post(f"{srv.url}/share", json={"job": job_id, "result": "copy"}).status_code == 403
    assert bob.post(f"{srv.url}/share", json={"entity": entity}).status_code == 403
    assert srv.as_["anonymous"].post(f"{srv.url}/share", json={"entity": entity}).status_code == 401
    for bad in ({}, {"job": job_id}, {"job": job_id, "result": "copy", "input": "infile"}, {"entity": entity,
                "job": job_id}, {"entity": entity, "lifetime": "soon"}, {"entity": entity, "colour": "red"},
                {"entity": entity, "lifetime": 0}):
        r = alice.post(f"{srv.url}/share", json=bad)
        assert r.status_code == 400, (bad, r.status_code, r.text)
    assert alice.post(f"{srv.url}/share", json={"job": job_id, "result": "nosuch"}).status_code == 404
    assert alice.post(f"{srv.url}/share", json={"entity": "0" * 16}).status_code == 404
    # an input, by its name; a /store entity, by id; the form encoding works as JSON does
    by_input = share(alice, srv.url, job=job_id, input="infile")
    assert requests.get(by_input["url"]).content == b"\x00\x01 input bytes"
    r = alice.post(f"{srv.url}/share", data={"entity": entity})
    assert r.status_code == 201 and requests.get(r.json()["url"]).content == b"\x00\x01 input bytes"
    # the job is deleted: its result's link is gone (410), as the file is
    by_entity = r.json()
    assert alice.delete(job_url, allow_redirects=False).status_code == 303
    assert requests.get(by_entity["url"]).status_code == 410
    assert alice.post(f"{srv.url}/share", json={"entity": entity}).status_code == 410


def test_a_job_shared_with_a_user_is_readable_by_them_and_changeable_by_no_one_else(srv):
    from opus.auth.admin import UserAdmin
    _, carol_token = UserAdmin(srv.services.users).add("carol")
    carol = requests.Session()
    carol.auth = ("carol", carol_token)
    alice, bob = srv.as_["alice"], srv.as_["bob"]
    job_url = run(alice, srv.url, "dummy", {"text": "look at this"})
    job_id = job_url.rsplit("/", 1)[1]
    shared = f"{srv.url}/shared/dummy/{job_id}"
    assert bob.get(shared).status_code == 403
    assert bob.put(f"{shared}/users/carol").status_code == 403  # not bob's to share
    r = alice.put(f"{shared}/users/bob")
    assert r.status_code == 200 and [u["name"] for u in r.json()["users"]] == ["bob"]
    assert alice.put(f"{shared}/users/nosuchuser").status_code == 404
    assert alice.put(f"{shared}/users/alice").status_code == 400
    # bob reads it, and its result, read-only
    job = bob.get(shared).json()
    assert job["phase"] == "COMPLETED" and job["parameters"]["text"] == "look at this" and job["ownerId"] == "alice"
    assert bob.get(job["results"][0]["href"]).text == "look at this\n"
    assert [j["jobId"] for j in bob.get(f"{srv.url}/shared").json()["jobs"]] == [job_id]
    assert carol.get(shared).status_code == 403 and carol.get(f"{srv.url}/shared").json()["jobs"] == []
    assert carol.get(job["results"][0]["href"]).status_code == 403
    # the UWS tree stays the owner's: bob may not change, delete or even read it there
    assert bob.get(job_url).status_code == 403
    assert bob.post(job_url + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False).status_code == 403
    assert bob.delete(job_url, allow_redirects=False).status_code == 403
    assert bob.get(f"{shared}/users").status_code == 403
    assert bob.delete(f"{shared}/users/bob").status_code == 403
    # the owner withdraws it
    assert alice.delete(f"{shared}/users/bob").json()["users"] == []
    assert bob.get(shared).status_code == 403
    assert alice.delete(f"{shared}/users/bob").status_code == 200  # again: nothing changes
    assert alice.delete(f"{shared}/users/nosuchuser").status_code == 404


# ---- the job page: the Share button, and SAMP sending share links (Debian's Chromium) -----------------
def test_the_job_pages_share_button_makes_a_link_that_works_without_signing_in(tmp_path):
    from conftest import LiveServer

    from opus.auth.admin import UserAdmin
    server = LiveServer(make_settings(tmp_path, ALLOW_ANONYMOUS=False))
    notifications = server.services.notifications
    try:
        _, token = UserAdmin(server.services.users).add("alice")
        alice = requests.Session()
        alice.auth = ("alice", token)
        job_url = run(alice, server.url, "dummy", {"text": "seen through a link"})
        _browser_share(server, token, job_url)
    finally:
        notifications.stop()
        server.stop()


def _browser_share(server, token, job_url):
    with launch() as browser, checked_context(browser, server.url) as context:
        page = context.new_page()
        sign_in(page, server.url, "alice", token)
        page.goto(job_url.replace("/rest/", "/web/jobs/", 1))
        page.locator("[data-result=output] .share-button").click()
        link = page.locator("[data-result=output] input.share-link")
        link.wait_for()
        url = link.input_value()
        assert url.startswith(f"{server.url}/share/") and url.endswith("/output.txt")
        assert requests.get(url).text == "seen through a link\n"  # no credentials
        assert requests.get(job_url).status_code == 401
        # what the SAMP button sends: a link of its own (a day), usable by a tool without the session
        entity = next(e.entity_id for e in server.services.entities.generated_by([job_url.rsplit("/", 1)[1]]))
        samp_url = page.evaluate(f"OPUS.samp.shareLink('{entity}')")
        assert samp_url != url and requests.get(samp_url).text == "seen through a link\n"
        links = requests.get(f"{server.url}/share", auth=("alice", token)).json()["links"]
        spans = sorted((parse_instant(x["expires"]) - parse_instant(x["created"])).days for x in links)
        assert spans == [1, 7]
