"""The OpenAPI document at /openapi.json: public, valid, and true to the application's routes."""

from __future__ import annotations

import re

import pytest
import requests
from conftest import ApiServer, make_settings

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def bottle_rule_to_path(rule: str) -> str:
    """``/rest/<jobname>/<job_id>`` (or ``<name:re:...>``) -> ``/rest/{jobname}/{job_id}``."""
    return re.sub(r"<([A-Za-z_][A-Za-z0-9_]*)(?::[^>]*)?>", r"{\1}", rule)


def app_operations(app) -> set[tuple[str, str]]:
    return {(route.method.upper(), bottle_rule_to_path(route.rule)) for route in app.routes
            if route.method.upper() != "HEAD"}


def documented_operations(doc) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items()
            for method in item if method in METHODS and method != "head"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    server = ApiServer(make_settings(tmp_path_factory.mktemp("openapi"), ALLOW_ANONYMOUS=False))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def document(secured):
    r = requests.get(f"{secured.url}/openapi.json")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def test_served_anonymously_even_when_anonymous_callers_are_refused(secured, document):
    assert requests.get(f"{secured.url}/rest/dummy").status_code == 401  # the server does refuse them
    assert document["openapi"].startswith("3.")
    r = requests.get(f"{secured.url}/openapi.json", headers={"Authorization": "Bearer garbage"})
    assert r.status_code == 200  # public routes resolve no identity, so bad credentials do not matter


def test_conversion_of_bottle_rules():
    assert bottle_rule_to_path("/rest/<jobname>/<job_id>/results/<result_id>") == \
        "/rest/{jobname}/{job_id}/results/{result_id}"
    assert bottle_rule_to_path("/x/<n:int>/<p:re:[a-z]+>") == "/x/{n}/{p}"


def test_every_route_is_documented_and_every_operation_exists(secured, document):
    routes = app_operations(secured.app)
    documented = documented_operations(document)
    assert ("GET", "/openapi.json") in routes
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "documented operations the application does not have"


def test_path_parameters_match_the_templates(document):
    for path, item in document["paths"].items():
        templated = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            if method not in METHODS:
                continue
            params = [p for p in item.get("parameters", []) + op.get("parameters", []) if "$ref" not in p]
            in_path = {p["name"] for p in params if p["in"] == "path"}
            assert in_path == templated, (method, path)
            assert all(p["required"] for p in params if p["in"] == "path")


def test_the_document_validates_as_openapi(document):
    from openapi_spec_validator import validate

    validate(document)  # raises on any error (OpenAPI 3.1 schema and semantic checks)


def test_responses_and_content_types(document):
    paths = document["paths"]
    ops = {op["operationId"]: op for item in paths.values() for m, op in item.items() if m in METHODS}
    assert len(ops) == len(documented_operations(document))  # operation ids are unique
    for op_id in ("createJob", "deleteJob", "postJob", "postPhase", "postExecutionDuration",
                  "postDestruction", "postParameters", "putParameter"):
        see_other = ops[op_id]["responses"]["303"]
        assert "Location" in see_other["headers"], op_id
    create = ops["createJob"]
    forms = {"application/x-www-form-urlencoded", "multipart/form-data"}
    assert set(create["requestBody"]["content"]) == forms
    assert {"400", "401", "403", "404", "413"} <= set(create["responses"])
    assert set(ops["postParameters"]["requestBody"]["content"]) == forms
    assert {p["name"] for p in ops["listJobs"]["parameters"]} == {"PHASE", "AFTER", "LAST", "BEFORE", "RUNID"}
    assert {p["name"] for p in ops["getJob"]["parameters"]} == {"WAIT", "PHASE"}
    assert set(ops["getJob"]["responses"]["200"]["content"]) == {"text/xml", "application/json"}
    assert "application/x-votable+xml" in ops["getError"]["responses"]["200"]["content"]
    for op_id in ("getResult", "getStdout", "getStderr", "getParameter"):
        assert "206" in ops[op_id]["responses"], op_id
    assert "text/plain" in ops["getPhase"]["responses"]["200"]["content"]
    assert "application/octet-stream" in ops["putParameter"]["requestBody"]["content"]
    assert "application/json" in ops["addUser"]["requestBody"]["content"]
    assert "201" in ops["addUser"]["responses"]
    assert "application/json" in ops["jobEvent"]["requestBody"]["content"]
    assert "Allow" in document["components"]["responses"]["MethodNotAllowed"]["headers"]  # the 405s


