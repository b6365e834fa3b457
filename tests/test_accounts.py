"""Accounts over HTTP (issue 17, points 1 and 3): passwords, registration in each mode, one's own
token and password, admin-issued reset links, the editor role, service tokens with scopes and expiry.

The app runs in-process (ApiServer) with anonymous access off and cheap argon2 parameters.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
from conftest import ApiServer, make_settings

from opus.auth.admin import UserAdmin
from opus.timeutil import utcnow

CHEAP = {"PASSWORD_HASH_TIME_COST": 1, "PASSWORD_HASH_MEMORY_COST": 1024, "PASSWORD_MIN_LENGTH": 10}
PASSWORD = "correct horse battery"


def make_server(tmp_path, **overrides) -> ApiServer:
    server = ApiServer(make_settings(tmp_path, ALLOW_ANONYMOUS=False, **{**CHEAP, **overrides}))
    server.admin = UserAdmin(server.services.users)
    server.tokens = {}
    for name, kwargs in (("root", {"admin": True}), ("alice", {}), ("bob", {})):
        _, server.tokens[name] = server.admin.add(name, **kwargs)
    return server


@pytest.fixture
def server(tmp_path):
    server = make_server(tmp_path, REGISTRATION="open")
    yield server
    server.stop()


def form_field(http: requests.Session, url: str) -> str:
    r = http.get(url)
    return re.search(r'name="_csrf" value="([^"]+)"', r.text).group(1)


def sign_in(server, name: str, secret: str) -> requests.Response:
    http = requests.Session()
    field = form_field(http, f"{server.url}/web/signin")
    r = http.post(f"{server.url}/web/signin", data={"name": name, "token": secret, "_csrf": field},
                  allow_redirects=False)
    r.http = http
    return r


def session_of(server, name: str, secret: str) -> tuple[requests.Session, str]:
    r = sign_in(server, name, secret)
    assert r.status_code == 303, r.text
    return r.http, r.http.get(f"{server.url}/web/session").json()["csrfToken"]


def register(server, name: str, password: str = PASSWORD, password2: str | None = None, email: str = ""):
    http = requests.Session()
    field = form_field(http, f"{server.url}/web/register")
    r = http.post(f"{server.url}/web/register", allow_redirects=False, data={
        "name": name, "password": password, "password2": password if password2 is None else password2,
        "email": email, "_csrf": field})
    r.http = http
    return r


def as_user(server, name: str) -> tuple[str, str]:
    return (name, server.tokens[name])


# ---- registration -------------------------------------------------------------------------------------
def test_open_registration_makes_a_working_account_and_signs_in(server):
    r = register(server, "carol", email="carol@example.org")
    assert r.status_code == 303 and r.headers["Location"].endswith("/web/profile")
    me = r.http.get(f"{server.url}/account").json()
    assert me["name"] == "carol" and me["roles"] == ["user"] and me["password"] is True
    assert me["email"] == "carol@example.org" and me["limits"]["jobDefinitions"] == ["*"]
    assert r.http.get(f"{server.url}/web/profile").status_code == 200
    # The password signs in on the form; it is no API credential (Basic stays one keyed hash).
    assert sign_in(server, "carol", PASSWORD).status_code == 303
    assert sign_in(server, "carol", PASSWORD + "x").status_code == 401
    assert requests.get(f"{server.url}/rest/dummy", auth=("carol", PASSWORD)).status_code == 401
    stored = server.services.users.get("carol").password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


@pytest.mark.parametrize("form, status, text", [
    ({"name": "dave", "password": "short"}, 400, "at least 10 characters"),
    ({"name": "dave", "password2": PASSWORD + "!"}, 400, "differ"),
    ({"name": "not a name"}, 400, "user name"),
    ({"name": "alice"}, 400, "taken"),
    ({"name": "dave", "email": "nope"}, 400, "e-mail"),
    ({"name": "dave", "password": "dave" * 3, "password2": "dave" * 3}, 200, ""),
])
def test_registration_refuses_bad_input_with_a_message_never_a_500(server, form, status, text):
    r = register(server, **form)
    assert r.status_code == (303 if status == 200 else status), r.text
    assert text in r.text
    if status != 200:
        assert server.services.users.get(form["name"]) is None or form["name"] == "alice"


def test_registration_form_needs_its_csrf_field(server):
    r = requests.post(f"{server.url}/web/register", data={"name": "eve", "password": PASSWORD,
                                                          "password2": PASSWORD}, allow_redirects=False)
    assert r.status_code == 403 and server.services.users.get("eve") is None


def test_approved_registration_waits_for_an_admin(tmp_path):
    server = make_server(tmp_path, REGISTRATION="approved")
    try:
        r = register(server, "carol")
        assert r.status_code == 202 and "must approve" in r.text and "opus_session" not in r.http.cookies
        assert sign_in(server, "carol", PASSWORD).status_code == 401
        listed = requests.get(f"{server.url}/admin/users/carol", auth=as_user(server, "root")).json()
        assert listed["enabled"] is False and listed["password"] is True
        r = requests.patch(f"{server.url}/admin/users/carol", json={"enabled": True}, auth=as_user(server, "root"))
        assert r.status_code == 200
        assert sign_in(server, "carol", PASSWORD).status_code == 303
    finally:
        server.stop()


def test_registration_off_creates_nothing(tmp_path):
    server = make_server(tmp_path)  # REGISTRATION defaults to "off"
    try:
        r = requests.get(f"{server.url}/web/register")
        assert r.status_code == 403 and "off" in r.text
        http = requests.Session()
        field = form_field(http, f"{server.url}/web/signin")  # a valid nonce all the same
        r = http.post(f"{server.url}/web/register", data={"name": "carol", "password": PASSWORD,
                                                           "password2": PASSWORD, "_csrf": field})
        assert r.status_code == 403 and server.services.users.get("carol") is None
    finally:
        server.stop()


def test_registrations_are_limited_per_address(tmp_path):
    server = make_server(tmp_path, REGISTRATION="open", REGISTRATION_MAX_PER_ADDRESS=2)
    try:
        assert register(server, "u1").status_code == 303
        assert register(server, "alice").status_code == 400  # a taken name counts too
        r = register(server, "u3")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        assert server.services.users.get("u3") is None
    finally:
        server.stop()


# ---- passwords ---------------------------------------------------------------------------------------
def test_changing_ones_password_needs_the_current_one_and_ends_other_sessions(server):
    assert register(server, "carol").status_code == 303
    http, csrf = session_of(server, "carol", PASSWORD)
    other, _ = session_of(server, "carol", PASSWORD)
    url = f"{server.url}/account/password"
    r = http.post(url, json={"current": "wrong password", "password": "another good one"},
                  headers={"X-CSRF-Token": csrf})
    assert r.status_code == 401
    r = http.post(url, json={"password": "another good one"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 400 and "current password" in r.text
    r = http.post(url, json={"current": PASSWORD, "password": "another good one"})
    assert r.status_code == 403  # the session's CSRF token is needed
    r = http.post(url, json={"current": PASSWORD, "password": "another good one"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert http.get(f"{server.url}/account").status_code == 200      # this session goes on (a new cookie)
    assert other.get(f"{server.url}/account").status_code == 401     # the others end
    assert sign_in(server, "carol", PASSWORD).status_code == 401
    assert sign_in(server, "carol", "another good one").status_code == 303


def test_a_token_user_may_set_a_first_password_with_its_token(server):
    r = requests.post(f"{server.url}/account/password", data={"password": PASSWORD}, auth=as_user(server, "alice"))
    assert r.status_code == 200  # a form works as well as JSON
    r = requests.post(f"{server.url}/account/password", data=b"[1, 2]", auth=as_user(server, "bob"),
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON object" in r.text
    assert sign_in(server, "alice", PASSWORD).status_code == 303
    assert sign_in(server, "alice", server.tokens["alice"]).status_code == 303  # the token still signs in


def test_failed_password_sign_ins_are_throttled(tmp_path):
    server = make_server(tmp_path, REGISTRATION="open", SIGNIN_MAX_FAILURES_PER_NAME=3,
                         SIGNIN_MAX_FAILURES_PER_ADDRESS=0)
    try:
        assert register(server, "carol").status_code == 303
        for _ in range(3):
            assert sign_in(server, "carol", "wrong password").status_code == 401
        r = sign_in(server, "carol", PASSWORD)
        assert r.status_code == 429 and "Retry-After" in r.headers
    finally:
        server.stop()


# ---- one's own token ---------------------------------------------------------------------------------
def test_replacing_ones_own_token(server):
    http, csrf = session_of(server, "alice", server.tokens["alice"])
    me = http.get(f"{server.url}/account").json()
    assert me["tokenId"] == server.tokens["alice"].split(".")[0] and "token" not in me
    assert http.post(f"{server.url}/account/token").status_code == 403  # no CSRF token
    r = http.post(f"{server.url}/account/token", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    new = r.json()["token"]
    assert requests.get(f"{server.url}/rest/dummy", auth=as_user(server, "alice")).status_code == 401
    assert requests.get(f"{server.url}/rest/dummy", auth=("alice", new)).status_code == 200
    assert http.get(f"{server.url}/account").json()["tokenId"] == new.split(".")[0]  # still signed in


def test_account_routes_need_a_signed_in_caller(server):
    assert requests.get(f"{server.url}/account").status_code == 401
    assert requests.post(f"{server.url}/account/token").status_code == 401
    assert requests.get(f"{server.url}/web/profile").status_code == 401


# ---- password reset links ----------------------------------------------------------------------------
def test_admin_reset_link_sets_a_password_once(server):
    r = requests.post(f"{server.url}/admin/users/alice/reset", auth=as_user(server, "bob"))
    assert r.status_code == 403
    r = requests.post(f"{server.url}/admin/users/alice/reset", auth=as_user(server, "root"))
    assert r.status_code == 200
    link = r.json()["url"]
    code = re.search(r"code=([^&]+)", link).group(1)
    assert code not in str(server.services.users.get("alice").reset_hash)
    http = requests.Session()
    page = http.get(server.url + urlsplit(link).path + "?" + urlsplit(link).query)
    assert page.status_code == 200 and 'value="alice"' in page.text
    field = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    data = {"name": "alice", "code": code + "x", "password": PASSWORD, "password2": PASSWORD, "_csrf": field}
    assert http.post(f"{server.url}/web/reset", data=data, allow_redirects=False).status_code == 403
    r = http.post(f"{server.url}/web/reset", data={**data, "code": code}, allow_redirects=False)
    assert r.status_code == 303 and http.get(f"{server.url}/account").json()["name"] == "alice"
    assert sign_in(server, "alice", PASSWORD).status_code == 303
    again = http.post(f"{server.url}/web/reset", data={**data, "code": code, "password": "yet another one",
                                                        "password2": "yet another one"}, allow_redirects=False)
    assert again.status_code == 403


def test_an_expired_reset_link_is_refused(server):
    code = re.search(r"code=([^&]+)", requests.post(f"{server.url}/admin/users/bob/reset",
                                                    auth=as_user(server, "root")).json()["url"]).group(1)
    server.services.users.update("bob", reset_expires=utcnow() - timedelta(seconds=1))
    http = requests.Session()
    field = form_field(http, f"{server.url}/web/reset?name=bob&code={code}")
    r = http.post(f"{server.url}/web/reset", data={"name": "bob", "code": code, "password": PASSWORD,
                                                    "password2": PASSWORD, "_csrf": field})
    assert r.status_code == 403 and "expired" in r.text
    assert server.services.users.get("bob").password_hash is None


# ---- roles -------------------------------------------------------------------------------------------
def test_the_editor_role_is_given_and_shown(server):
    root = as_user(server, "root")
    r = requests.patch(f"{server.url}/admin/users/bob", json={"editor": True}, auth=root)
    assert r.status_code == 200 and r.json()["roles"] == ["editor", "user"]
    assert requests.patch(f"{server.url}/admin/users/bob", json={"editor": "yes"}, auth=root).status_code == 400
    r = requests.post(f"{server.url}/admin/users", json={"name": "erin", "editor": True}, auth=root)
    assert r.status_code == 201 and "editor" in r.json()["roles"]
    assert requests.get(f"{server.url}/account", auth=as_user(server, "bob")).json()["roles"] == ["editor", "user"]
    identity = server.services.auth.identify({"HTTP_AUTHORIZATION": "Bearer " + server.tokens["bob"]})
    assert identity.is_editor and identity.may_edit_definitions
    assert not server.services.auth.identify(
        {"HTTP_AUTHORIZATION": "Bearer " + server.tokens["alice"]}).may_edit_definitions


# ---- service tokens ----------------------------------------------------------------------------------
def make_service_token(server, name: str, scope: str, days: int = 30) -> dict:
    r = requests.post(f"{server.url}/account/tokens", json={"name": f"{scope} app", "scope": scope, "days": days},
                      auth=as_user(server, name))
    assert r.status_code == 201, r.text
    return r.json()


def test_a_read_token_may_only_look(server):
    alice = as_user(server, "alice")
    r = requests.post(f"{server.url}/rest/dummy", data={"text": "hi"}, auth=alice, allow_redirects=False)
    job = r.headers["Location"]
    made = make_service_token(server, "alice", "read")
    read = {"Authorization": f"Bearer {made['token']}"}
    assert requests.get(job, headers=read).status_code == 200
    assert requests.get(job, auth=("alice", made["token"])).status_code == 200   # Basic with the user's name
    assert requests.get(job, auth=("bob", made["token"])).status_code == 401     # not bob's
    assert requests.post(f"{job}/phase", data={"PHASE": "RUN"}, headers=read).status_code == 403
    assert requests.delete(job, headers=read).status_code == 403
    assert requests.post(f"{server.url}/rest/dummy", data={"text": "x"}, headers=read).status_code == 403
    assert requests.get(f"{job}/phase", auth=alice).text == "PENDING"


def test_a_submit_token_runs_jobs_but_never_manages_the_account_or_acts_as_admin(server):
    made = make_service_token(server, "root", "submit")
    bearer = {"Authorization": f"Bearer {made['token']}"}
    r = requests.post(f"{server.url}/rest/dummy", data={"text": "hi", "PHASE": "RUN"}, headers=bearer,
                      allow_redirects=False)
    assert r.status_code == 303
    assert requests.get(r.headers["Location"], headers=bearer).status_code == 200
    assert requests.get(f"{server.url}/admin/users", headers=bearer).status_code == 403
    assert requests.get(f"{server.url}/account", headers=bearer).status_code == 403
    assert requests.post(f"{server.url}/account/tokens", json={"name": "x", "scope": "read"},
                         headers=bearer).status_code == 403
    # Nor does it open a web session.
    assert sign_in(server, "root", made["token"]).status_code == 401


def test_service_tokens_are_listed_revoked_and_expire(server):
    alice, root = as_user(server, "alice"), as_user(server, "root")
    made = make_service_token(server, "alice", "submit")
    assert "token" not in requests.get(f"{server.url}/account/tokens", auth=alice).json()["tokens"][0]
    listed = requests.get(f"{server.url}/admin/users/alice/tokens", auth=root).json()["tokens"]
    assert [t["id"] for t in listed] == [made["id"]] and listed[0]["scope"] == "submit"
    assert requests.get(f"{server.url}/admin/users/alice/tokens", auth=as_user(server, "bob")).status_code == 403
    bearer = {"Authorization": f"Bearer {made['token']}"}
    assert requests.get(f"{server.url}/rest/dummy", headers=bearer).status_code == 200
    # Bob cannot revoke alice's token through his own account.
    assert requests.delete(f"{server.url}/account/tokens/{made['id']}", auth=as_user(server, "bob")).status_code == 404
    assert requests.delete(f"{server.url}/account/tokens/{made['id']}", auth=alice).status_code == 200
    assert requests.get(f"{server.url}/rest/dummy", headers=bearer).status_code == 401
    # An admin revokes; an expired token is refused.
    other = make_service_token(server, "alice", "read")
    assert requests.delete(f"{server.url}/admin/users/alice/tokens/{other['id']}", auth=root).status_code == 200
    old = make_service_token(server, "alice", "read")
    from sqlalchemy import update

    from opus.storage.tables import service_tokens
    with server.services.users.engine.begin() as conn:
        conn.execute(update(service_tokens).where(service_tokens.c.token_id == old["id"])
                     .values(expires=(utcnow() - timedelta(seconds=1)).replace(tzinfo=None)))
    r = requests.get(f"{server.url}/rest/dummy", headers={"Authorization": f"Bearer {old['token']}"})
    assert r.status_code == 401 and "expired" in r.text


@pytest.mark.parametrize("body, text", [
    ({"name": "", "scope": "read"}, "name"),
    ({"name": "x", "scope": "admin"}, "scope"),
    ({"name": "x", "scope": "read", "days": 0}, "days"),
    ({"name": "x", "scope": "read", "days": 10_000}, "days"),
    ({"name": "x", "scope": "read", "days": "soon"}, "days"),
])
def test_bad_service_token_requests_are_400(server, body, text):
    r = requests.post(f"{server.url}/account/tokens", json=body, auth=as_user(server, "alice"))
    assert r.status_code == 400 and text in r.text


def test_deleting_a_user_deletes_its_service_tokens(server):
    made = make_service_token(server, "bob", "read")
    assert requests.delete(f"{server.url}/admin/users/bob", auth=as_user(server, "root")).status_code == 200
    assert server.services.users.service_token(made["id"]) is None
    assert requests.get(f"{server.url}/rest/dummy", headers={"Authorization": f"Bearer {made['token']}"}
                        ).status_code == 401


@pytest.mark.parametrize("path", ["/web/signin", "/web/register", "/web/reset"])
def test_an_unreadable_form_body_is_the_form_again_never_a_bare_400(server, path, tmp_path):
    """A browser's form route answers an HTML page whatever was posted (the fuzz test found a
    non-UTF-8 body answered with text/plain, which /openapi.json does not document)."""
    r = requests.post(server.url + path, data=b"name=\xff\xfe%zz&token=\x1f\xb9",
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, allow_redirects=False)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("text/html") and "could not be read" in r.text
    assert "<form" in r.text
