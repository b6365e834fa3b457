"""Groups (issue 17): a user's groups, and jobs shared read-only with a group.

Membership is read when a job is accessed, so a member removed from a group loses access at once.
"""

from __future__ import annotations

import pytest
import requests
from browser import (
    browser,  # noqa: F401  (a fixture)
    checked_context,
    shoot,
    sign_in,
)
from conftest import ApiServer, LiveServer, make_settings, run_job, signed_in_sessions

from opus.auth.admin import UserAdmin
from opus.auth.users import MAX_GROUPS, User
from opus.cli.main import main as opus_main
from opus.errors import BadRequest
from opus.storage.userstore import UserStore


@pytest.fixture
def store(db_engine):
    return UserStore(db_engine)


def test_groups_round_trip_through_the_store(store):
    user = User(name="alice", token_id="a" * 16, token_hash="x", groups=frozenset({"astro", "lab-2"}))
    store.add(user)
    assert store.get("alice").groups == {"astro", "lab-2"}
    store.add(User(name="bob", token_id="b" * 16, token_hash="x"))
    assert store.get("bob").groups == frozenset()
    store.set_groups(user.stored_uid, ["radio", "astro"])
    assert store.get("alice").groups == {"astro", "radio"}  # replaced, not added to
    assert store.by_uid(user.stored_uid).groups == {"astro", "radio"}
    store.update("alice", groups=frozenset({"x.y"}))
    assert store.get("alice").groups == {"x.y"}
    store.set_groups(user.stored_uid, [])
    assert store.get("alice").groups == frozenset()


@pytest.mark.parametrize("bad", [["-lead"], ["a b"], ["x" * 65], ["ok", "sp ace"], ["é"],
                                 [f"g{i}" for i in range(MAX_GROUPS + 1)]])
def test_bad_group_names_are_refused(store, bad):
    user = User(name="carol", token_id="c" * 16, token_hash="x")
    store.add(user)
    with pytest.raises(BadRequest):
        store.set_groups(user.stored_uid, bad)
    with pytest.raises(BadRequest):
        store.add(User(name="dave", token_id="d" * 16, token_hash="x", groups=frozenset(bad)))
    assert store.get("carol").groups == frozenset() and store.get("dave") is None


# ---- over HTTP: the admin API, the command line, the profile ------------------------------------------
@pytest.fixture
def srv(tmp_path):
    """A server that needs sign-in: root (admin), alice (owns the jobs), bob (in group astro), carol
    (in no group), dave (in astro and radio)."""
    server = ApiServer(make_settings(tmp_path, ALLOW_ANONYMOUS=False))
    server.as_ = signed_in_sessions(server, (("root", {"admin": True}), ("alice", {}), ("bob", {"groups": "astro"}),
                                             ("carol", {}), ("dave", {"groups": ["astro", "radio"]})))
    yield server
    server.stop()


def test_admins_set_groups_through_the_api_and_users_see_their_own(srv):
    root, bob = srv.as_["root"], srv.as_["bob"]
    assert root.get(f"{srv.url}/admin/users/bob").json()["groups"] == ["astro"]
    assert root.get(f"{srv.url}/admin/users/dave").json()["groups"] == ["astro", "radio"]
    r = root.post(f"{srv.url}/admin/users", json={"name": "erin", "groups": ["lab", "astro"]})
    assert r.status_code == 201 and r.json()["groups"] == ["astro", "lab"]
    r = root.patch(f"{srv.url}/admin/users/erin", json={"groups": "radio, x.y"})  # a string: comma-separated
    assert r.status_code == 200 and r.json()["groups"] == ["radio", "x.y"]
    assert root.patch(f"{srv.url}/admin/users/erin", json={"enabled": True}).json()["groups"] == ["radio", "x.y"]
    assert root.patch(f"{srv.url}/admin/users/erin", json={"groups": []}).json()["groups"] == []
    listed = {u["name"]: u["groups"] for u in root.get(f"{srv.url}/admin/users").json()["users"]}
    assert listed["bob"] == ["astro"] and listed["erin"] == []
    for bad in (["-lead"], ["a b"], "x" * 65, ["ok", 3], 7, {"a": 1}, [f"g{i}" for i in range(101)], ["é"]):
        r = root.patch(f"{srv.url}/admin/users/bob", json={"groups": bad})
        assert r.status_code == 400, (bad, r.status_code, r.text)
        assert root.post(f"{srv.url}/admin/users", json={"name": "frank", "groups": bad}).status_code == 400
    assert root.get(f"{srv.url}/admin/users/bob").json()["groups"] == ["astro"]
    assert root.get(f"{srv.url}/admin/users/frank").status_code == 404
    assert bob.patch(f"{srv.url}/admin/users/bob", json={"groups": ["root-ish"]}).status_code == 403
    assert bob.get(f"{srv.url}/account").json()["groups"] == ["astro"]  # the profile shows one's own


