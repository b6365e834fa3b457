"""The web client's sessions, CSRF protection, CORS and assets, over real HTTP (no browser)."""

from __future__ import annotations

import re

import pytest
import requests
from conftest import ApiServer, make_settings
from security_matrix_rows import CHANGES, ROWS

from opus.auth.admin import UserAdmin
OTHER_SITE = "http://127.0.0.1:9"     # listed in CORS_ORIGINS below
STRANGER = "http://evil.example:8080"  # not listed


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = ApiServer(make_settings(tmp_path_factory.mktemp("websession"), ALLOW_ANONYMOUS=False,
                                      CORS_ORIGINS=(OTHER_SITE,)))
    server.admin = UserAdmin(server.services.users)
    server.tokens = {}
    for name, kwargs in (("root", {"admin": True}), ("alice", {}), ("bob", {})):
        _, server.tokens[name] = server.admin.add(name, **kwargs)
    yield server
    server.stop()


def signin_form(http: requests.Session, url: str, next_url: str = "") -> str:
    """GET the sign-in form; returns its CSRF field (the cookie stays in ``http``)."""
    r = http.get(f"{url}/web/signin", params={"next": next_url} if next_url else None)
    assert r.status_code == 200
    return re.search(r'name="_csrf" value="([^"]+)"', r.text).group(1)


def sign_in(server, name: str) -> tuple[requests.Session, str]:
    """A requests session signed in as ``name``, and its CSRF token."""
    http = requests.Session()
    field = signin_form(http, server.url)
    r = http.post(f"{server.url}/web/signin", data={"name": name, "token": server.tokens[name], "_csrf": field},
                  allow_redirects=False)
    assert r.status_code == 303, r.text
    info = http.get(f"{server.url}/web/session").json()
    assert info["user"] == name and info["session"] is True
    return http, info["csrfToken"]


