"""Authentication and authorisation: users, tokens, modes, the admin API, quotas."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import pytest
import requests

from conftest import ApiServer, make_settings
from helpers import ME
from opus.storage.userstore import UserStore
from opus.auth.admin import UserAdmin
from opus.auth.identity import server_secret
from opus.auth.users import hash_token, keyed_token_hash, token_key, verify_token
@pytest.fixture
def secured(tmp_path):
    """A server that refuses anonymous callers, with an admin, alice and bob (dummy only, 2 jobs)."""
    server = ApiServer(make_settings(tmp_path, ALLOW_ANONYMOUS=False))
    admin = UserAdmin(server.services.users)
    server.tokens = {}
    for name, kwargs in (("root", {"admin": True}), ("alice", {}), ("bob", {"jobdefs": "dummy", "max_active_jobs": 2})):
        _, server.tokens[name] = admin.add(name, **kwargs)
    yield server
    server.stop()


def basic(name, token):
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{token}".encode()).decode()}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_tokens_are_stored_only_as_keyed_hashes(secured):
    user = secured.services.users.get("alice")
    assert user.token_hash.startswith("hmac_sha256$")
    assert secured.tokens["alice"] not in user.token_hash
    key = token_key(server_secret(secured.settings))
    assert user.token_hash == keyed_token_hash(key, secured.tokens["alice"])
    assert user.token_hash != keyed_token_hash(key, secured.tokens["alice"] + "x")
    # The legacy PBKDF2 form still verifies (until its first use replaces it: test_trust_identity.py).
    assert verify_token("t", hash_token("t", iterations=1000)) and not verify_token("u", hash_token("t", iterations=1000))


def test_anonymous_is_refused_with_a_challenge(secured):
    r = requests.get(f"{secured.url}/rest/dummy")
    assert r.status_code == 401
    assert "Basic" in r.headers["WWW-Authenticate"] and "Bearer" in r.headers["WWW-Authenticate"]
    assert requests.post(f"{secured.url}/rest/dummy", data={"text": "x"}).status_code == 401
    # VOSI stays public (VOSI 1.1)
    assert requests.get(f"{secured.url}/availability").status_code == 200
    assert requests.get(f"{secured.url}/capabilities").status_code == 200


@pytest.mark.parametrize("headers", [
    basic("alice", "wrong"), basic("nobody", "x"), bearer("0123456789abcdef.nope"),
    bearer("garbage"), {"Authorization": "Basic !!!"}, {"Authorization": "Digest foo"},
])
def test_wrong_credentials_are_401(secured, headers):
    headers = {k: v.replace("TOKEN_OF_alice", secured.tokens["alice"]) for k, v in headers.items()}
    r = requests.get(f"{secured.url}/rest/dummy", headers=headers)
    assert r.status_code == 401, r.text
    assert "WWW-Authenticate" in r.headers


def test_basic_and_bearer_sign_in(secured):
    r = requests.get(f"{secured.url}/rest/dummy", headers=basic("alice", secured.tokens["alice"]))
    assert r.status_code == 200
    r = requests.get(f"{secured.url}/rest/dummy", headers=bearer(secured.tokens["alice"]))
    assert r.status_code == 200
    r = requests.get(f"{secured.url}/rest/dummy", headers=basic("bob", secured.tokens["alice"]))
    assert r.status_code == 401  # alice's token is not bob's


def test_owners_see_only_their_jobs_admins_see_all(secured):
    a, b, root = (basic(n, secured.tokens[n]) for n in ("alice", "bob", "root"))
    r = requests.post(f"{secured.url}/rest/dummy", data={"text": "alice's secret"}, headers=a, allow_redirects=False)
    url = r.headers["Location"]
    assert "<uws:ownerId>alice</uws:ownerId>" in requests.get(url, headers=a).text
    assert requests.get(url + "/owner", headers=a).text == "alice"
    for path in ("", "/phase", "/parameters", "/parameters/text", "/results", "/stdout", "/error", "/quote"):
        r = requests.get(url + path, headers=b)
        assert r.status_code == 403, path
        assert "secret" not in r.text
    assert requests.post(url + "/phase", data={"PHASE": "RUN"}, headers=b, allow_redirects=False).status_code == 403
    assert requests.delete(url, headers=b, allow_redirects=False).status_code == 403
    assert url.rsplit("/", 1)[1] not in requests.get(f"{secured.url}/rest/dummy", headers=b).text
    assert url.rsplit("/", 1)[1] in requests.get(f"{secured.url}/rest/dummy", headers=a).text
    assert url.rsplit("/", 1)[1] in requests.get(f"{secured.url}/rest/dummy", headers=root).text
    assert requests.get(url, headers=root).status_code == 200
    assert requests.delete(url, headers=root, allow_redirects=False).status_code == 303


def test_job_definition_permission_and_quota(secured):
    b = basic("bob", secured.tokens["bob"])
    r = requests.post(f"{secured.url}/rest/sleep", data={"seconds": "1"}, headers=b, allow_redirects=False)
    assert r.status_code == 403 and "sleep" in r.text
    for _ in range(2):
        assert requests.post(f"{secured.url}/rest/dummy", headers=b, allow_redirects=False).status_code == 303
    r = requests.post(f"{secured.url}/rest/dummy", headers=b, allow_redirects=False)
    assert r.status_code == 403 and "limit" in r.text
    assert requests.get(f"{secured.url}/rest/dummy", headers=b).text.count("<uws:jobref") == 2  # nothing half-made


def test_admin_api(secured):
    root, a = basic("root", secured.tokens["root"]), basic("alice", secured.tokens["alice"])
    assert requests.get(f"{secured.url}/admin/users", headers=a).status_code == 403
    users = requests.get(f"{secured.url}/admin/users", headers=root).json()["users"]
    assert {u["name"] for u in users} == {"root", "alice", "bob"}
    assert all("token" not in u and "hash" not in str(u) for u in users)
    r = requests.post(f"{secured.url}/admin/users", json={"name": "carol", "jobDefinitions": ["dummy"]}, headers=root)
    assert r.status_code == 201
    carol = r.json()["token"]
    assert requests.get(f"{secured.url}/rest/dummy", headers=bearer(carol)).status_code == 200
    assert requests.post(f"{secured.url}/admin/users", json={"name": "carol"}, headers=root).status_code == 400
    assert requests.post(f"{secured.url}/admin/users", json={"name": "../x"}, headers=root).status_code == 400
    r = requests.patch(f"{secured.url}/admin/users/carol", json={"enabled": False}, headers=root)
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert requests.get(f"{secured.url}/rest/dummy", headers=bearer(carol)).status_code == 401
    requests.patch(f"{secured.url}/admin/users/carol", json={"enabled": True, "grant": "sleep"}, headers=root)
    new = requests.post(f"{secured.url}/admin/users/carol/token", headers=root).json()["token"]
    assert requests.get(f"{secured.url}/rest/dummy", headers=bearer(carol)).status_code == 401  # old token dead
    assert requests.get(f"{secured.url}/rest/sleep", headers=bearer(new)).status_code == 200
    r = requests.patch(f"{secured.url}/admin/users/root", json={"admin": False}, headers=root)
    assert r.status_code == 403  # never lock out the last admin
    assert requests.delete(f"{secured.url}/admin/users/carol", headers=root).status_code == 200
    assert requests.get(f"{secured.url}/admin/users/carol", headers=root).status_code == 404


def test_remote_user_only_when_trusted(tmp_path):
    for trusted in (False, True):
        server = ApiServer(make_settings(tmp_path / str(trusted), ALLOW_ANONYMOUS=False, AUTH_REMOTE_USER=trusted))
        try:
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/rest/dummy", "REMOTE_USER": "dave",
                       "wsgi.url_scheme": "http", "HTTP_HOST": "localhost", "SERVER_NAME": "localhost",
                       "SERVER_PORT": "80",
                       "wsgi.input": io.BytesIO(), "QUERY_STRING": "", "wsgi.errors": sys.stderr}
            status = []
            server.app(environ, lambda s, h, exc_info=None: status.append(s))
            assert status[0].startswith("200" if trusted else "401"), status
            # The header a client could send is never REMOTE_USER.
            r = requests.get(f"{server.url}/rest/dummy", headers={"Remote-User": "dave", "X-Remote-User": "dave"})
            assert r.status_code == 401
        finally:
            server.stop()


def test_anonymous_jobs_are_not_shared_with_users(tmp_path):
    server = ApiServer(make_settings(tmp_path))
    try:
        _, token = UserAdmin(UserStore(server.services.store.engine)).add("alice")
        url = server.create()
        assert requests.get(url).status_code == 200
        assert requests.get(url, headers=bearer(token)).status_code == 403
    finally:
        server.stop()


def test_init_creates_the_first_admin_once(tmp_path):
    settings_file = tmp_path / "s.py"
    settings_file.write_text(f"DATA_DIR = {str(tmp_path / 'd')!r}\nSERVICE_USER = {ME!r}\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "opus.cli", "--settings", str(settings_file), *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    first = run("init")
    assert first.returncode == 0 and "first admin user 'admin'" in first.stdout
    token = first.stdout.split("shown only now:\n  ")[1].split()[0]
    assert "first admin" not in run("init").stdout
    users = run("user", "list").stdout
    assert '"name": "admin"' in users and token not in users
    added = run("user", "add", "eve", "--jobdefs", "dummy,sleep")
    assert added.returncode == 0
    assert run("user", "grant", "eve", "fail").stdout.strip().endswith("dummy fail sleep")
    assert run("user", "disable", "admin").returncode == 1  # the last admin
    assert run("user", "add", "eve").returncode == 1
