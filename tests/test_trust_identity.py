"""Identity across the trust boundary (issue 11, findings 5 and 6): what a wrong credential costs, sign-in
throttling, no echo of credentials in a 401, and ownership by a user id that is never reused.

Every test performs the attack through HTTP against a live in-process server.  Costs are counted, not
timed: the one keyed hash of a presented token (``opus.auth.users.keyed_token_hash``) and PBKDF2
(``hashlib.pbkdf2_hmac``) are wrapped with counters for the duration of a request.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import secrets
import sys
from urllib.parse import urlsplit

import pytest
import requests
from conftest import ApiServer, LiveServer, make_settings, run_job, signed_in_sessions

from opus.auth import users as users_module
from opus.auth.users import hash_token
# ---- helpers ------------------------------------------------------------------------------------------------
def basic(name: str, token: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{token}".encode()).decode()}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def raw_get(server, path: str, headers: dict, source: str = "127.0.0.1") -> tuple[int, dict, bytes]:
    """GET over a connection made from the local address ``source`` (127.0.0.x all reach the server)."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class Counters:
    """Counts keyed token hashes and PBKDF2 runs while installed."""

    def __init__(self, monkeypatch):
        self.keyed = 0
        self.pbkdf2 = 0
        keyed = getattr(users_module, "keyed_token_hash", None)
        pbkdf2 = hashlib.pbkdf2_hmac

        def counted_keyed(*args, **kwargs):
            self.keyed += 1
            return keyed(*args, **kwargs)

        def counted_pbkdf2(*args, **kwargs):
            self.pbkdf2 += 1
            return pbkdf2(*args, **kwargs)

        monkeypatch.setattr(users_module, "keyed_token_hash", counted_keyed, raising=False)
        monkeypatch.setattr(hashlib, "pbkdf2_hmac", counted_pbkdf2)

    def reset(self) -> None:
        self.keyed = self.pbkdf2 = 0


def admin_of(server):
    from opus.auth.admin import UserAdmin
    return UserAdmin(server.services.users)


@pytest.fixture
def secured(tmp_path):
    """No anonymous access, users root (admin), alice and bob; throttling out of the way."""
    server = ApiServer(make_settings(tmp_path, ALLOW_ANONYMOUS=False, SIGNIN_MAX_FAILURES_PER_NAME=0,
                                      SIGNIN_MAX_FAILURES_PER_ADDRESS=0))
    server.tokens = {}
    for name, kwargs in (("root", {"admin": True}), ("alice", {}), ("bob", {})):
        _, server.tokens[name] = admin_of(server).add(name, **kwargs)
    yield server
    server.stop()


def signin_form_field(http: requests.Session, url: str) -> str:
    import re

    r = http.get(f"{url}/web/signin")
    assert r.status_code == 200
    return re.search(r'name="_csrf" value="([^"]+)"', r.text).group(1)


