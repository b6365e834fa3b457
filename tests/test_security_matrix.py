"""The access matrix: every route of the application x every kind of caller.

The table (one row per request, and the kinds of route that say who may make it) is
``security_matrix_rows``; the world it runs in and the check of each row as each caller are
``security_matrix_world``.  Every refused request must change nothing and show nothing of the
owner's (a secret parameter value, the owner's name, the owner's job ids in lists, the job's
callback token).

The table is checked against ``app.routes``: a route added without a row fails the test.
"""

from __future__ import annotations

import pytest
import requests
from conftest import LiveServer, make_settings
from security_matrix_rows import ROWS
from security_matrix_world import check_matrix, make_world


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
        url = f"{world.url}{world.jobs['pending']}"
        # answered within the client's timeout: not held for the hour asked
        r = requests.get(url, params={"WAIT": 3600}, headers=world.headers["bob"], timeout=120)
        assert r.status_code == 403
        for role in ("alice", "bob", "root"):
            r = requests.get(f"{world.url}/rest/dummy/0123456789abcdef", headers=world.headers[role])
            assert r.status_code == 404, (role, r.status_code)
            r = requests.get(f"{world.url}/rest/fail{world.jobs['done'][len('/rest/dummy'):]}",
                             headers=world.headers[role])
            assert r.status_code == 404, (role, r.status_code)  # a job is only under its own definition
    finally:
        world.server.stop()