def test_security(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["basicAuth"] == {**schemes["basicAuth"], "type": "http", "scheme": "basic"}
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert {} not in document["security"]  # this server refuses anonymous callers
    public = {(m.upper(), p) for p, item in document["paths"].items() for m, op in item.items()
              if m in METHODS and op.get("security") == []}
    assert public == {("GET", "/availability"), ("GET", "/capabilities"), ("POST", "/handler/job_event"),
                      ("GET", "/openapi.json"), ("GET", "/web/signin"), ("POST", "/web/signin"),
                      ("POST", "/web/signout"), ("GET", "/web/static/{path}"), ("GET", "/web/lib/{path}"),
                      ("GET", "/web/register"), ("POST", "/web/register"), ("GET", "/web/reset"),
                      ("POST", "/web/reset"), ("GET", "/share/{token}"), ("GET", "/share/{token}/{file_name}"),
                      ("GET", "/web/signin/oidc"), ("GET", "/web/signin/oidc/callback"), ("GET", "/web/confirm")}


def test_public_operations_are_the_public_routes(secured, document):
    public_routes = {(r.method.upper(), bottle_rule_to_path(r.rule)) for r in secured.app.routes
                     if r.config.get("opus_public")}
    public_ops = {(m.upper(), p) for p, item in document["paths"].items() for m, op in item.items()
                  if m in METHODS and op.get("security") == []}
    assert public_routes == public_ops


def test_servers_and_job_definitions_follow_the_request(secured, document):
    assert document["servers"] == [{"url": secured.url}]
    # An allowed Host (a localhost name; others need ALLOWED_HOSTS: tests/test_trust_hosts.py)
    r = requests.get(f"{secured.url}/openapi.json", headers={"Host": "localhost:8443"})
    assert r.json()["servers"] == [{"url": "http://localhost:8443"}]
    jobname = document["paths"]["/rest/{jobname}"]["parameters"][0]
    assert jobname["schema"]["enum"] == secured.services.registry.names()


def test_anonymous_callers_are_declared_when_allowed(api):
    doc = requests.get(f"{api.url}/openapi.json").json()
    assert {} in doc["security"]


def test_base_url_setting_is_the_server(tmp_path):
    server = ApiServer(make_settings(tmp_path, BASE_URL="https://opus.example.org/uws/"))
    try:
        doc = requests.get(f"{server.url}/openapi.json").json()
        assert doc["servers"] == [{"url": "https://opus.example.org/uws"}]
    finally:
        server.stop()


def test_id_parameters_accept_the_ids_a_migrated_site_keeps(document):
    """Jobs and entities made here have 16 hex digits; `opus migrate` keeps the original's shorter ids
    (tests/test_migrate.py serves /rest/test_activity_2/0c0ffe): the document must not call them
    invalid, and must still refuse what no route accepts."""
    checked = 0
    for path, item in document["paths"].items():
        for param in [*item.get("parameters", []),
                      *(p for op in item.values() if isinstance(op, dict) for p in op.get("parameters", []))]:
            if param["name"] in ("job_id", "entity_id", "ID") and "pattern" in param.get("schema", {}):
                pattern = re.compile(param["schema"]["pattern"])
                assert pattern.search("0c0ffe") and pattern.search("3f2a9c0d11e4b7a5"), (path, param)
                assert not pattern.search("a/b") and not pattern.search("x" * 33), (path, param)
                checked += 1
    assert checked >= 10
