"""The HTTP layer's own rules (issue 12, point 4): routes are module-level functions, URLs come from
one builder, admin checks and error rendering each live in one place, and no route reads the
registry's files.  Behaviour is covered by the API tests; these guard the structure and the fixes."""

from __future__ import annotations

import ast
import json
import os
import time
from email.utils import formatdate
from pathlib import Path

import pytest
import webtest
from conftest import make_settings

from opus.jobdef.formats import read_definition, write_definition
from opus.jobdef.registry import JobDefinitionRegistry
from opus.server.app import create_app
from opus.server.routing import SERVICES_KEY
from opus.storage import create_engine_for, upgrade_schema

SERVER = Path(__file__).resolve().parent.parent / "opus" / "server"


def _sources() -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(SERVER.glob("*.py"))}


@pytest.fixture
def app(tmp_path):
    settings = make_settings(tmp_path, BASE_URL="http://opus.test")
    upgrade_schema(create_engine_for(settings.database_url))
    application = create_app(settings, start=False)
    yield application, settings
    application.config[SERVICES_KEY].stop()


# ---- no route reads the registry's files ------------------------------------------------------------
def _vot_only_definition(jdl_dir: Path, name: str) -> Path:
    """A live definition kept only as an ActivityDescription VOTable (``<name>.vot``)."""
    data = json.loads((jdl_dir / "dummy.json").read_text())
    data["name"] = name
    path = jdl_dir / f"{name}.vot"
    path.write_bytes(write_definition(read_definition(json.dumps(data)), "votable"))
    return path


def test_capabilities_with_a_votable_definition(app):
    application, settings = app
    path = _vot_only_definition(Path(settings.JDL_DIR), "votonly")
    later = time.time() + 3600
    os.utime(path, (later, later))
    r = webtest.TestApp(application).get("/capabilities")
    assert r.status_int == 200
    assert "http://opus.test/rest/votonly" in r.text
    assert r.headers["Last-Modified"] == formatdate(later, usegmt=True)


def test_last_changed_is_the_newest_live_file(tmp_path):
    registry = JobDefinitionRegistry(tmp_path)
    assert registry.last_changed() == 0.0
    source = Path(__file__).resolve().parent.parent / "jdl" / "dummy.json"
    (tmp_path / "dummy.json").write_bytes(source.read_bytes())
    vot = _vot_only_definition(tmp_path, "other")
    os.utime(tmp_path / "dummy.json", (1000, 1000))
    os.utime(vot, (2000, 2000))
    assert registry.last_changed() == 2000
    (tmp_path / "misnamed.file.json").write_text("{}")  # not a definition: not counted
    os.utime(tmp_path / "misnamed.file.json", (3000, 3000))
    assert registry.last_changed() == 2000


# ---- structure -----------------------------------------------------------------------------------------
def test_routes_are_module_level_functions(app):
    application, _settings = app
    nested = [f"{r.method} {r.rule}: {r.callback.__qualname__}" for r in application.routes
              if "<locals>" in r.callback.__qualname__]
    assert nested == []


def test_urls_are_built_in_one_place():
    """Links to the UWS tree, the registry and the store come from opus.server.urls."""
    found = []
    for name, tree in _sources().items():
        if name == "urls.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr) and any(
                    isinstance(v, ast.Constant) and any(p in v.value for p in ("/rest/", "/jdl/", "/store/"))
                    for v in node.values):
                found.append(f"{name}:{node.lineno}")
    assert found == []


def test_admin_checks_are_require_admin():
    """``if not <who>.is_admin: raise ...`` is written once, in opus.server.web.require_admin."""
    found = []
    for name, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.UnaryOp) \
                    and isinstance(node.test.op, ast.Not) and isinstance(node.test.operand, ast.Attribute) \
                    and node.test.operand.attr == "is_admin" and isinstance(node.body[0], ast.Raise):
                found.append(name)
    assert found == ["web.py"]


def test_errors_are_rendered_in_one_module():
    """OpusError becomes a response only in opus.server.errors (chosen by the route's kind)."""
    found = []
    for name, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is not None \
                    and "OpusError" in ast.unparse(node.type):
                found.append(name)
    # account_routes: the registration and reset forms show the error in the form, with what was typed;
    # oidc_routes: a single sign-on that fails shows the sign-in form, saying why.
    assert set(found) <= {"errors.py", "callback_routes.py", "account_routes.py", "oidc_routes.py"}
    assert "errors.py" in found


# ---- errors by route kind -------------------------------------------------------------------------------
def test_errors_by_route_kind(app):
    application, _settings = app
    client = webtest.TestApp(application)
    api = client.get("/rest/nope", status=404)
    assert api.content_type == "text/plain"
    as_json = client.get("/rest/nope", headers={"Accept": "application/json"}, status=404)
    assert as_json.json == {"error": as_json.json["error"], "status": 404}
    page = client.get("/web/jobs/nope", status=404)
    assert page.content_type == "text/html" and "<html" in page.text.lower()
    bottle_own = client.get("/no/such/route", status=404)
    assert bottle_own.text == "not found\n"