# ---- finding 5: what a wrong credential costs ----------------------------------------------------------------
WRONG = {
    "basic, existing user, wrong token": lambda t: basic("alice", t["alice"][:-4] + "AAAA"),
    "basic, unknown user": lambda t: basic("nobody", t["alice"]),
    "basic, disabled-looking garbage name": lambda t: basic("../../etc", "x"),
    "bearer, existing token id, wrong secret": lambda t: bearer(t["alice"].split(".")[0] + ".wrong"),
    "bearer, unknown token id": lambda t: bearer("0123456789abcdef." + secrets.token_urlsafe(32)),
    "bearer, no token id": lambda t: bearer("garbage"),
    "malformed basic": lambda t: {"Authorization": "Basic !!!"},
    "unknown scheme": lambda t: {"Authorization": "Digest username=alice"},
    "no scheme at all": lambda t: {"Authorization": t["alice"]},
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_a_wrong_credential_costs_exactly_one_keyed_hash_and_no_pbkdf2(secured, monkeypatch, case):
    count = Counters(monkeypatch)
    headers = WRONG[case](secured.tokens)
    for _ in range(3):
        count.reset()
        r = requests.get(f"{secured.url}/rest/dummy", headers=headers)
        assert r.status_code == 401, r.text
        assert (count.keyed, count.pbkdf2) == (1, 0), case


def test_a_right_token_costs_one_keyed_hash_and_pbkdf2_is_never_run_for_new_tokens(secured, monkeypatch):
    count = Counters(monkeypatch)
    stored = secured.services.users.get("alice").token_hash
    assert stored.startswith("hmac_sha256$") and secured.tokens["alice"] not in stored
    for headers in (basic("alice", secured.tokens["alice"]), bearer(secured.tokens["alice"])):
        for _ in range(2):
            count.reset()
            assert requests.get(f"{secured.url}/rest/dummy", headers=headers).status_code == 200
            assert (count.keyed, count.pbkdf2) == (1, 0)
    # A token made now (admin API) is stored keyed too: no PBKDF2 anywhere.
    count.reset()
    root = basic("root", secured.tokens["root"])
    token = requests.post(f"{secured.url}/admin/users/bob/token", headers=root).json()["token"]
    assert requests.get(f"{secured.url}/rest/dummy", headers=bearer(token)).status_code == 200
    assert count.pbkdf2 == 0


def test_a_legacy_pbkdf2_hash_is_checked_once_then_replaced_by_the_keyed_hash(secured, monkeypatch):
    users = secured.services.users
    token = secured.tokens["bob"]
    users.update("bob", token_hash=hash_token(token, iterations=1000))  # as stored before this change
    count = Counters(monkeypatch)
    # A wrong token does not replace anything.
    assert requests.get(f"{secured.url}/rest/dummy", headers=basic("bob", token + "x")).status_code == 401
    assert users.get("bob").token_hash.startswith("pbkdf2_sha256$")
    count.reset()
    assert requests.get(f"{secured.url}/rest/dummy", headers=basic("bob", token)).status_code == 200
    assert count.pbkdf2 == 1
    assert users.get("bob").token_hash.startswith("hmac_sha256$")
    count.reset()
    for headers in (basic("bob", token), bearer(token)):
        assert requests.get(f"{secured.url}/rest/dummy", headers=headers).status_code == 200
    assert (count.keyed, count.pbkdf2) == (2, 0)


def test_the_sign_in_form_costs_one_keyed_hash_too(secured, monkeypatch):
    count = Counters(monkeypatch)
    http_session = requests.Session()
    field = signin_form_field(http_session, secured.url)
    for name in ("alice", "nobody"):
        count.reset()
        r = http_session.post(f"{secured.url}/web/signin", data={"name": name, "token": "wrong", "_csrf": field},
                              allow_redirects=False)
        assert r.status_code == 401
        assert (count.keyed, count.pbkdf2) == (1, 0), name


# ---- finding 5: throttling ---------------------------------------------------------------------------------------
def test_failed_sign_ins_are_throttled_per_user_name(tmp_path, monkeypatch):
    server = ApiServer(make_settings(tmp_path, ALLOW_ANONYMOUS=False, SIGNIN_MAX_FAILURES_PER_NAME=3,
                                      SIGNIN_MAX_FAILURES_PER_ADDRESS=0, SIGNIN_FAILURE_WINDOW=120))
    try:
        tokens = {n: admin_of(server).add(n)[1] for n in ("alice", "bob")}
        count = Counters(monkeypatch)
        url = f"{server.url}/rest/dummy"
        for _ in range(3):
            assert requests.get(url, headers=basic("alice", "wrong")).status_code == 401
        count.reset()
        r = requests.get(url, headers=basic("alice", "wrong"))
        assert r.status_code == 429, r.text
        assert 0 < int(r.headers["Retry-After"]) <= 120
        assert (count.keyed, count.pbkdf2) == (0, 0)  # a throttled request costs no hash at all
        # The name stays throttled for the window, whatever the token, over Basic and the sign-in form.
        assert requests.get(url, headers=basic("alice", tokens["alice"])).status_code == 429
        http_session = requests.Session()
        field = signin_form_field(http_session, server.url)
        r = http_session.post(f"{server.url}/web/signin", allow_redirects=False,
                              data={"name": "alice", "token": tokens["alice"], "_csrf": field})
        assert r.status_code == 429 and "Retry-After" in r.headers
        # Another name from the same address is not affected, nor alice's Bearer token (bucketed by token id,
        # which a stranger who only knows her name cannot lock out).
        assert requests.get(url, headers=basic("bob", tokens["bob"])).status_code == 200
        assert requests.get(url, headers=bearer(tokens["alice"])).status_code == 200
        # Unknown names are throttled alike: a 429 does not tell which names exist.
        for _ in range(3):
            assert requests.get(url, headers=basic("nobody", "x")).status_code == 401
        assert requests.get(url, headers=basic("nobody", "x")).status_code == 429
        # Bearer failures count against the token id they name.
        wrong_bearer = bearer(tokens["bob"].split(".")[0] + ".wrong")
        for _ in range(3):
            assert requests.get(url, headers=wrong_bearer).status_code == 401
        assert requests.get(url, headers=wrong_bearer).status_code == 429
        assert requests.get(url, headers=bearer(tokens["bob"])).status_code == 429
        assert requests.get(url, headers=basic("bob", tokens["bob"])).status_code == 200
    finally:
        server.stop()


def test_failed_sign_ins_are_throttled_per_client_address_not_per_forwarded_header(tmp_path):
    server = LiveServer(make_settings(tmp_path, ALLOW_ANONYMOUS=False, SIGNIN_MAX_FAILURES_PER_NAME=0,
                                      SIGNIN_MAX_FAILURES_PER_ADDRESS=4, SIGNIN_FAILURE_WINDOW=120))
    try:
        _, token = admin_of(server).add("alice")
        path = "/rest/dummy"
        attempts = [basic("u1", "x"), bearer("garbage"), {"Authorization": "Digest x"}, basic("u2", "x")]
        for headers in attempts:
            assert raw_get(server, path, headers)[0] == 401
        status, headers, _ = raw_get(server, path, {**basic("u3", "x"), "X-Forwarded-For": "198.51.100.7"})
        assert status == 429 and 0 < int(headers["retry-after"]) <= 120
        assert raw_get(server, path, {**basic("alice", token), "X-Real-IP": "198.51.100.8"})[0] == 429
        # Another client address (REMOTE_ADDR from the WSGI server) is not throttled.
        assert raw_get(server, path, basic("alice", token), source="127.0.0.2")[0] == 200
        assert raw_get(server, path, basic("u4", "x"), source="127.0.0.2")[0] == 401
        # The sign-in form shares the per-address count.
        http_session = requests.Session()
        field = signin_form_field(http_session, server.url)
        r = http_session.post(f"{server.url}/web/signin", allow_redirects=False,
                              data={"name": "alice", "token": token, "_csrf": field})
        assert r.status_code == 429
    finally:
        server.stop()


# ---- finding 6: no echo of credentials --------------------------------------------------------------------------
def test_a_401_never_echoes_the_credentials_or_the_authorization_header(secured):
    canary = "opus-canary-" + secrets.token_hex(8)  # lower case: a lower-cased echo is caught too
    sent = [
        {"Authorization": canary},
        {"Authorization": f"{canary} {canary}"},
        {"Authorization": f"Digest {canary}"},
        {"Authorization": f"Basic {canary}"},
        {"Authorization": "Basic " + base64.b64encode(canary.encode()).decode()},
        basic(canary, canary),
        basic("alice", canary),
        bearer(canary),
        bearer(secured.tokens["alice"].split(".")[0] + "." + canary),
    ]
    b64 = base64.b64encode(canary.encode()).decode().rstrip("=")
    for headers in sent:
        for path, accept in (("/rest/dummy", "text/plain"), ("/rest/dummy", "application/json"),
                             ("/web/jobs", "text/html"), ("/admin/users", "application/json")):
            r = requests.get(f"{secured.url}{path}", headers={**headers, "Accept": accept})
            assert r.status_code == 401, (headers, path)
            seen = r.text.lower() + " ".join(f"{k}: {v}" for k, v in r.headers.items()).lower()
            assert canary not in seen and b64.lower() not in seen, (headers, path, r.text)
            assert headers["Authorization"].lower() not in seen


# ---- finding 6: ownership by an id that is never reused ---------------------------------------------------------
def test_a_recreated_user_name_does_not_inherit_the_deleted_users_jobs_or_entities(tmp_path):
    server = ApiServer(make_settings(tmp_path, ALLOW_ANONYMOUS=False))
    try:
        as_ = signed_in_sessions(server)
        root = as_["root"]
        old_url = run_job(as_["alice"], server.url, "dummy", {"text": "old alice's secret"})
        old_job = old_url.rsplit("/", 1)[1]
        results = as_["alice"].get(old_url + "/results", headers={"Accept": "application/json"}).json()
        entity = next(r["entity"] for r in results if r["id"] == "output")
        pending = as_["alice"].post(f"{server.url}/rest/dummy", data={"text": "x"}, allow_redirects=False)
        pending_url = pending.headers["Location"]
        old_id = root.get(f"{server.url}/admin/users/alice").json().get("id")

        assert root.delete(f"{server.url}/admin/users/alice").status_code == 200
        r = root.post(f"{server.url}/admin/users", json={"name": "alice", "maxActiveJobs": 1})
        assert r.status_code == 201
        new_id = r.json().get("id")
        new = requests.Session()
        new.auth = ("alice", r.json()["token"])

        # The old token is dead, and the new alice reaches nothing of the old one.
        assert as_["alice"].get(f"{server.url}/rest/dummy").status_code == 401
        for url in (old_url, old_url + "/results", old_url + "/parameters", old_url + "/phase", pending_url,
                    old_url + "/provenance"):
            got = new.get(url)
            assert got.status_code in (403, 404), (url, got.status_code)
            assert "secret" not in got.text
        assert new.delete(old_url, allow_redirects=False).status_code in (403, 404)
        assert old_job not in new.get(f"{server.url}/rest/dummy").text
        assert old_job not in new.get(f"{server.url}/rest/dummy", headers={"Accept": "application/json"}).text
        for url in (f"{server.url}/store/{entity}", f"{server.url}/store?ID={entity}",
                    f"{server.url}/store/{entity}/output.txt"):
            assert new.get(url).status_code in (403, 404), url
        prov = new.get(f"{server.url}/provsap", params={"ID": [old_job, entity], "RESPONSEFORMAT": "json"})
        assert old_job not in prov.text and entity not in prov.text
        # Using the old alice's result as an input is refused too.
        r = new.post(f"{server.url}/rest/copy", data={"infile": f"{server.url}/store/{entity}/output.txt"},
                     allow_redirects=False)
        assert r.status_code == 403, r.text
        # The quota counts the new alice's jobs only (the old alice's PENDING job is not hers).
        assert new.post(f"{server.url}/rest/dummy", data={"text": "y"}, allow_redirects=False).status_code == 303

        # An admin still sees the old jobs and their files; they keep the old name for display.
        r = root.get(old_url)
        assert r.status_code == 200 and "<uws:ownerId>alice</uws:ownerId>" in r.text
        assert root.get(f"{server.url}/store/{entity}/output.txt").status_code == 200
        assert old_job in root.get(f"{server.url}/rest/dummy").text
        # The admin API shows each account's id: the new alice is another account.
        assert isinstance(old_id, int) and isinstance(new_id, int) and new_id != old_id
    finally:
        server.stop()


def test_user_ids_are_never_reused_even_for_the_newest_user(secured):
    root = basic("root", secured.tokens["root"])
    url = f"{secured.url}/admin/users"
    ids = {u["name"]: u["id"] for u in requests.get(url, headers=root).json()["users"]}
    assert len(set(ids.values())) == 3
    carol = requests.post(url, json={"name": "carol"}, headers=root).json()["id"]
    assert requests.delete(f"{url}/carol", headers=root).status_code == 200
    dave = requests.post(url, json={"name": "dave"}, headers=root).json()["id"]
    again = requests.post(url, json={"name": "carol"}, headers=root).json()["id"]
    assert len({carol, dave, again, *ids.values()}) == 6


def test_front_end_users_without_a_stored_user_own_their_jobs_by_their_front_end_name(tmp_path):
    server = ApiServer(make_settings(tmp_path, ALLOW_ANONYMOUS=True, AUTH_REMOTE_USER=True))

    def call(method: str, path: str, remote_user: str | None, body: bytes = b"") -> tuple[str, dict]:
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.url_scheme": "http", "HTTP_HOST": "localhost",
                   "SERVER_NAME": "localhost", "SERVER_PORT": "80", "wsgi.input": io.BytesIO(body), "QUERY_STRING": "",
                   "wsgi.errors": sys.stderr, "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
                   "CONTENT_TYPE": "application/x-www-form-urlencoded"}
        if remote_user:
            environ["REMOTE_USER"] = remote_user
        out: list = []
        chunks = server.app(environ, lambda s, h, exc_info=None: out.append((s, dict(h))))
        b"".join(chunks)
        return out[0][0], out[0][1]

    try:
        status, headers = call("POST", "/rest/dummy", "dave", b"text=x")
        assert status.startswith("303")
        job = headers["Location"].rsplit("/", 1)[1]
        assert call("GET", f"/rest/dummy/{job}", "dave")[0].startswith("200")
        assert call("GET", f"/rest/dummy/{job}", "erin")[0].startswith("403")
        assert call("GET", f"/rest/dummy/{job}", None)[0].startswith("403")  # anonymous is not dave
        # A stored user created later under that name is a new account: it does not inherit dave's jobs.
        _, token = admin_of(server).add("dave")
        assert call("GET", f"/rest/dummy/{job}", "dave")[0].startswith("403")
        assert requests.get(f"{server.url}/rest/dummy/{job}", headers=bearer(token)).status_code == 403
    finally:
        server.stop()


