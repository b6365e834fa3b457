"""The access matrix: every route of the application x every kind of caller.

Callers: the job's owner, another signed-in user, an anonymous caller, an admin, and a caller with
a wrong token.  For each route the table says what an allowed caller gets; who is allowed follows
from the route's kind:

* ``public``    VOSI and the OpenAPI document: anyone, whatever credentials it sends;
* ``callback``  the wrapper callback: public, but only the job's HMAC token counts (403 without);
* ``signed_in`` any authenticated caller (anonymous ones too when ALLOW_ANONYMOUS);
* ``job``       a job and everything under it: its owner and admins; 403 for anyone else;
* ``user``      signed-in users (never anonymous callers: 401);
* ``proposal``  a proposed job definition: the user who proposed it (alice) and admins; 403 for
                other users, 401 for anonymous callers;
* ``editor``    users with the editor role (alice) and admins: 403 for other users, 401 for anonymous;
* ``admin``     admins only: 403 for users, 401 for anonymous callers.

Wrong credentials are always a 401, and anonymous callers get 401 when ALLOW_ANONYMOUS is False.
Every refused request must change nothing and show nothing of the owner's (a secret parameter
value, the owner's name, the owner's job ids in lists, the job's callback token).

The table is checked against ``app.routes``: a route added without a row fails the test.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from conftest import REPO_ROOT, LiveServer, make_settings
from helpers import wait_final

from opus.auth.identity import job_token, server_secret
from opus.auth.admin import UserAdmin
from opus.server import compat_routes
from opus.server.urls import ENTITY_RULE
JOB = "/rest/<jobname>/<job_id>"
ROLES = ("alice", "bob", "anonymous", "root", "wrong")


@dataclass(frozen=True)
class Row:
    """One request of the matrix.  ``path`` may hold {job} (the job's path) and {victim}."""

    method: str
    rule: str
    kind: str
    path: str
    ok: int = 200            # status for an allowed caller
    job: str = "done"        # job rows: the owner's "done" (COMPLETED), "error" (ERROR) or "pending" job
    fresh: bool = False      # changes the job: allowed callers act on a fresh PENDING job of the owner
    data: dict | None = None
    json: dict | None = None
    body: bytes | None = None
    params: dict | None = None
    accept: str = ""            # an Accept header (the JSON representations)
    fresh_victim: bool = False  # admin rows that change a user: allowed callers act on a fresh user
    has_secret: bool = False    # an allowed caller's answer must show the owner's secret (positive control)
    fresh_jdl: str = ""         # "proposal"/"live": allowed callers act on a fresh proposal or definition {jdl}


ROWS = [
    # ---- public -----------------------------------------------------------------------------------
    Row("GET", "/availability", "public", "/availability"),
    Row("GET", "/capabilities", "public", "/capabilities"),
    Row("GET", "/openapi.json", "public", "/openapi.json"),
    Row("POST", "/handler/job_event", "callback", "/handler/job_event", ok=403),
    # ---- any signed-in caller ------------------------------------------------------------------------
    Row("GET", "/", "signed_in", "/"),
    Row("GET", "/jdl", "signed_in", "/jdl"),
    Row("GET", "/jdl/<name>", "signed_in", "/jdl/dummy"),
    Row("GET", "/jdl/<name>", "signed_in", "/jdl/dummy", params={"format": "json"}),
    Row("GET", "/jdl/<name>/versions", "signed_in", "/jdl/dummy/versions"),
    # ---- job definitions: proposals and their administration ----------------------------------------------
    Row("GET", "/jdl/proposals", "user", "/jdl/proposals"),
    # Proposing needs the editor role (or admin): alice has it (make_world), bob has not.
    Row("POST", "/jdl", "editor", "/jdl", ok=201, json={"name": "{new}", "script": "true\n", "version": "1"}),
    Row("GET", "/jdl/proposals/<name>", "proposal", "/jdl/proposals/propdef"),
    Row("DELETE", "/jdl/proposals/<name>", "proposal", "/jdl/proposals/{jdl}", ok=303, fresh_jdl="proposal"),
    Row("POST", "/jdl/proposals/<name>", "proposal", "/jdl/proposals/{jdl}", ok=303, fresh_jdl="proposal",
        data={"ACTION": "DELETE"}),
    Row("POST", "/jdl/proposals/<name>/validate", "admin", "/jdl/proposals/{jdl}/validate", ok=303,
        fresh_jdl="proposal", params={"digest": "{digest}"}),
    Row("DELETE", "/jdl/<name>", "admin", "/jdl/{jdl}", ok=303, fresh_jdl="live"),
    Row("POST", "/jdl/<name>", "admin", "/jdl/{jdl}", ok=303, fresh_jdl="live", data={"ACTION": "DELETE"}),
    Row("GET", "/rest/<jobname>", "signed_in", "/rest/dummy"),
    Row("GET", "/rest/<jobname>", "signed_in", "/rest/dummy", params={"PHASE": "COMPLETED"}),
    Row("GET", "/rest/<jobname>", "signed_in", "/rest/dummy", accept="application/json"),
    Row("POST", "/rest/<jobname>", "signed_in", "/rest/dummy", ok=303, data={"text": "mine"}),
    # ---- one job and its children --------------------------------------------------------------------
    Row("GET", JOB, "job", "{job}", has_secret=True),
    Row("GET", JOB, "job", "{job}", accept="application/json", has_secret=True),
    Row("GET", JOB, "job", "{job}", job="pending", params={"WAIT": "1", "PHASE": "QUEUED"}, has_secret=True),
    Row("DELETE", JOB, "job", "{job}", ok=303, job="pending", fresh=True),
    Row("POST", JOB, "job", "{job}", ok=303, job="pending", fresh=True, data={"PHASE": "ABORT"}),
    Row("POST", JOB, "job", "{job}", ok=303, job="pending", fresh=True, data={"ACTION": "DELETE"}),
    Row("POST", JOB, "job", "{job}", ok=303, job="pending", fresh=True, data={"text": "changed"}),
    Row("POST", JOB, "job", "{job}", ok=403, data={"text": "changed"}),
    Row("GET", JOB + "/phase", "job", "{job}/phase"),
    Row("POST", JOB + "/phase", "job", "{job}/phase", ok=303, job="pending", fresh=True, data={"PHASE": "RUN"}),
    Row("POST", JOB + "/phase", "job", "{job}/phase", ok=303, job="pending", fresh=True, data={"PHASE": "ABORT"}),
    Row("POST", JOB + "/phase", "job", "{job}/phase", ok=403, data={"PHASE": "RUN"}),
    Row("GET", JOB + "/executionduration", "job", "{job}/executionduration"),
    Row("POST", JOB + "/executionduration", "job", "{job}/executionduration", ok=303, job="pending", fresh=True,
        data={"EXECUTIONDURATION": "30"}),
    Row("POST", JOB + "/executionduration", "job", "{job}/executionduration", ok=403, data={"EXECUTIONDURATION": "30"}),
    Row("GET", JOB + "/destruction", "job", "{job}/destruction"),
    Row("POST", JOB + "/destruction", "job", "{job}/destruction", ok=303, job="pending", fresh=True,
        data={"DESTRUCTION": "2031-01-01T00:00:00Z"}),
    Row("GET", JOB + "/quote", "job", "{job}/quote"),
    Row("GET", JOB + "/owner", "job", "{job}/owner"),
    Row("GET", JOB + "/error", "job", "{job}/error", job="error", has_secret=True),
    Row("GET", JOB + "/error", "job", "{job}/error", ok=404),
    Row("GET", JOB + "/parameters", "job", "{job}/parameters", has_secret=True),
    Row("GET", JOB + "/parameters", "job", "{job}/parameters", accept="application/json", has_secret=True),
    Row("POST", JOB + "/parameters", "job", "{job}/parameters", ok=303, job="pending", fresh=True,
        data={"text": "changed"}),
    Row("POST", JOB + "/parameters", "job", "{job}/parameters", ok=403, data={"text": "changed"}),
    Row("GET", JOB + "/parameters/<name>", "job", "{job}/parameters/text", has_secret=True),
    Row("GET", JOB + "/parameters/<name>", "job", "{job}/parameters/nosuch", ok=404),
    Row("PUT", JOB + "/parameters/<name>", "job", "{job}/parameters/text", ok=303, job="pending", fresh=True,
        body=b"changed"),
    Row("PUT", JOB + "/parameters/<name>", "job", "{job}/parameters/text", ok=403, body=b"changed"),
    Row("GET", JOB + "/results", "job", "{job}/results"),
    Row("GET", JOB + "/results/<result_id>", "job", "{job}/results/output", has_secret=True),
    Row("GET", JOB + "/results/<result_id>", "job", "{job}/results/nosuch", ok=404),
    Row("GET", JOB + "/stdout", "job", "{job}/stdout"),
    Row("GET", JOB + "/stderr", "job", "{job}/stderr", job="error", has_secret=True),
    Row("GET", JOB + "/progress", "job", "{job}/progress"),
    # ---- the original OPUS's URLs (opus.server.compat_routes): the same rules as what replaces them ------
    Row("GET", JOB + "/prov<kind:re:json|xml|svg>", "job", "{job}/provjson", ok=301),
    Row("POST", JOB + "/parameters/<name>", "job", "{job}/parameters/text", ok=303, job="pending", fresh=True,
        data={"VALUE": "changed"}),
    Row("POST", JOB + "/parameters/<name>", "job", "{job}/parameters/text", ok=403, data={"VALUE": "changed"}),
    Row("GET", "/jdl/<name>/json", "signed_in", "/jdl/dummy/json"),
    Row("GET", "/jdl/<name>/script", "signed_in", "/jdl/dummy/script"),
    # ---- the result store: an entity follows its job's owner ---------------------------------------------
    Row("GET", "/store", "job", "/store", params={"ID": "{entity}"}, has_secret=True),
    Row("GET", ENTITY_RULE, "job", "/store/{entity}"),
    Row("GET", ENTITY_RULE + "/<file_name>", "job", "/store/{entity}/output.txt",
        has_secret=True),
    # ---- provenance: a job's (its owner and admins), ProvSAP (anyone, showing only what they may see) ------
    Row("GET", JOB + "/provenance", "job", "{job}/provenance", has_secret=True),
    Row("GET", JOB + "/provenance", "job", "{job}/provenance", params={"format": "provn", "DEPTH": "ALL"},
        has_secret=True),
    Row("GET", "/provsap", "signed_in", "/provsap", params={"ID": "{entity}", "DEPTH": "ALL"}, has_secret=True),
    Row("GET", "/provsap", "signed_in", "/provsap", params={"ID": "{entity}", "DIRECTION": "FORTH",
                                                            "RESPONSEFORMAT": "votable"}),
    # ---- the admin API -----------------------------------------------------------------------------------
    Row("GET", "/admin/users", "admin", "/admin/users"),
    Row("POST", "/admin/users", "admin", "/admin/users", ok=201, json={"name": "{new}"}),
    Row("GET", "/admin/users/<name>", "admin", "/admin/users/{victim}"),
    Row("PATCH", "/admin/users/<name>", "admin", "/admin/users/{victim}", json={"enabled": False, "admin": True},
        fresh_victim=True),
    Row("DELETE", "/admin/users/<name>", "admin", "/admin/users/{victim}", fresh_victim=True),
    Row("POST", "/admin/users/<name>/token", "admin", "/admin/users/{victim}/token", fresh_victim=True),
    # ---- operations: the Prometheus metrics (admins; public only with METRICS_PUBLIC) ------------------
    Row("GET", "/metrics", "admin", "/metrics"),
    # ---- the web client: pages (401 is the sign-in form), sign-in (no CSRF field: 403), assets ------------
    Row("GET", "/web/", "signed_in", "/web/"),
    Row("GET", "/web/jobs", "signed_in", "/web/jobs"),
    Row("GET", "/web/jobs/<jobname>", "signed_in", "/web/jobs/dummy"),
    Row("GET", "/web/jobs/<jobname>/<job_id>", "job", "{webjob}"),
    Row("GET", "/web/new/<jobname>", "signed_in", "/web/new/dummy"),
    Row("GET", "/web/editor", "signed_in", "/web/editor"),
    Row("GET", "/web/admin", "admin", "/web/admin"),
    Row("GET", "/web/session", "signed_in", "/web/session"),
    Row("GET", "/web/signin", "public", "/web/signin"),
    Row("POST", "/web/signin", "public", "/web/signin", ok=403, data={"name": "carol", "token": "x"}),
    Row("POST", "/web/signout", "public", "/web/signout", ok=303),
    Row("GET", "/web/static/<path:path>", "public", "/web/static/uws.js"),
    Row("GET", "/web/lib/<path:path>", "public", "/web/lib/bootstrap/dist/css/bootstrap.min.css"),
    # ---- sharing (opus.server.share_routes): a link is the credential for one file, and nothing else -------
    Row("POST", "/share", "job", "/share", ok=201, params={"entity": "{entity}"}),
    Row("GET", "/share", "signed_in", "/share"),
    Row("GET", "/share/<token:re:[0-9a-f]{32}\\.[0-9a-f]{32}>", "public", "/share/{sharetoken}"),
    Row("GET", "/share/<token:re:[0-9a-f]{32}\\.[0-9a-f]{32}>/<file_name>", "public", "/share/{sharetoken}/output.txt"),
    Row("DELETE", "/share/<link_id:re:[0-9a-f]{32}>", "job", "/share/{share}"),  # after the rows that use it
    Row("GET", "/shared", "signed_in", "/shared"),
    Row("GET", "/shared/<jobname>/<job_id>", "job", "{sharedjob}", has_secret=True),
    Row("GET", "/shared/<jobname>/<job_id>/results/<result_id>", "job", "{sharedjob}/results/output",
        has_secret=True),
    Row("GET", "/shared/<jobname>/<job_id>/users", "job", "{sharedjob}/users"),
    Row("PUT", "/shared/<jobname>/<job_id>/users/<name>", "job", "{sharedjob}/users/victim"),
    Row("DELETE", "/shared/<jobname>/<job_id>/users/<name>", "job", "{sharedjob}/users/victim"),
    Row("GET", "/notifications", "user", "/notifications"),
    Row("PUT", "/notifications", "user", "/notifications", json={"email": "someone@example.org"}),
]
# The original client's pages: redirects to the web client's pages, which apply their own rules.
_EXAMPLE = {"<jobname>": "dummy", "<job_id>": "0123456789abcdef", "<jobname:path>": "dummy"}
for _prefix in compat_routes.CLIENT_PREFIXES:
    for _rule in [r for r, _ in compat_routes.PAGES] + ["/job_definition/<jobname:path>"] \
            + (["", "/"] if _prefix else []):
        _path = _prefix + _rule
        for _name, _value in _EXAMPLE.items():
            _path = _path.replace(_name, _value)
        ROWS.append(Row("GET", _prefix + _rule, "signed_in", _path, ok=301))

# Accounts (opus.server.account_routes): one's own account ("user": never anonymous callers), the admin
# side, and the public registration and reset forms (REGISTRATION is "off" here; no form CSRF field: 403).
# A separate list, added to ROWS where opus/server/app.py installs account_routes.
_RESET = {"name": "victim", "code": "x" * 32, "password": "a good password", "password2": "a good password"}
ACCOUNT_ROWS = [
    Row("GET", "/account", "user", "/account"),
    Row("POST", "/account/password", "user", "/account/password", ok=400, json={"password": "short"}),
    Row("GET", "/account/tokens", "user", "/account/tokens"),
    Row("POST", "/account/tokens", "user", "/account/tokens", ok=201,
        json={"name": "an app", "scope": "read", "days": 1}),
    Row("DELETE", "/account/tokens/<token_id>", "user", "/account/tokens/0123456789abcdef", ok=404),
    Row("GET", "/admin/users/<name>/tokens", "admin", "/admin/users/{victim}/tokens"),
    Row("DELETE", "/admin/users/<name>/tokens/<token_id>", "admin", "/admin/users/{victim}/tokens/0123456789abcdef",
        ok=404),
    Row("POST", "/admin/users/<name>/reset", "admin", "/admin/users/{victim}/reset", fresh_victim=True),
    Row("GET", "/web/profile", "user", "/web/profile"),
    Row("GET", "/web/register", "public", "/web/register", ok=403),
    Row("POST", "/web/register", "public", "/web/register", ok=403, data={**_RESET, "name": "carol"}),
    Row("GET", "/web/reset", "public", "/web/reset", params={"name": "victim", "code": "x"}),
    Row("POST", "/web/reset", "public", "/web/reset", ok=403, data=_RESET),
    # Last: it replaces each allowed caller's own token (the rows after it would use the old ones).
    Row("POST", "/account/token", "user", "/account/token"),
]
ROWS += ACCOUNT_ROWS

CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


def basic(name, token):
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{token}".encode()).decode()}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    server: LiveServer
    allow_anonymous: bool
    owner: str                         # "alice" or "anonymous"
    headers: dict[str, dict] = field(default_factory=dict)
    admin: UserAdmin | None = None
    secret: str = ""
    jobs: dict[str, str] = field(default_factory=dict)   # kind -> job path
    owner_ids: set[str] = field(default_factory=set)     # every job id the owner has
    tokens: list[str] = field(default_factory=list)      # callback tokens of the owner's jobs
    victims: int = 0
    entity: str = ""                                      # the entity of the owner's "done" job's result
    share: str = ""                                       # a share link of the owner's (to a file without secret)
    share_token: str = ""

    @property
    def url(self) -> str:
        return self.server.url

    def owner_name(self) -> str | None:
        return None if self.owner == "anonymous" else self.owner

    def create(self, jobname: str, data: dict, run: bool = False) -> str:
        data = dict(data, PHASE="RUN") if run else data
        r = requests.post(f"{self.url}/rest/{jobname}", data=data, headers=self.headers[self.owner],
                          allow_redirects=False)
        assert r.status_code == 303, r.text
        path = r.headers["Location"][len(self.url):]
        job_id = path.rsplit("/", 1)[1]
        self.owner_ids.add(job_id)
        self.tokens.append(job_token(self.server.settings, job_id))
        return path

    def wait_final(self, path: str) -> str:
        root = requests.Session()
        root.headers.update(self.headers["root"])
        return wait_final(root, f"{self.url}{path}", timeout=300)

    def new_jdl(self, live: bool) -> str:
        """A fresh definition proposed by alice (and made live if ``live``)."""
        from opus.jobdef import JobDefinition
        self.victims += 1
        name = f"fresh{self.victims}"
        registry = self.server.services.registry
        meta = registry.propose(JobDefinition.from_dict({"name": name, "script": "true\n", "version": "1"}), "alice")
        if live:
            registry.validate(name, meta["digest"])
        return name

    def new_victim(self) -> str:
        self.victims += 1
        name = f"victim{self.victims}"
        self.admin.add(name)
        return name


def make_world(tmp_path: Path, allow_anonymous: bool, owner: str) -> World:
    jdl = tmp_path / "jdl"
    shutil.copytree(REPO_ROOT / "jdl", jdl)
    # Every row is tried with a wrong token: no sign-in throttling here (tests/test_trust_limits.py has it).
    server = LiveServer(make_settings(tmp_path, ALLOW_ANONYMOUS=allow_anonymous, MAX_RUNNING_JOBS=4,
                                      JDL_DIR=str(jdl), SIGNIN_MAX_FAILURES_PER_ADDRESS=0,
                                      SIGNIN_MAX_FAILURES_PER_NAME=0))
    # Create the server secret before any thread needs it: its first creation is not thread-safe
    # (see test_security_inputs.py::test_the_server_secret_is_created_safely_by_concurrent_threads).
    server_secret(server.settings)
    admin = UserAdmin(server.services.users)  # tokens hashed with the server's key, as in production
    tokens = {}
    for name, kwargs in (("root", {"admin": True}), ("alice", {"editor": True}), ("bob", {})):
        _, tokens[name] = admin.add(name, **kwargs)
    world = World(server, allow_anonymous, owner, admin=admin, secret=f"TOPSECRET-{secrets.token_hex(8)}")
    world.headers = {
        "alice": basic("alice", tokens["alice"]),
        "bob": bearer(tokens["bob"]),
        "anonymous": {},
        "root": bearer(tokens["root"]),
        "wrong": basic("alice", tokens["alice"][:-4] + "AAAA"),
    }
    world.admin.add("victim")
    from opus.jobdef import JobDefinition
    server.services.registry.propose(JobDefinition.from_dict(
        {"name": "propdef", "script": "true\n", "version": "1", "description": "a proposal"}), "alice")
    world.jobs["done"] = world.create("dummy", {"text": world.secret}, run=True)
    world.jobs["error"] = world.create("fail", {"message": world.secret}, run=True)
    world.jobs["pending"] = world.create("dummy", {"text": world.secret})
    assert world.wait_final(world.jobs["done"]) == "COMPLETED"
    assert world.wait_final(world.jobs["error"]) == "ERROR"
    (world.entity,) = [e.entity_id for e in server.services.entities.generated_by([world.jobs["done"][-16:]])]
    # A share link of the owner's, to a result without the secret (the link gives it to anyone).
    shared = world.create("dummy", {"text": "shared with a link"}, run=True)
    assert world.wait_final(shared) == "COMPLETED"
    r = requests.post(f"{world.url}/share", json={"job": shared[-16:], "result": "output"},
                      headers=world.headers[owner])
    assert r.status_code == 201, r.text
    world.share = r.json()["id"]
    world.share_token = r.json()["url"].split("/share/")[1].split("/")[0]
    return world


def allowed(world: World, row: Row, role: str) -> bool:
    """May ``role`` act on this row's resource (whatever the job's phase then says)?"""
    if row.kind == "public":
        return True
    if row.kind == "callback":
        return False  # nobody's credentials replace the job's token
    if role == "wrong" or (role == "anonymous" and not world.allow_anonymous):
        return False
    if row.kind == "signed_in":
        return True
    if row.kind == "admin":
        return role == "root"
    if row.kind == "user":
        return role != "anonymous"
    if row.kind in ("proposal", "editor"):  # alice proposed; she is also the editor
        return role in ("root", "alice")
    return role in ("root", world.owner)


def expected(world: World, row: Row, role: str) -> int:
    if allowed(world, row, role):
        return row.ok
    if row.kind == "callback":
        return 403
    if role == "wrong" or (role == "anonymous" and (not world.allow_anonymous or row.kind != "job")):
        return 401
    return 403


def job_state(world: World, path: str) -> tuple:
    """Everything about a job that a refused request must leave alone (as an admin sees it)."""
    root = world.headers["root"]
    job = requests.get(f"{world.url}{path}", headers={**root, "Accept": "application/json"})
    if job.status_code == 404:
        return ("gone",)
    assert job.status_code == 200, job.text
    data = job.json()
    job_dir = world.server.settings.jobs_dir / path.rsplit("/", 1)[1]
    files = sorted((str(p.relative_to(job_dir)), p.stat().st_size) for p in job_dir.rglob("*") if p.is_file()) \
        if job_dir.exists() else []
    return data, files


def users_state(world: World) -> list:
    return sorted((u.name, u.is_admin, u.enabled, sorted(u.jobdefs), u.token_hash, u.max_active_jobs)
                  for u in world.admin.list())


def jdl_state(world: World) -> tuple:
    registry = world.server.services.registry
    return (registry.names(), sorted(p["name"] for p in registry.proposals()),
            {n: registry.versions(n) for n in registry.names()})


def all_job_ids(world: World) -> set[str]:
    return {ref.job_id for ref in world.server.services.store.list(None)}


def perform(world: World, row: Row, role: str) -> tuple[requests.Response, str, object]:
    """Send the row's request as ``role``; returns the response, a description and the state the
    request must not have changed when it is refused (with a function to read it again)."""
    is_allowed = allowed(world, row, role)
    job_path = ""
    victim = "victim"
    if row.kind == "job":
        job_path = world.create("dummy", {"text": world.secret}) if row.fresh and is_allowed else world.jobs[row.job]
    if row.kind == "admin" and row.fresh_victim and is_allowed:
        victim = world.new_victim()
    jdl = "propdef"
    if row.fresh_jdl:
        jdl = world.new_jdl(live=row.fresh_jdl == "live") if is_allowed else ("dummy" if row.fresh_jdl == "live"
                                                                             else "propdef")
    path = row.path.format(job=job_path, victim=victim, jdl=jdl, entity=world.entity,
                           webjob=job_path.replace("/rest/", "/web/jobs/", 1),
                           sharedjob=job_path.replace("/rest/", "/shared/", 1), share=world.share,
                           sharetoken=world.share_token)
    # the digest an admin is shown for the proposal {jdl} (validating needs it)
    digest = next((p["digest"] for p in world.server.services.registry.proposals() if p["name"] == jdl), "")
    params = {k: v.format(entity=world.entity, digest=digest) for k, v in row.params.items()} if row.params else None
    body_json = None
    if row.json is not None:
        body_json = json.loads(json.dumps(row.json).replace("{new}", f"new{secrets.token_hex(4)}"))
    if row.kind == "callback":
        body_json = {"job_id": world.jobs["pending"][-16:], "phase": "COMPLETED", "results": []}
    if row.kind == "job":
        reader = lambda: job_state(world, job_path)
    elif row.path.startswith("/jdl"):
        reader = lambda: jdl_state(world)
    elif row.kind == "admin":
        reader = lambda: users_state(world)
    elif row.kind == "callback":
        reader = lambda: job_state(world, world.jobs["pending"])
    else:
        reader = lambda: sorted(all_job_ids(world))
    before = reader() if row.method in CHANGES else None
    headers = {**world.headers[role], **({"Accept": row.accept} if row.accept else {})}
    r = requests.request(row.method, f"{world.url}{path}", headers=headers,
                         data=row.body if row.body is not None else row.data, json=body_json, params=params,
                         allow_redirects=False, timeout=30)
    return r, f"{role} -> {row.method} {path} {row.data or body_json or row.params or row.body or ''} {row.accept}", \
        (before, reader)


def check_matrix(world: World) -> list[str]:
    problems = []
    owner_name = world.owner_name()
    done_token = json.loads((world.server.settings.jobs_dir / world.jobs["done"][-16:] / "job.json").read_text())["token"]
    assert done_token in world.tokens
    secret_key = (Path(world.server.settings.DATA_DIR) / "secret.key").read_text().strip()
    for row in ROWS:
        for role in ROLES:
            want = expected(world, row, role)
            r, what, (before, reader) = perform(world, row, role)
            body = r.text
            if r.status_code != want:
                problems.append(f"{what}: HTTP {r.status_code}, expected {want}: {body.strip()[:120]!r}")
            is_allowed = allowed(world, row, role)
            # Never: a callback token or the server secret, whoever asks.
            for token in world.tokens:
                if token in body or token in str(r.headers):
                    problems.append(f"{what}: the answer shows a job's callback token")
            if secret_key in body:
                problems.append(f"{what}: the answer shows the server secret")
            sees_owner = role in ("root", world.owner)
            if not sees_owner:
                if world.secret in body:
                    problems.append(f"{what}: the answer shows the owner's secret parameter value")
                if owner_name and owner_name in body:
                    problems.append(f"{what}: the answer names the owner {owner_name!r}")
                if row.kind != "job":
                    leaked = [j for j in world.owner_ids if j in body or j in r.headers.get("Location", "")]
                    if leaked:
                        problems.append(f"{what}: the answer lists the owner's job(s) {leaked}")
            if row.kind == "admin" and role != "root" and "victim" in body:
                problems.append(f"{what}: the answer shows user data to a non-admin")
            # Positive controls: the checks above look for things that are really there.
            if row.has_secret and sees_owner and r.status_code == 200 and world.secret not in body:
                problems.append(f"{what}: the allowed caller does not see the secret: the leak check is blind")
            if row.kind == "signed_in" and row.path == "/rest/dummy" and row.method == "GET" \
                    and r.status_code == 200 and sees_owner and world.jobs["done"][-16:] not in body:
                problems.append(f"{what}: the owner's job list lacks the owner's job: the list check is blind")
            # A refused request changes nothing.
            if row.method in CHANGES and (not is_allowed or row.ok >= 400):
                after = reader()
                if after != before:
                    problems.append(f"{what}: refused with {r.status_code} but changed {before!r} -> {after!r}")
            # An allowed creation belongs to its caller (anonymous jobs to anonymous callers).
            if row.kind == "signed_in" and row.method == "POST" and r.status_code == 303:
                job_url = r.headers["Location"]
                owner = requests.get(job_url + "/owner", headers=world.headers[role]).text
                if owner != ("" if role == "anonymous" else role):
                    problems.append(f"{what}: the new job's owner is {owner!r}")
                if role != "root":
                    for other in ("alice", "bob", "anonymous"):
                        if other == role or (other == "anonymous" and not world.allow_anonymous):
                            continue
                        status = requests.get(job_url, headers=world.headers[other]).status_code
                        if status != 403:
                            problems.append(f"{what}: {other} gets {status} on the new job, expected 403")
    return problems


def test_the_table_covers_every_route(tmp_path):
    server = LiveServer(make_settings(tmp_path))
    try:
        routes = {(r.method, r.rule) for r in server.app.routes}
    finally:
        server.stop()
    table = {(row.method, row.rule) for row in ROWS}
    assert not routes - table, f"routes without a row in the access matrix: {sorted(routes - table)}"
    assert not table - routes, f"rows for routes that do not exist: {sorted(table - routes)}"


@pytest.mark.parametrize("allow_anonymous,owner", [(False, "alice"), (True, "anonymous"), (True, "alice")],
                         ids=["signed-in-only", "anonymous-owner", "anonymous-allowed-user-owner"])
def test_access_matrix(tmp_path, allow_anonymous, owner):
    world = make_world(tmp_path, allow_anonymous, owner)
    try:
        routes = {(r.method, r.rule) for r in world.server.app.routes}
        assert routes <= {(row.method, row.rule) for row in ROWS}, "see test_the_table_covers_every_route"
        problems = check_matrix(world)
    finally:
        world.server.stop()
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_refused_callers_learn_nothing_from_unknown_jobs(tmp_path):
    """403 for someone else's job, 404 for no job at all: but the 404 must not depend on the
    caller, and a non-owner's WAIT must not block (it would show that the job is active)."""
    world = make_world(tmp_path, False, "alice")
    try:
        import time

        url = f"{world.url}{world.jobs['pending']}"
        start = time.monotonic()
        r = requests.get(url, params={"WAIT": 60}, headers=world.headers["bob"])
        # not blocked for the 60 s asked (half of it is a bound no machine load reaches)
        assert r.status_code == 403 and time.monotonic() - start < 30
        for role in ("alice", "bob", "root"):
            r = requests.get(f"{world.url}/rest/dummy/0123456789abcdef", headers=world.headers[role])
            assert r.status_code == 404, (role, r.status_code)
            r = requests.get(f"{world.url}/rest/fail{world.jobs['done'][len('/rest/dummy'):]}",
                             headers=world.headers[role])
            assert r.status_code == 404, (role, r.status_code)  # a job is only under its own definition
    finally:
        world.server.stop()
