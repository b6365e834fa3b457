"""Single sign-on with OpenID Connect (issue 17 point 2), through HTTP against a real OpenID provider.

The provider is ``oidc-provider-mock`` (PyPI; an OpenID provider built on Authlib, made for tests: any
client id, users and their claims set over HTTP, a real authorization form, one-time codes, RS256 ID
tokens and a JWK set), served on 127.0.0.1 in a thread of this process.  A thin WSGI layer in front
of it can alter the next ID tokens (``Provider.tamper``): it re-signs them with a key of its own that
the provider's JWK set also publishes, so a token for another client, with another nonce, expired,
or signed with a shared secret, reaches OPUS exactly as a misbehaving provider would send it.

Every test walks the real flow: GET /web/signin/oidc (302 to the provider), the provider's form
(POST sub=...), the provider's 302 to the callback, the callback (303 and the session cookie).
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import oidc_provider_mock  # the test extra: a missing provider fails these tests, never skips them
import pytest
import requests
import werkzeug.serving
from conftest import LiveServer, make_settings
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from opus.auth import oidc
from opus.auth.admin import UserAdmin
from opus.errors import ConfigurationError
from opus.settings import load_settings

#: The provider mock calls Authlib's older server interface; its deprecation warnings are not OPUS's.
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")
CLIENT_ID = "opus-test"
CLIENT_SECRET = "a client secret of the test client"
NAME = "Test IdP"


class Provider:
    """oidc-provider-mock on 127.0.0.1 (a thread), behind a layer that may alter its ID tokens."""

    def __init__(self) -> None:
        self.app = oidc_provider_mock.app(require_nonce=True)
        self.key = RSAKey.generate_key(2048, parameters={"kid": "opus-test-tamper"})
        #: Applied to the claims of the ID tokens the provider issues next, re-signed with ``key``
        #: (or, when ``sign_hs256``, with the client secret as an HS256 key).
        self.tamper: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.sign_hs256 = False
        self.httpd = werkzeug.serving.make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def user(self, sub: str, **claims: Any) -> None:
        """The provider's user ``sub`` and the claims its ID tokens carry."""
        r = requests.put(f"{self.url}/users/{quote(sub, safe='')}", json=claims, timeout=10)
        assert r.status_code == 204, r.text

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path not in ("/jwks", "/oauth2/token"):
            return self.app(environ, start_response)
        answer: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer.update(status=status, headers=headers)
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        if path == "/jwks" and (self.tamper or self.sign_hs256):  # the provider's keys, and ours
            keys = json.loads(body)
            keys["keys"].append(self.key.as_dict(private=False))
            body = json.dumps(keys).encode()
        elif answer["status"].startswith("200") and (self.tamper or self.sign_hs256):
            token = json.loads(body)
            payload = token["id_token"].split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            claims = self.tamper(claims) if self.tamper else claims
            if self.sign_hs256:  # the classic confusion: the client secret as an HMAC key
                token["id_token"] = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(CLIENT_SECRET.encode()))
            else:
                token["id_token"] = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)
            body = json.dumps(token).encode()
        headers = [(k, v) for k, v in answer["headers"] if k.lower() != "content-length"]
        start_response(answer["status"], headers + [("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    idp = Provider()
    yield idp
    idp.stop()
    oidc.forget_provider()


@pytest.fixture(autouse=True)
def _clean(request):
    yield
    if "provider" in request.fixturenames:
        idp = request.getfixturevalue("provider")
        idp.tamper, idp.sign_hs256 = None, False


def oidc_settings(tmp_path, provider: Provider, **overrides: Any):
    values: dict[str, Any] = {"ALLOW_ANONYMOUS": False, "OIDC_ISSUER": provider.url, "OIDC_CLIENT_ID": CLIENT_ID,
                                  "OIDC_CLIENT_SECRET": CLIENT_SECRET, "OIDC_PROVIDER_NAME": NAME, "OIDC_CREATE_USERS": True,
                                  "OIDC_EDITOR_GROUPS": ("editors",), "OIDC_ADMIN_GROUPS": ("admins",), "OIDC_TIMEOUT": 5}
    values.update(overrides)
    return make_settings(tmp_path, **values)


@pytest.fixture
def server(tmp_path, provider) -> Iterator[LiveServer]:
    srv = LiveServer(oidc_settings(tmp_path, provider))
    _, srv.root_token = UserAdmin(srv.services.users).add("root", admin=True)
    yield srv
    srv.stop()


# ---- the flow, step by step, as a browser follows it ---------------------------------------------------
def start(http: requests.Session, server, next_url: str | None = "/web/jobs") -> requests.Response:
    params = {"next": next_url} if next_url is not None else {}
    r = http.get(f"{server.url}/web/signin/oidc", params=params, allow_redirects=False)
    assert r.status_code == 302, r.text
    return r


def authorize(http: requests.Session, authorization_url: str, sub: str, deny: bool = False) -> str:
    """The provider's form, filled: the callback URL it redirects to."""
    form = http.get(authorization_url)
    assert form.status_code == 200 and 'name="sub"' in form.text
    r = http.post(authorization_url, data={"action": "deny"} if deny else {"sub": sub}, allow_redirects=False)
    assert r.status_code == 302, r.text
    return r.headers["Location"]


def callback_url(http: requests.Session, server, sub: str, next_url: str | None = "/web/jobs") -> str:
    return authorize(http, start(http, server, next_url).headers["Location"], sub)


def sign_in(http: requests.Session, server, sub: str, next_url: str | None = "/web/jobs") -> requests.Response:
    return http.get(callback_url(http, server, sub, next_url), allow_redirects=False)


def who(http: requests.Session, server) -> str | None:
    r = http.get(f"{server.url}/web/session")
    return r.json()["user"] if r.status_code == 200 else None


def has_session_cookie(r: requests.Response) -> bool:
    return any(c.startswith("opus_session=") and "Max-Age=0" not in c for c in _set_cookies(r))


def _set_cookies(r: requests.Response) -> list[str]:
    return r.raw.headers.get_all("Set-Cookie") if hasattr(r.raw.headers, "get_all") else \
        [v for k, v in r.raw.headers.items() if k.lower() == "set-cookie"]


# ---- signing in ----------------------------------------------------------------------------------------
def test_first_sign_in_creates_the_user_with_its_groups_and_roles(server, provider):
    provider.user("sub-alice", preferred_username="alice", groups=["editors", "astro"], email="alice@example.org")
    http = requests.Session()
    r = start(http, server)
    # To the provider: code flow, state, nonce, PKCE S256, our redirect URI, the openid scope.
    location = urlsplit(r.headers["Location"])
    assert f"{location.scheme}://{location.netloc}" == provider.url
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32 and "openid" in query["scope"].split()
    assert query["redirect_uri"] == f"{server.url}/web/signin/oidc/callback"
    cookie = next(c for c in _set_cookies(r) if c.startswith("opus_oidc="))
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/web/signin/oidc", "Max-Age=600"):
        assert attribute in cookie
    assert query["state"] not in cookie and query["nonce"] not in cookie.split(";")[0].split(".")[-1]
    done = http.get(authorize(http, r.headers["Location"], "sub-alice"), allow_redirects=False)
    assert done.status_code == 303 and done.headers["Location"] == f"{server.url}/web/jobs"
    assert has_session_cookie(done)
    assert who(http, server) == "alice"
    assert http.get(f"{server.url}/web/jobs").status_code == 200
    user = server.services.users.get("alice")
    assert user.enabled and user.is_editor and not user.is_admin and set(user.groups) == {"editors", "astro"}
    # No token is shown to a user made this way: the profile has its id only, to be replaced there.
    account = http.get(f"{server.url}/account").json()
    assert account["tokenId"] == user.token_id and "token" not in account
    # The groups are applied again at every sign-in: out of "editors", no more editor.
    provider.user("sub-alice", preferred_username="alice", groups=["astro"])
    assert sign_in(requests.Session(), server, "sub-alice").status_code == 303
    again = server.services.users.get("alice")
    assert not again.is_editor and set(again.groups) == {"astro"} and again.uid == user.uid
    # A provider's claim may hold names OPUS cannot use ("/a/b" paths) and more groups than a user may
    # have: the usable ones are kept (the first 100), the sign-in still works.
    many = ["/vo/astro/admins", "editors"] + [f"g{i:03d}" for i in range(150)]
    provider.user("sub-alice", preferred_username="alice", groups=many)
    assert sign_in(requests.Session(), server, "sub-alice").status_code == 303
    crowded = server.services.users.get("alice")
    assert len(crowded.groups) == 100 and "editors" in crowded.groups and crowded.is_editor
    assert "/vo/astro/admins" not in crowded.groups


def test_the_sign_in_page_offers_the_provider_only_when_configured(server, tmp_path):
    page = requests.get(f"{server.url}/web/signin?next=/web/jobs")
    assert f"Sign in with {NAME}" in page.text and "/web/signin/oidc?next=%2Fweb%2Fjobs" in page.text
    plain = LiveServer(make_settings(tmp_path / "plain"))
    try:
        assert "Sign in with" not in requests.get(f"{plain.url}/web/signin").text
        r = requests.get(f"{plain.url}/web/signin/oidc", allow_redirects=False)
        assert r.status_code == 404 and "not configured" in r.text
        assert requests.get(f"{plain.url}/web/signin/oidc/callback?code=x&state=y").status_code == 404
    finally:
        plain.stop()


def test_groups_give_admin_and_definitions(tmp_path, provider):
    srv = LiveServer(oidc_settings(tmp_path, provider, OIDC_JOBDEF_GROUPS={"astro": ["dummy"]}))
    try:
        provider.user("sub-dora", preferred_username="dora", groups=["admins"])
        provider.user("sub-eve", preferred_username="eve", groups="astro")  # one string is a list too
        assert sign_in(requests.Session(), srv, "sub-dora").status_code == 303
        assert sign_in(requests.Session(), srv, "sub-eve").status_code == 303
        dora, eve = srv.services.users.get("dora"), srv.services.users.get("eve")
        assert dora.is_admin and dora.jobdefs == set()
        assert not eve.is_admin and eve.jobdefs == {"dummy"} and set(eve.groups) == {"astro"}
    finally:
        srv.stop()


def test_without_user_creation_an_unknown_identity_is_refused(tmp_path, provider):
    srv = LiveServer(oidc_settings(tmp_path, provider, OIDC_CREATE_USERS=False))
    try:
        provider.user("sub-fred", preferred_username="fred")
        r = sign_in(requests.Session(), srv, "sub-fred")
        assert r.status_code == 403 and "no account" in r.text and not has_session_cookie(r)
        assert srv.services.users.get("fred") is None
    finally:
        srv.stop()


def test_the_provider_refusing_is_a_message_not_an_error(server, provider):
    http = requests.Session()
    back = authorize(http, start(http, server).headers["Location"], "", deny=True)
    assert "error=access_denied" in back
    r = http.get(back, allow_redirects=False)
    assert r.status_code == 401 and "cancelled or refused" in r.text and not has_session_cookie(r), (back, r.text[-1500:])


# ---- attacks -------------------------------------------------------------------------------------------
def test_a_callback_without_this_browsers_state_signs_nobody_in(server, provider):
    provider.user("sub-gina", preferred_username="gina")
    victim = requests.Session()
    url = callback_url(victim, server, "sub-gina")
    # No state cookie at all (another browser, cookies off).
    r = requests.get(url, allow_redirects=False)
    assert r.status_code == 400 and "another browser" in r.text and not has_session_cookie(r)
    # The state cookie of another browser's sign-in: its state is not this answer's.
    attacker = requests.Session()
    start(attacker, server)
    r = attacker.get(url, allow_redirects=False)
    assert r.status_code == 400 and "does not belong" in r.text and not has_session_cookie(r)
    # A forged state parameter with the right cookie; a forged cookie.
    query = parse_qs(urlsplit(url).query)
    forged = f"{server.url}/web/signin/oidc/callback?code={query['code'][0]}&state=forged"
    r = victim.get(forged, allow_redirects=False)
    assert r.status_code == 400 and not has_session_cookie(r)
    jar = victim.cookies.get_dict()
    tampered = requests.Session()
    tampered.cookies.set("opus_oidc", jar["opus_oidc"][:-4] + "AAAA", path="/web/signin/oidc")
    assert tampered.get(url, allow_redirects=False).status_code == 400
    # The victim's own browser still completes its sign-in with the unused code.
    r = victim.get(url, allow_redirects=False)
    assert r.status_code == 303 and who(victim, server) == "gina"


def test_a_replayed_callback_is_refused(server, provider):
    provider.user("sub-hank", preferred_username="hank")
    http = requests.Session()
    url = callback_url(http, server, "sub-hank")
    state_cookie = http.cookies.get_dict()["opus_oidc"]
    assert http.get(url, allow_redirects=False).status_code == 303
    replay = requests.Session()
    replay.cookies.set("opus_oidc", state_cookie, path="/web/signin/oidc")
    r = replay.get(url, allow_redirects=False)  # the same cookie and code again: the code was used
    assert r.status_code == 401 and "refused" in r.text and not has_session_cookie(r)
    assert who(replay, server) is None


@pytest.mark.parametrize("alteration, words", [
    (lambda c: {**c, "aud": "another-client"}, "aud"),
    (lambda c: {**c, "nonce": "not-the-nonce-sent"}, "nonce"),
    (lambda c: {**c, "iss": "https://idp.example.org"}, "iss"),
    (lambda c: {**c, "exp": c["iat"] - 3600, "iat": c["iat"] - 7200}, "exp"),
], ids=["another-client", "wrong-nonce", "another-issuer", "expired"])
def test_an_id_token_that_fails_a_check_signs_nobody_in(server, provider, alteration, words):
    provider.user("sub-ivy", preferred_username="ivy")
    provider.tamper = alteration
    http = requests.Session()
    r = sign_in(http, server, "sub-ivy")
    assert r.status_code == 401 and words in r.text and not has_session_cookie(r)
    assert who(http, server) is None and server.services.users.get("ivy") is None
    provider.tamper = lambda c: c  # the same path, re-signed but unaltered, is accepted
    assert sign_in(requests.Session(), server, "sub-ivy").status_code == 303


def test_an_id_token_signed_with_the_client_secret_is_refused(server, provider):
    provider.user("sub-jack", preferred_username="jack")
    provider.sign_hs256 = True
    r = sign_in(requests.Session(), server, "sub-jack")
    assert r.status_code == 401 and "ID token is not valid" in r.text and not has_session_cookie(r)


@pytest.mark.parametrize("next_url", ["https://evil.example.org/", "//evil.example.org/web/", "/\\evil.example.org",
                                      "javascript:alert(1)", "/rest/dummy"])
def test_next_never_leaves_the_web_client(server, provider, next_url):
    provider.user("sub-kim", preferred_username="kim")
    r = sign_in(requests.Session(), server, "sub-kim", next_url)
    assert r.status_code == 303 and r.headers["Location"] == f"{server.url}/web/"


def test_a_disabled_user_is_refused(server, provider):
    provider.user("sub-lea", preferred_username="lea")
    assert sign_in(requests.Session(), server, "sub-lea").status_code == 303
    server.services.users.update("lea", enabled=False)
    r = sign_in(requests.Session(), server, "sub-lea")
    assert r.status_code == 403 and "disabled" in r.text and not has_session_cookie(r)


def test_a_local_account_is_not_taken_over_until_an_admin_links_it(server, provider):
    UserAdmin(server.services.users).add("carol")
    local = server.services.users.get("carol")
    provider.user("sub-carol", preferred_username="carol", groups=["admins"])
    r = sign_in(requests.Session(), server, "sub-carol")
    assert r.status_code == 403 and "exists already" in r.text and "sub-carol" in r.text
    assert not has_session_cookie(r) and not server.services.users.get("carol").is_admin
    root = ("root", server.root_token)
    links = f"{server.url}/admin/users/carol/oidc"
    _, carol_token = UserAdmin(server.services.users).add("mallory")
    assert requests.post(links, json={"subject": "sub-carol"}, auth=("mallory", carol_token)).status_code == 403
    assert requests.post(links, json={}, auth=root).status_code == 400
    assert requests.post(f"{server.url}/admin/users/nobody/oidc", json={"subject": "x"}, auth=root).status_code == 404
    r = requests.post(links, json={"subject": "sub-carol"}, auth=root)
    assert r.status_code == 201 and r.json()["issuer"] == provider.url and r.json()["subject"] == "sub-carol"
    assert requests.post(links, json={"subject": "sub-carol"}, auth=root).status_code == 409
    assert [i["subject"] for i in requests.get(links, auth=root).json()["identities"]] == ["sub-carol"]
    http = requests.Session()
    assert sign_in(http, server, "sub-carol").status_code == 303 and who(http, server) == "carol"
    linked = server.services.users.get("carol")
    assert linked.uid == local.uid and linked.is_admin  # the same account, its roles from the groups claim
    r = requests.delete(links, params={"subject": "sub-carol"}, auth=root)
    assert r.status_code == 200 and requests.get(links, auth=root).json()["identities"] == []
    assert requests.delete(links, params={"subject": "sub-carol"}, auth=root).status_code == 404
    assert sign_in(requests.Session(), server, "sub-carol").status_code == 403


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_provider_that_cannot_be_reached_is_a_502_page(tmp_path, provider):
    srv = LiveServer(oidc_settings(tmp_path, provider, OIDC_ISSUER=f"http://127.0.0.1:{_closed_port()}"))
    try:
        r = requests.get(f"{srv.url}/web/signin/oidc?next=/web/jobs", allow_redirects=False)
        assert r.status_code == 502 and "could not be reached" in r.text and r.headers["Content-Type"].startswith(
            "text/html")
        assert 'id="signin-form"' in r.text  # the password form is still there
    finally:
        srv.stop()


def test_a_provider_gone_during_the_sign_in_is_a_502_at_the_callback(tmp_path, provider):
    gone = Provider()  # a provider of its own, stopped between the redirect and the callback
    srv = LiveServer(oidc_settings(tmp_path, gone))
    try:
        gone.user("sub-nina", preferred_username="nina")
        http = requests.Session()
        url = callback_url(http, srv, "sub-nina")
        gone.stop()
        r = http.get(url, allow_redirects=False)
        assert r.status_code == 502 and "could not be reached to complete" in r.text and not has_session_cookie(r)
    finally:
        srv.stop()


def test_a_provider_whose_metadata_names_another_issuer_is_a_502(tmp_path, provider):
    # "localhost" reaches the same provider, whose metadata then says "http://localhost:<port>": not OIDC_ISSUER.
    issuer = provider.url.replace("127.0.0.1", "localhost") + "/"
    srv = LiveServer(oidc_settings(tmp_path, provider, OIDC_ISSUER=issuer))
    try:
        r = requests.get(f"{srv.url}/web/signin/oidc", allow_redirects=False)
        assert r.status_code == 502 and "names the issuer" in r.text
    finally:
        srv.stop()


# ---- the pieces --------------------------------------------------------------------------------------
def test_settings_are_checked_at_start(tmp_path):
    for values, words in [
        ({"OIDC_ISSUER": "https://idp.example.org"}, "OIDC_CLIENT_ID"),
        ({"OIDC_ISSUER": "http://idp.example.org", "OIDC_CLIENT_ID": "x"}, "https"),
        ({"OIDC_ISSUER": "https://idp.example.org", "OIDC_CLIENT_ID": "x", "OIDC_JOBDEF_GROUPS": {"g": "dummy"}},
         "OIDC_JOBDEF_GROUPS"),
        ({"OIDC_ISSUER": "https://idp.example.org", "OIDC_CLIENT_ID": "x", "OIDC_ADMIN_GROUPS": ["a b"]},
         "OIDC_ADMIN_GROUPS"),
    ]:
        with pytest.raises(ConfigurationError, match=words):
            load_settings(None, DATA_DIR=str(tmp_path), **values)
    assert load_settings(None, DATA_DIR=str(tmp_path), OIDC_ISSUER="https://idp.example.org/realms/x",
                         OIDC_CLIENT_ID="opus").OIDC_SCOPES == ("openid", "profile", "email")


def test_the_state_cookie_is_signed_and_expires(tmp_path):
    settings = load_settings(None, DATA_DIR=str(tmp_path))
    pending = oidc.new_pending("/web/jobs")
    value = oidc.seal(settings, pending)
    assert oidc.unseal(settings, value) == pending
    assert oidc.unseal(settings, value, now=pending.issued + oidc.STATE_LIFETIME + 1) is None
    payload, mac = value.split(".")
    other = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    other["next_url"] = "https://evil.example.org/"
    forged = base64.urlsafe_b64encode(json.dumps(other).encode()).decode().rstrip("=") + "." + mac
    assert oidc.unseal(settings, forged) is None
    assert oidc.unseal(settings, None) is None and oidc.unseal(settings, "junk") is None
    other_server = load_settings(None, DATA_DIR=str(tmp_path / "other"))
    assert oidc.unseal(other_server, value) is None  # another server secret


def test_a_site_without_single_sign_on_does_not_load_authlib(tmp_path):
    """Authlib and joserfc take about 18 MB a worker: only the first single sign-on loads them."""
    code = ("import sys\nfrom opus.server.app import create_app\nfrom opus.settings import Settings\n"
            f"create_app(Settings(DATA_DIR={str(tmp_path / 'var')!r}), start=False)\n"
            "loaded = sorted(m for m in ('authlib', 'joserfc', 'cryptography') if m in sys.modules)\n"
            "assert not loaded, loaded\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