def test_the_migration_moves_ownership_from_names_to_ids(tmp_path, database_url):
    """A database of the previous schema (owners by name, PBKDF2 tokens), upgraded: stored users' rows
    belong to their ids, other names to front-end identities; the old tokens still work, once slowly."""
    from datetime import datetime

    from sqlalchemy import text

    from opus.storage import create_engine_for, upgrade_schema
    engine = create_engine_for(database_url)
    upgrade_schema(engine, "0004")
    token = "0123456789abcdef." + secrets.token_urlsafe(32)
    now = datetime(2025, 1, 1)
    with engine.begin() as conn:
        for name, token_id, is_admin in (("root", "fedcba9876543210", True), ("alice", "0123456789abcdef", False)):
            conn.execute(text("INSERT INTO users (name, token_id, token_hash, is_admin, enabled, jobdefs, created) "
                              "VALUES (:n, :i, :h, :a, :e, '*', :c)"),
                         {"n": name, "i": token_id, "h": hash_token(token, iterations=1000), "a": is_admin, "e": True,
                          "c": now})
        for job_id, owner in (("00000000000000a1", "alice"), ("00000000000000a2", "ghost"),
                              ("00000000000000a3", None)):
            conn.execute(text("INSERT INTO jobs (job_id, jobname, phase, creation_time, execution_duration, "
                              "error_has_detail, owner_id) VALUES (:j, 'dummy', 'PENDING', :c, 60, :f, :o)"),
                         {"j": job_id, "c": now, "f": False, "o": owner})
            conn.execute(text("INSERT INTO entities (entity_id, sha256, size, content_type, file_name, owner_id, "
                              "role, created) VALUES (:e, 'x', 1, 'text/plain', 'f.txt', :o, 'r', :c)"),
                         {"e": job_id.replace("a", "e"), "o": owner, "c": now})
    upgrade_schema(engine)
    with engine.connect() as conn:
        uids = dict(conn.execute(text("SELECT name, uid FROM users")).all())
        jobs = dict(conn.execute(text("SELECT job_id, owner_key FROM jobs")).all())
        ents = dict(conn.execute(text("SELECT entity_id, owner_key FROM entities")).all())
        names = dict(conn.execute(text("SELECT job_id, owner_id FROM jobs")).all())
    engine.dispose()
    assert len(set(uids.values())) == 2
    assert jobs == {"00000000000000a1": f"user:{uids['alice']}", "00000000000000a2": "remote:ghost",
                    "00000000000000a3": None}
    assert ents == {"00000000000000e1": f"user:{uids['alice']}", "00000000000000e2": "remote:ghost",
                    "00000000000000e3": None}
    assert names["00000000000000a1"] == "alice"  # the name stays, for display (UWS ownerId)

    server = ApiServer(make_settings(tmp_path, DATABASE_URL=database_url, ALLOW_ANONYMOUS=False))
    try:
        url = f"{server.url}/rest/dummy"
        assert requests.get(f"{url}/00000000000000a1", headers=basic("alice", token)).status_code == 200
        assert server.services.users.get("alice").token_hash.startswith("hmac_sha256$")
        assert requests.get(f"{url}/00000000000000a1", headers=bearer(token)).status_code == 200
        assert requests.get(f"{url}/00000000000000a2", headers=bearer(token)).status_code == 403
        # A new user gets an id never given before.
        user, _ = admin_of(server).add("carol")
        assert user.uid not in uids.values()
    finally:
        server.stop()