def test_signing_in_sets_a_signed_httponly_samesite_cookie(server):
    http = requests.Session()
    field = signin_form(http, server.url, "/web/jobs/dummy")
    assert "HttpOnly" in http.get(f"{server.url}/web/signin").headers["Set-Cookie"]
    r = http.post(f"{server.url}/web/signin", allow_redirects=False,
                  data={"name": "alice", "token": server.tokens["alice"], "_csrf": field, "next": "/web/jobs/dummy"})
    assert r.status_code == 303
    assert r.headers["Location"] == f"{server.url}/web/jobs/dummy"
    cookie = [c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith("opus_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    value = http.cookies["opus_session"]
    assert server.tokens["alice"] not in value and "alice" not in value  # the name is encoded, the token absent
    # The cookie identifies the caller for the REST API too.
    assert http.get(f"{server.url}/rest/dummy").status_code == 200
    assert http.get(f"{server.url}/web/").status_code == 200
    assert "alice" in http.get(f"{server.url}/web/").text


def test_wrong_credentials_and_forged_forms_are_refused(server):
    http = requests.Session()
    field = signin_form(http, server.url)
    r = http.post(f"{server.url}/web/signin", data={"name": "alice", "token": "wrong", "_csrf": field},
                  allow_redirects=False)
    assert r.status_code == 401 and "Wrong user name or token" in r.text
    assert "opus_session" not in http.cookies
    # Login CSRF: a form posted from elsewhere has no (or the wrong) field for the browser's cookie.
    r = requests.post(f"{server.url}/web/signin", data={"name": "alice", "token": server.tokens["alice"]},
                      allow_redirects=False)
    assert r.status_code == 403
    r = http.post(f"{server.url}/web/signin", allow_redirects=False,
                  data={"name": "alice", "token": server.tokens["alice"], "_csrf": field[:-2] + "xx"})
    assert r.status_code == 403 and "opus_session" not in http.cookies
    # An open redirect through "next" is not possible.
    for evil in ("https://evil.example/", "//evil.example/web/", "/web/\\evil", "javascript:alert(1)"):
        field = signin_form(http, server.url)
        r = http.post(f"{server.url}/web/signin", allow_redirects=False,
                      data={"name": "bob", "token": server.tokens["bob"], "_csrf": field, "next": evil})
        assert r.headers["Location"] == f"{server.url}/web/", evil


def test_state_changing_requests_with_the_cookie_need_the_csrf_token(server):
    http, csrf = sign_in(server, "alice")
    before = len(http.get(f"{server.url}/rest/dummy", headers={"Accept": "application/json"}).json()["jobs"])
    r = http.post(f"{server.url}/rest/dummy", data={"text": "x"}, allow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    r = http.post(f"{server.url}/rest/dummy", data={"text": "x"}, headers={"X-CSRF-Token": "nope"},
                  allow_redirects=False)
    assert r.status_code == 403
    assert len(http.get(f"{server.url}/rest/dummy", headers={"Accept": "application/json"}).json()["jobs"]) == before
    r = http.post(f"{server.url}/rest/dummy", data={"text": "x"}, headers={"X-CSRF-Token": csrf},
                  allow_redirects=False)
    assert r.status_code == 303
    job = r.headers["Location"]
    assert http.delete(job, allow_redirects=False).status_code == 403
    assert http.delete(job, headers={"X-CSRF-Token": csrf}, allow_redirects=False).status_code == 303
    # Another session's token does not fit this one.
    _bob, bob_csrf = sign_in(server, "bob")
    r = http.post(f"{server.url}/rest/dummy", data={"text": "x"}, headers={"X-CSRF-Token": bob_csrf},
                  allow_redirects=False)
    assert r.status_code == 403
    # Basic and Bearer credentials need no CSRF token: a browser never sends them on its own.
    r = requests.post(f"{server.url}/rest/dummy", data={"text": "x"}, allow_redirects=False,
                      headers={"Authorization": f"Bearer {server.tokens['alice']}"})
    assert r.status_code == 303


def test_every_state_changing_route_refuses_an_admin_session_without_its_token(server):
    http, _csrf = sign_in(server, "root")
    r = requests.post(f"{server.url}/rest/dummy", headers={"Authorization": f"Bearer {server.tokens['root']}"},
                      allow_redirects=False)
    job = r.headers["Location"].replace(server.url, "")
    checked = 0
    for row in ROWS:
        if row.method not in CHANGES or row.kind in ("public", "callback"):
            continue
        path = row.path.format(job=job, victim="bob", jdl="dummy", entity="0" * 16, webjob="",
                               sharedjob=job.replace("/rest/", "/shared/", 1), share="0" * 32,
                               sharetoken="0" * 32 + "." + "0" * 32)
        r = http.request(row.method, server.url + path, data=row.data, json=row.json, allow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text, (row, r.status_code, r.text)
        checked += 1
    assert checked >= 20
    assert server.admin.get("bob").enabled
    assert requests.get(server.url + job + "/phase", headers={
        "Authorization": f"Bearer {server.tokens['root']}"}).text == "PENDING"


def test_forged_expired_and_revoked_sessions_end_in_the_sign_in_form(server):
    http, csrf = sign_in(server, "bob")
    good = http.cookies["opus_session"]
    forged = good.replace(good.split(".")[1], "cm9vdA")  # "root", with bob's signature
    for value in (forged, good[:-3] + "AAA", "v1.garbage", "x" * 5000):
        r = requests.get(f"{server.url}/rest/dummy", cookies={"opus_session": value})
        assert r.status_code == 401, value
        page = requests.get(f"{server.url}/web/jobs", cookies={"opus_session": value})
        assert page.status_code == 401 and 'id="signin-form"' in page.text
        assert "opus_session=;" in page.headers["Set-Cookie"]  # the stale cookie is dropped
    # A new token for the user ends every session of the user at once.
    server.tokens["bob"] = server.admin.new_token("bob")
    assert http.get(f"{server.url}/rest/dummy").status_code == 401
    http, _ = sign_in(server, "bob")
    server.admin.update("bob", enabled=False)
    try:
        assert http.get(f"{server.url}/rest/dummy").status_code == 401
    finally:
        server.admin.update("bob", enabled=True)


def test_sessions_expire(server, monkeypatch):
    from opus.auth import session as web_session
    value, _ = web_session.issue(server.settings, "alice", server.admin.get("alice").session_stamp, now=1_000_000)
    assert web_session.parse(server.settings, value, now=1_000_000 + 10) is not None
    assert web_session.parse(server.settings, value, now=1_000_000 + server.settings.SESSION_LIFETIME) is None
    assert requests.get(f"{server.url}/rest/dummy", cookies={"opus_session": value}).status_code == 401


def test_signing_out_needs_the_page_token_and_drops_the_cookie(server):
    http, csrf = sign_in(server, "alice")
    assert http.post(f"{server.url}/web/signout", allow_redirects=False).status_code == 403
    assert http.get(f"{server.url}/rest/dummy").status_code == 200
    r = http.post(f"{server.url}/web/signout", data={"_csrf": csrf}, allow_redirects=False)
    assert r.status_code == 303 and "/web/signin" in r.headers["Location"]
    assert "opus_session" not in http.cookies
    assert http.get(f"{server.url}/rest/dummy").status_code == 401


def test_pages_are_locked_down(server):
    http, _ = sign_in(server, "alice")
    r = http.get(f"{server.url}/web/")
    assert r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["Cache-Control"] == "no-store"
    assert re.search(r'<meta name="csrf-token" content="[A-Za-z0-9_-]{20,}">', r.text)
    assert http.get(f"{server.url}/web/admin").status_code == 403
    root, _ = sign_in(server, "root")
    assert root.get(f"{server.url}/web/admin").status_code == 200
    assert http.get(f"{server.url}/web/jobs/nosuch").status_code == 404
    assert http.get(f"{server.url}/web/jobs/dummy/0123456789abcdef").status_code == 404


def test_assets_come_from_node_modules_and_nothing_else(server):
    r = requests.get(f"{server.url}/web/lib/bootstrap/dist/js/bootstrap.bundle.min.js")
    assert r.status_code == 200 and "javascript" in r.headers["Content-Type"]
    assert requests.get(f"{server.url}/web/lib/codemirror/lib/codemirror.js").status_code == 200
    assert requests.get(f"{server.url}/web/static/uws.js").status_code == 200
    for bad in ("/web/lib/bootstrap/package.json", "/web/lib/codemirror/package.json", "/web/lib/..%2fpackage.json",
                "/web/lib/bootstrap/dist/../../../package.json", "/web/static/..%2f..%2fsettings.py",
                "/web/static/nosuch.js"):
        r = requests.get(server.url + bad)
        assert r.status_code in (400, 404), (bad, r.status_code)


def test_anonymous_use_when_allowed(tmp_path):
    server = ApiServer(make_settings(tmp_path))
    try:
        r = requests.get(f"{server.url}/web/")
        assert r.status_code == 200 and "Sign in" in r.text
        assert requests.get(f"{server.url}/web/session").json() == {
            "user": None, "admin": False, "anonymous": True, "session": False, "csrfToken": None, "expires": None,
            "signin": f"{server.url}/web/signin"}
        assert "Secure" not in requests.get(f"{server.url}/web/signin").headers["Set-Cookie"]
    finally:
        server.stop()


def test_cookies_are_secure_behind_https(tmp_path):
    server = ApiServer(make_settings(tmp_path, BASE_URL="https://opus.example.org/uws"))
    try:
        cookie = requests.get(f"{server.url}/web/signin").headers["Set-Cookie"]
        assert "Secure" in cookie and "Path=/uws/" in cookie and "SameSite=Strict" in cookie
    finally:
        server.stop()


def test_cors_credentials_only_for_listed_origins(server):
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-csrf-token, content-type"}
    r = requests.options(f"{server.url}/rest/dummy", headers={"Origin": OTHER_SITE, **pre})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == OTHER_SITE
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert "X-CSRF-Token" in r.headers["Access-Control-Allow-Headers"]
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    r = requests.options(f"{server.url}/rest/dummy", headers={"Origin": STRANGER, **pre})
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers
    http, _ = sign_in(server, "alice")
    r = http.get(f"{server.url}/web/session", headers={"Origin": OTHER_SITE})
    assert r.headers["Access-Control-Allow-Origin"] == OTHER_SITE and r.headers["Vary"] == "Origin"
    assert "Location" in r.headers["Access-Control-Expose-Headers"]
    r = http.get(f"{server.url}/web/session", headers={"Origin": STRANGER})
    assert "Access-Control-Allow-Origin" not in r.headers and "Access-Control-Allow-Credentials" not in r.headers
    # Errors carry the headers too, so that scripts can read the message.
    r = requests.get(f"{server.url}/rest/dummy", headers={"Origin": OTHER_SITE})
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == OTHER_SITE


def test_cors_wildcard_never_allows_credentials(tmp_path):
    server = ApiServer(make_settings(tmp_path, CORS_ORIGINS=("*",)))
    try:
        r = requests.get(f"{server.url}/jdl", headers={"Origin": STRANGER})
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in r.headers
        r = requests.options(f"{server.url}/rest/dummy", headers={"Origin": STRANGER,
                                                                  "Access-Control-Request-Method": "POST"})
        assert r.status_code == 204 and "Access-Control-Allow-Credentials" not in r.headers
    finally:
        server.stop()


def test_no_cors_headers_by_default(tmp_path):
    server = ApiServer(make_settings(tmp_path))
    try:
        r = requests.get(f"{server.url}/jdl", headers={"Origin": OTHER_SITE})
        assert "Access-Control-Allow-Origin" not in r.headers
        r = requests.options(f"{server.url}/rest/dummy", headers={"Origin": OTHER_SITE,
                                                                  "Access-Control-Request-Method": "POST"})
        assert r.status_code == 405
    finally:
        server.stop()