def test_opus_user_sets_and_clears_groups(srv, tmp_path, capsys):
    settings_file = tmp_path / "s.py"
    settings_file.write_text(f"DATA_DIR = {srv.settings.DATA_DIR!r}\nJDL_DIR = {srv.settings.JDL_DIR!r}\n")
    opus = lambda *args: opus_main(["--settings", str(settings_file), "user", *args])
    assert opus("add", "gina", "--groups", "astro,lab") == 0
    assert srv.services.users.get("gina").groups == {"astro", "lab"}
    assert opus("set", "gina", "--max-jobs", "3") == 0  # other changes keep the groups
    assert srv.services.users.get("gina").groups == {"astro", "lab"}
    assert opus("set", "gina", "--groups", "radio") == 0
    assert '"groups": ["radio"]' in capsys.readouterr().out
    assert opus("set", "gina", "--groups", "bad name!") == 1
    assert "group name" in capsys.readouterr().err
    assert opus("set", "gina", "--groups", "") == 0
    assert srv.services.users.get("gina").groups == frozenset()
    assert opus("add", "hal", "--groups=-x") == 1 and srv.services.users.get("hal") is None


# ---- jobs shared with a group ------------------------------------------------------------------------
def _job(srv, text="for the group"):
    """A job of alice's, COMPLETED: (its UWS URL, its /shared URL)."""
    job_url = run_job(srv.as_["alice"], srv.url, "dummy", {"text": text})
    return job_url, f"{srv.url}/shared/dummy/{job_url.rsplit('/', 1)[1]}"


def test_a_job_shared_with_a_group_is_read_by_its_members_and_changed_by_none(srv):
    alice, bob, carol, dave = (srv.as_[n] for n in ("alice", "bob", "carol", "dave"))
    job_url, shared = _job(srv)
    job_id = job_url.rsplit("/", 1)[1]
    assert bob.get(shared).status_code == 403  # not shared yet
    assert bob.put(f"{shared}/groups/astro").status_code == 403  # not bob's to share
    r = alice.put(f"{shared}/groups/astro")
    assert r.status_code == 200 and r.json()["users"] == [] and [g["name"] for g in r.json()["groups"]] == ["astro"]
    for member in (bob, dave):
        job = member.get(shared).json()
        assert job["ownerId"] == "alice" and job["parameters"]["text"] == "for the group"
        assert member.get(job["results"][0]["href"]).text == "for the group\n"
        [listed] = member.get(f"{srv.url}/shared").json()["jobs"]
        assert listed["jobId"] == job_id and listed["viaGroup"] == "astro"
    # a non-member sees nothing, as for any job that is not one's own
    assert carol.get(shared).status_code == 403 and carol.get(f"{srv.url}/shared").json()["jobs"] == []
    assert carol.get(f"{shared}/results/output").status_code == 403
    # read-only: the UWS tree, the shares and share links stay the owner's
    assert bob.get(job_url).status_code == 403
    assert bob.post(job_url + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False).status_code == 403
    assert bob.post(job_url + "/parameters", data={"text": "changed"}, allow_redirects=False).status_code == 403
    assert bob.delete(job_url, allow_redirects=False).status_code == 403
    assert bob.get(f"{shared}/users").status_code == 403
    assert bob.delete(f"{shared}/groups/astro").status_code == 403
    assert bob.put(f"{shared}/users/carol").status_code == 403
    assert bob.post(f"{srv.url}/share", json={"job": job_id, "result": "output"}).status_code == 403
    job = srv.services.store.get(job_id)
    assert job.phase.value == "COMPLETED" and job.parameter("text").value == "for the group"
    assert bob.get(shared).status_code == 200
    # share links are unaffected: alice's link works for anyone, and gives the file alone
    r = alice.post(f"{srv.url}/share", json={"job": job_id, "result": "output"})
    assert r.status_code == 201 and srv.as_["anonymous"].get(r.json()["url"]).text == "for the group\n"