def test_the_throttle_window_ipv6_blocks_success_and_its_memory_bound():
    """The counting itself (opus.auth.throttle), on a fake clock."""
    from opus.auth.throttle import SignInThrottle, address_key
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.7") == address_key("192.0.2.7") == "addr:192.0.2.7"
    assert address_key(None) is None and address_key("") is None
    now = [1000.0]
    t = SignInThrottle(60, per_name=3, per_address=5, max_keys=50, clock=lambda: now[0])
    t.failed("name:alice", "addr:a")
    t.failed("name:alice", "addr:a")
    t.succeeded("name:alice")  # a success clears its name, not its address
    t.failed("name:alice", "addr:a")
    t.failed("name:alice", "addr:a")
    assert t.retry_after("name:alice", "addr:a") is None  # two failures for alice, four for the address
    assert t.failed("name:carol", "addr:a") == ["addr:a"]  # the address's fifth failure
    assert t.retry_after("name:bob", "addr:a") == 60  # any name from that address waits
    now[0] += 30
    assert t.failed("name:alice", None) == ["name:alice"]  # alice's third in the window
    assert t.retry_after("name:alice", None) == 30 and t.retry_after(None, "addr:a") == 30
    now[0] += 31  # the window slides past the first failures
    assert t.retry_after("name:alice", "addr:a") is None
    assert t.failed("name:alice", None) == []  # two in the window again
    for i in range(200):  # a spray of names: memory stays bounded, the newest are kept
        t.failed(f"name:n{i}", None)
    assert len(t._failures) <= 50 and "name:n199" in t._failures
    off = SignInThrottle(60, per_name=0, per_address=0)
    for _ in range(100):
        off.failed("name:x", "addr:y")
    assert off.retry_after("name:x", "addr:y") is None
