"""A NUL character (U+0000, ``%00``) anywhere a client can put one: never a 500, on either database.

Found by hand in session 19: ``GET /rest/dummy/abc%00`` was a 500 on PostgreSQL (psycopg2 refuses a
string holding NUL before sending it), and so were 45 other requests: every route of a job, the admin
routes of a user, ``DELETE /jdl/<name>``, the web client's job page.  SQLite stores NUL, so the fuzzers,
which ran on SQLite only, never saw it; run on PostgreSQL too, they found two query values that reach
the database (``/web/new/<name>?from=``, ``DELETE /admin/users/<name>/oidc?subject=``).  A NUL in a
path value or anywhere in the query is now a 400 before the route reads it (``NUL_IN_PATH``,
``NUL_IN_QUERY``); forms, JSON bodies and headers are checked where they are read, and are tried
here all the same.

Real HTTP (the in-process server on a socket), every route of the application, SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import re

import requests

from conftest import signed_in_sessions
from opus.server.errors import NUL_IN_PATH
from opus.server.web import NUL_IN_QUERY
from test_undecodable_input import _filled

QUERY_NAMES = ("x PHASE WAIT LAST AFTER RUNID ID format next name digest version check from code state error "
               "BEFORE OWNER").split()
NUL_QUERY = "&".join(f"{name}=a%00b" for name in QUERY_NAMES) + "&a%00b=1"
FIELDS = {name: "a\x00b" for name in (
    "name token user password email PHASE DESTRUCTION EXECUTIONDURATION RUNID ACTION QUOTE text title "
    "label id value code state next role admin maxActiveJobs jobname a\x00b").split()}
HEADERS = [{"Authorization": "Bearer a\x00b"}, {"Authorization": "Basic " + base64.b64encode(b"a\x00b:t").decode()},
           {"Cookie": "opus_session=a\x00b"}, {"Idempotency-Key": "a\x00b"}, {"Accept": "a\x00b"}]


def _with_nul_in_each_wildcard(rule: str, job_id: str) -> list[str]:
    return [_filled(rule[:m.start()] + "a%00b" + rule[m.end():], job_id) for m in re.finditer(r"<[^>]+>", rule)]


def test_no_route_answers_a_nul_with_a_500(live_any_db):
    live = live_any_db
    sessions = signed_in_sessions(live)
    job_id = live.create("dummy").rsplit("/", 1)[1]
    answers = []
    for route in list(live.app.routes):
        paths = [_filled(route.rule, job_id) + "?" + NUL_QUERY] + _with_nul_in_each_wildcard(route.rule, job_id)
        bodies = [{"data": FIELDS}, {"json": FIELDS}] if route.method in ("POST", "PUT", "PATCH") else [{}]
        for who in ("anonymous", "root"):
            for path in paths:
                for body in bodies:
                    r = sessions[who].request(route.method, live.url + path, allow_redirects=False, timeout=30,
                                              **body)
                    answers.append((route.method, path, who, list(body), r.status_code, r.text[:200]))
    failures = [a for a in answers if a[4] >= 500]
    assert not failures, "\n".join(map(str, failures))
    assert len(answers) > 500


def test_a_nul_in_a_path_value_is_a_400_that_says_so(live_any_db):
    live = live_any_db
    for path in ("/rest/dummy/a%00b", "/rest/dummy/a%00b/phase", "/rest/dum%00my", "/jdl/dummy%00"):
        r = requests.get(live.url + path, timeout=30)
        assert r.status_code == 400 and NUL_IN_PATH in r.text, (path, r.status_code, r.text)
    for path in ("/web/new/dummy?from=a%00b", "/rest/dummy?RUNID=%00", "/rest/dummy?a%00=1"):
        r = requests.get(live.url + path, timeout=30)
        assert r.status_code == 400 and NUL_IN_QUERY in r.text, (path, r.status_code, r.text)
    r = requests.get(live.url + "/rest/dummy/a%00b", headers={"Accept": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json() == {"error": NUL_IN_PATH, "status": 400}  # as the route answers


def test_a_nul_in_a_header_is_not_a_500(live_any_db):
    live = live_any_db
    for headers in HEADERS:
        for method, path in (("GET", "/rest/dummy"), ("POST", "/rest/dummy"), ("GET", "/admin/users")):
            r = requests.request(method, live.url + path, headers=headers, allow_redirects=False, timeout=30,
                                 data={"text": "x"} if method == "POST" else None)
            assert r.status_code < 500, (headers, method, path, r.status_code, r.text)
