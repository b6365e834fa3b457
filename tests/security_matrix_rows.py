"""The access matrix's table: one row per request tried, and who may make it (``tests/test_security_matrix.py``).

Callers (``ROLES``): the job's owner (alice), another signed-in user (bob), an anonymous caller, an
admin (root), a caller with a wrong token, and a member of group "team" (carol), with which the
owner's jobs are shared (``security_matrix_world.make_world``).  For each route the table says what
an allowed caller gets; who is allowed follows from the route's kind:

* ``public``    VOSI and the OpenAPI document: anyone, whatever credentials it sends;
* ``callback``  the wrapper callback: public, but only the job's HMAC token counts (403 without);
* ``signed_in`` any authenticated caller (anonymous ones too when ALLOW_ANONYMOUS);
* ``job``       a job and everything under it: its owner and admins; 403 for anyone else;
* ``shared``    a job read through /shared: as ``job``, and also the members of a group it is shared
                with (carol, of group "team"); read-only;
* ``user``      signed-in users (never anonymous callers: 401);
* ``proposal``  a proposed job definition: the user who proposed it (alice) and admins; 403 for
                other users, 401 for anonymous callers;
* ``editor``    users with the editor role (alice) and admins: 403 for other users, 401 for anonymous;
* ``admin``     admins only: 403 for users, 401 for anonymous callers.

Wrong credentials are always a 401, and anonymous callers get 401 when ALLOW_ANONYMOUS is False.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from opus.server import compat_routes
from opus.server.urls import ENTITY_RULE

JOB = "/rest/<jobname>/<job_id>"
ROLES = ("alice", "bob", "anonymous", "root", "wrong", "member")
#: The group the owner's jobs are shared with; the "member" caller belongs to it.
GROUP = "team"


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
    Row("PATCH", "/admin/users/<name>", "admin", "/admin/users/{victim}", json={"groups": ["team"]},
        fresh_victim=True),
    Row("DELETE", "/admin/users/<name>", "admin", "/admin/users/{victim}", fresh_victim=True),
    Row("POST", "/admin/users/<name>/token", "admin", "/admin/users/{victim}/token", fresh_victim=True),
    # ---- operations: the Prometheus metrics (admins; public only with METRICS_PUBLIC) ------------------
    Row("GET", "/metrics", "admin", "/metrics"),
    # ---- the web client: pages (401 is the sign-in form), sign-in (no CSRF field: 403), assets ------------
    Row("GET", "/web/", "signed_in", "/web/"),
    Row("GET", "/web/jobs", "signed_in", "/web/jobs"),
    Row("GET", "/web/shared", "signed_in", "/web/shared"),
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
    # The owner's "done" job is shared with group "team" (make_world): its member reads it there, only.
    Row("GET", "/shared/<jobname>/<job_id>", "shared", "{sharedjob}", has_secret=True),
    Row("GET", "/shared/<jobname>/<job_id>/results/<result_id>", "shared", "{sharedjob}/results/output",
        has_secret=True),
    Row("GET", "/shared/<jobname>/<job_id>", "job", "{sharedjob}", job="error", has_secret=True),  # not shared
    Row("GET", "/shared/<jobname>/<job_id>/users", "job", "{sharedjob}/users"),
    Row("PUT", "/shared/<jobname>/<job_id>/users/<name>", "job", "{sharedjob}/users/victim"),
    Row("DELETE", "/shared/<jobname>/<job_id>/users/<name>", "job", "{sharedjob}/users/victim"),
    Row("PUT", "/shared/<jobname>/<job_id>/groups/<name>", "job", "{sharedjob}/groups/others"),
    Row("DELETE", "/shared/<jobname>/<job_id>/groups/<name>", "job", "{sharedjob}/groups/others"),
    Row("PUT", "/shared/<jobname>/<job_id>/groups/<name>", "job", "{sharedjob}/groups/-bad", ok=400),
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
    Row("GET", "/web/confirm", "public", "/web/confirm", ok=400,
        params={"uid": "1", "email": "victim@example.org", "expires": "9999999999", "sig": "0" * 64}),
    Row("POST", "/web/reset", "public", "/web/reset", ok=403, data=_RESET),
    # Last: it replaces each allowed caller's own token (the rows after it would use the old ones).
    Row("POST", "/account/token", "user", "/account/token"),
]
# Single sign-on (opus.server.oidc_routes; helper A's, issue 17 point 2), not configured here: its pages
# answer 404 to anyone; the admins' identity links follow the admin rule.  Added when the module exists.
OIDC_ROWS = [
    Row("GET", "/web/signin/oidc", "public", "/web/signin/oidc", ok=404),
    Row("GET", "/web/signin/oidc/callback", "public", "/web/signin/oidc/callback", ok=404,
        params={"code": "x", "state": "y"}),
    Row("GET", "/admin/users/<name>/oidc", "admin", "/admin/users/{victim}/oidc"),
    Row("POST", "/admin/users/<name>/oidc", "admin", "/admin/users/{victim}/oidc", ok=201, fresh_victim=True,
        json={"subject": "someone-at-the-provider", "issuer": "https://idp.example.org"}),
    Row("DELETE", "/admin/users/<name>/oidc", "admin", "/admin/users/{victim}/oidc", ok=404,  # none linked
        params={"subject": "someone-at-the-provider", "issuer": "https://idp.example.org"}),
]
if importlib.util.find_spec("opus.server.oidc_routes") is not None:
    ROWS += OIDC_ROWS
ROWS += ACCOUNT_ROWS  # last: its last row replaces the callers' tokens

CHANGES = {"POST", "PUT", "PATCH", "DELETE"}
