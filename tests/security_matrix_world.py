"""The access matrix's machinery (``tests/test_security_matrix.py``): the world it runs in (a live
server, its users and the owner's jobs), who is allowed what (``allowed``, ``expected``), and the
check of every row of ``security_matrix_rows.ROWS`` as every caller.

Every refused request must change nothing and show nothing of the owner's (a secret parameter value,
the owner's name, the owner's job ids in lists, the job's callback token).
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import requests
from conftest import REPO_ROOT, LiveServer, make_settings
from helpers import wait_final
from security_matrix_rows import CHANGES, GROUP, ROLES, ROWS, Row

from opus.auth.admin import UserAdmin
from opus.auth.identity import job_token, server_secret
from opus.storage.sharestore import ShareStore


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
    # MAX_WAIT of an hour: a WAIT answered within a client's timeout was not held (no clock is read).
    server = LiveServer(make_settings(tmp_path, ALLOW_ANONYMOUS=allow_anonymous, MAX_RUNNING_JOBS=4,
                                      JDL_DIR=str(jdl), SIGNIN_MAX_FAILURES_PER_ADDRESS=0,
                                      SIGNIN_MAX_FAILURES_PER_NAME=0, MAX_WAIT=3600))
    # Create the server secret before any thread needs it: its first creation is not thread-safe
    # (see test_security_inputs.py::test_the_server_secret_is_created_safely_by_concurrent_threads).
    server_secret(server.settings)
    admin = UserAdmin(server.services.users)  # tokens hashed with the server's key, as in production
    tokens = {}
    for name, kwargs in (("root", {"admin": True}), ("alice", {"editor": True}), ("bob", {}),
                         ("carol", {"groups": [GROUP]})):
        _, tokens[name] = admin.add(name, **kwargs)
    world = World(server, allow_anonymous, owner, admin=admin, secret=f"TOPSECRET-{secrets.token_hex(8)}")
    world.headers = {
        "alice": basic("alice", tokens["alice"]),
        "bob": bearer(tokens["bob"]),
        "anonymous": {},
        "root": bearer(tokens["root"]),
        "wrong": basic("alice", tokens["alice"][:-4] + "AAAA"),
        "member": bearer(tokens["carol"]),
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
    # The "done" job is shared with the member's group (and so, at /shared, readable by her).
    r = requests.put(f"{world.url}{world.jobs['done'].replace('/rest/', '/shared/', 1)}/groups/{GROUP}",
                     headers=world.headers[owner])
    assert r.status_code == 200, r.text
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
    if row.kind == "shared" and role == "member":
        return row.job == "done"  # the job shared with her group
    return role in ("root", world.owner)


def sees_owner(world: World, row: Row, role: str) -> bool:
    """Whether ``role`` may see the owner's things in this row's answer: the owner and admins, and the
    member of the group where the shared job is shown to her (the job, or the list of jobs shared with her)."""
    if role in ("root", world.owner):
        return True
    return role == "member" and ((row.kind == "shared" and allowed(world, row, role))
                                 or (row.method, row.rule) == ("GET", "/shared"))


def expected(world: World, row: Row, role: str) -> int:
    if allowed(world, row, role):
        return row.ok
    if row.kind == "callback":
        return 403
    if role == "wrong" or (role == "anonymous" and (not world.allow_anonymous or row.kind not in ("job", "shared"))):
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
    job_id = path.rsplit("/", 1)[1]
    job_dir = world.server.settings.jobs_dir / job_id
    files = sorted((str(p.relative_to(job_dir)), p.stat().st_size) for p in job_dir.rglob("*") if p.is_file()) \
        if job_dir.exists() else []
    store = ShareStore(world.server.services.store.engine)
    shares = sorted((s.grantee_key, s.created) for s in store.shares_of(job_id))
    return data, files, shares


def users_state(world: World) -> list:
    return sorted((u.name, u.is_admin, u.enabled, sorted(u.jobdefs), u.token_hash, u.max_active_jobs, sorted(u.groups))
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
    if row.kind in ("job", "shared"):
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
    if row.kind in ("job", "shared"):
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
            owner_visible = sees_owner(world, row, role)
            if not owner_visible:
                if world.secret in body:
                    problems.append(f"{what}: the answer shows the owner's secret parameter value")
                if owner_name and owner_name in body:
                    problems.append(f"{what}: the answer names the owner {owner_name!r}")
                if row.kind not in ("job", "shared"):
                    leaked = [j for j in world.owner_ids if j in body or j in r.headers.get("Location", "")]
                    if leaked:
                        problems.append(f"{what}: the answer lists the owner's job(s) {leaked}")
            if row.kind == "admin" and role != "root" and "victim" in body:
                problems.append(f"{what}: the answer shows user data to a non-admin")
            # Positive controls: the checks above look for things that are really there.
            if row.has_secret and owner_visible and r.status_code == 200 and world.secret not in body:
                problems.append(f"{what}: the allowed caller does not see the secret: the leak check is blind")
            if row.kind == "signed_in" and row.path == "/rest/dummy" and row.method == "GET" \
                    and r.status_code == 200 and owner_visible and world.jobs["done"][-16:] not in body:
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
                if owner != {"anonymous": "", "member": "carol"}.get(role, role):
                    problems.append(f"{what}: the new job's owner is {owner!r}")
                if role != "root":
                    for other in ("alice", "bob", "anonymous"):
                        if other == role or (other == "anonymous" and not world.allow_anonymous):
                            continue
                        status = requests.get(job_url, headers=world.headers[other]).status_code
                        if status != 403:
                            problems.append(f"{what}: {other} gets {status} on the new job, expected 403")
    return problems