def test_membership_is_read_at_each_access(srv):
    root, alice, bob, carol = (srv.as_[n] for n in ("root", "alice", "bob", "carol"))
    _, shared = _job(srv)
    assert alice.put(f"{shared}/groups/astro").status_code == 200
    assert bob.get(shared).status_code == 200
    assert root.patch(f"{srv.url}/admin/users/bob", json={"groups": ["radio"]}).status_code == 200
    assert bob.get(shared).status_code == 403  # left the group: no access, at once
    assert bob.get(f"{srv.url}/shared").json()["jobs"] == []
    assert root.patch(f"{srv.url}/admin/users/carol", json={"groups": "astro"}).status_code == 200
    assert carol.get(shared).status_code == 200  # joined: access, at once
    srv.services.users.set_groups(srv.services.users.get("carol").stored_uid, [])
    assert carol.get(shared).status_code == 403


def test_the_owner_lists_and_withdraws_group_shares(srv):
    alice, bob, dave = srv.as_["alice"], srv.as_["bob"], srv.as_["dave"]
    _, shared = _job(srv)
    assert alice.put(f"{shared}/groups/astro").status_code == 200
    assert alice.put(f"{shared}/groups/astro").status_code == 200  # again: nothing changes
    assert alice.put(f"{shared}/users/dave").status_code == 200
    r = alice.get(f"{shared}/users").json()
    assert [u["name"] for u in r["users"]] == ["dave"] and [g["name"] for g in r["groups"]] == ["astro"]
    # shared with dave and with his group: listed once, as shared with him
    [listed] = dave.get(f"{srv.url}/shared").json()["jobs"]
    assert listed["viaGroup"] is None
    r = alice.delete(f"{shared}/groups/astro")
    assert r.status_code == 200 and r.json()["groups"] == [] and [u["name"] for u in r.json()["users"]] == ["dave"]
    assert bob.get(shared).status_code == 403 and dave.get(shared).status_code == 200  # dave's own share stays
    assert alice.delete(f"{shared}/groups/astro").status_code == 200  # again: nothing to do
    # a group with no member yet may be shared with; a bad name may not
    assert alice.put(f"{shared}/groups/nobody-yet").status_code == 200
    for bad in ("-x", "a%20b", "x" * 65, "%C3%A9", "a%2Fb"):
        assert alice.put(f"{shared}/groups/{bad}").status_code in (400, 404), bad
    assert alice.put(f"{shared}/groups/-x").status_code == 400
    assert [g["name"] for g in alice.get(f"{shared}/users").json()["groups"]] == ["nobody-yet"]


def test_a_group_share_names_a_group_not_a_user(srv):
    """A group named like a user gives that user nothing, and a user share gives a same-named group nothing."""
    root, alice, bob = srv.as_["root"], srv.as_["alice"], srv.as_["bob"]
    _, shared = _job(srv)
    assert alice.put(f"{shared}/groups/bob").status_code == 200
    assert bob.get(shared).status_code == 403
    assert alice.put(f"{shared}/users/carol").status_code == 200
    assert root.patch(f"{srv.url}/admin/users/bob", json={"groups": ["carol"]}).status_code == 200
    assert bob.get(shared).status_code == 403


# ---- the web client: the admin page edits groups, the profile shows them, the job page shares ------------
def test_the_web_pages_edit_groups_and_share_a_job_with_a_user_or_a_group(tmp_path, browser):  # noqa: F811
    server = LiveServer(make_settings(tmp_path, ALLOW_ANONYMOUS=False))
    tokens = {}
    admin = UserAdmin(server.services.users)
    for name, kwargs in (("root", {"admin": True}), ("alice", {}), ("bob", {}), ("carol", {})):
        _, tokens[name] = admin.add(name, **kwargs)
    http = {name: requests.Session() for name in tokens}
    for name, session in http.items():
        session.auth = (name, tokens[name])
    try:
        # the admin page: bob joins group astro
        with checked_context(browser, server.url) as context:
            page = context.new_page()
            sign_in(page, server.url, "root", tokens["root"])
            page.goto(f"{server.url}/web/admin")
            row = page.locator("tr[data-user='bob']")
            row.locator("input.user-groups").fill("astro, lab")
            row.locator("button.save-groups").click()
            page.wait_for_selector("tr[data-user='bob'] input.user-groups[value='astro, lab']")
        assert server.services.users.get("bob").groups == {"astro", "lab"}
        # bob's profile shows them
        with checked_context(browser, server.url) as context:
            page = context.new_page()
            sign_in(page, server.url, "bob", tokens["bob"])
            page.goto(f"{server.url}/web/profile")
            assert page.locator("#account-groups").inner_text() == "astro, lab"
        # alice shares her job with group astro and user carol from its page, then withdraws the group
        job_url = run_job(http["alice"], server.url, "dummy", {"text": "seen by the group"})
        job_id = job_url.rsplit("/", 1)[1]
        shared = f"{server.url}/shared/dummy/{job_id}"
        with checked_context(browser, server.url) as context:
            page = context.new_page()
            sign_in(page, server.url, "alice", tokens["alice"])
            page.goto(f"{server.url}/web/jobs/dummy/{job_id}")
            page.wait_for_selector("#share-grantees[data-loaded]")
            page.select_option("#share-kind", "groups")
            page.fill("#share-name", "astro")
            page.click("#share-form button[type=submit]")
            page.wait_for_selector("#share-grantees [data-grantee='group:astro']")
            assert http["bob"].get(shared).json()["results"][0]["fileName"]
            assert http["carol"].get(shared).status_code == 403
            page.select_option("#share-kind", "users")
            page.fill("#share-name", "carol")
            page.click("#share-form button[type=submit]")
            page.wait_for_selector("#share-grantees [data-grantee='user:carol']")
            assert http["carol"].get(shared).status_code == 200
            shoot(page, "job-shared-with")
            page.click("#share-grantees [data-grantee='group:astro'] button.unshare")
            page.wait_for_selector("#share-grantees [data-grantee='group:astro']", state="detached")
            assert http["bob"].get(shared).status_code == 403 and http["carol"].get(shared).status_code == 200
            with context.watch.allowing("400"):  # the refused request, which the browser logs
                page.select_option("#share-kind", "groups")
                page.fill("#share-name", "no good")
                page.click("#share-form button[type=submit]")
                page.wait_for_selector("#alerts .alert-danger:has-text('group name')")
        # carol finds it under "Shared with me", reads it and downloads its result, through the page
        with checked_context(browser, server.url) as context:
            page = context.new_page()
            sign_in(page, server.url, "carol", tokens["carol"])
            page.click("nav a[href$='/web/shared']")
            page.wait_for_selector("#shared:not([aria-busy])")
            job = page.locator(f"details.shared-job[data-job='dummy/{job_id}']")
            assert job.count() == 1 and not job.evaluate("(d) => d.open")
            page.goto(f"{server.url}/web/shared?job=dummy/{job_id}")  # the link the job page gives
            job = page.locator(f"details.shared-job[data-job='dummy/{job_id}'][open]")
            job.wait_for()
            assert "seen by the group" in job.inner_text() and "with you" in job.inner_text()
            href = job.locator("[data-result='output'] a").get_attribute("href")
            assert page.request.get(server.url + href).text() == "seen by the group\n"
            shoot(page, "shared-with-me")
        # bob, whose group no longer has it, sees none
        with checked_context(browser, server.url) as context:
            page = context.new_page()
            sign_in(page, server.url, "bob", tokens["bob"])
            page.goto(f"{server.url}/web/shared")
            page.wait_for_selector("#shared-none")
    finally:
        server.stop()


def test_an_identity_providers_group_names_are_kept_when_usable():
    """``usable_groups`` (for a groups claim) keeps the valid names and drops the rest, never failing."""
    from opus.auth.users import usable_groups
    assert usable_groups(["astro", "/org/astro", "", 3, None, "lab.2", "x" * 65]) == {"astro", "lab.2"}
    assert len(usable_groups(f"g{i:03}" for i in range(MAX_GROUPS + 5))) == MAX_GROUPS
