"""The OpenAPI 3.1 description of the whole REST interface, served at ``GET /openapi.json``.

The document is built per request: ``servers`` is this request's base URL and the job definition
names are the registry's at that moment.  It is public (like VOSI): a client may read what the
service offers before it has credentials.  ``tests/test_openapi.py`` checks that it documents
exactly the routes the application has.  Each part of the interface is described in its own
module (``openapi_uws``, ``openapi_jdl``...), from the blocks of ``openapi_parts``.
"""

from __future__ import annotations

from bottle import HTTPResponse

from opus.server import (openapi_admin, openapi_compat, openapi_jdl, openapi_ops, openapi_progress, openapi_prov,
                         openapi_share, openapi_store, openapi_uws, openapi_web)
from opus.server import openapi_accounts
from opus.server import openapi_oidc
from opus.server.openapi_components import components
from opus.server.openapi_parts import (JSON, STRING, TEXT, XML, Doc, array, errors, json_body, obj, ok, op,
                                       path_param, ref)
from opus.server.routing import RouteTable, services
from opus.server.web import as_json, base_url
from opus.service.root import Root

OPENAPI_VERSION = "3.1.0"
ANYONE = "no credentials needed"
routes = RouteTable()


def _service_paths() -> Doc:
    """The index and this document."""
    return {
        "/": {"get": op("index", "What this server offers", "Service", {
            **ok("The job lists (JSON with `Accept: application/json`, HTML for `Accept: text/html`)", {
                TEXT: {"schema": STRING},
                "text/html": {"schema": STRING},
                JSON: {"schema": obj({"jobDefinitions": array(obj({"name": STRING, "href": STRING}))})}}),
            **errors(401)})},
        "/openapi.json": {"get": op("openapi", "This document", "Service", ok(
            "The OpenAPI document", {JSON: {"schema": {"type": "object"}}}),
            public=True, description=ANYONE)},
    }


def _public_paths() -> Doc:
    """VOSI and the wrappers' callback: served without credentials."""
    return {
        "/availability": {"get": op("availability", "VOSI availability", "VOSI", ok(
            "`<vosi:availability>`", {XML: {"schema": STRING}}), public=True, description=ANYONE)},
        "/capabilities": {"get": op("capabilities", "VOSI capabilities", "VOSI", ok(
            "`<vosi:capabilities>`", {XML: {"schema": STRING}}), public=True, description=ANYONE)},
        "/handler/job_event": {"post": op("jobEvent", "A job wrapper's report (internal)", "Internal", {
            **ok("The report's outcome", {JSON: {"schema": {"type": "object", "properties": {
                "job_id": {"type": "string"}, "phase": {}, "event": {"type": "string"},
                "outcome": {"type": "string"}}}}}),
            **errors(400, 403, 404), "413": ref("responses", "PayloadTooLarge")},
            body=json_body("JobEvent", required=False), public=True,
            description="No credentials: the report carries the job's HMAC token instead (403 when wrong).")},
    }


def build_document(root: Root, base: str) -> Doc:
    """The OpenAPI document for the server at ``base`` (a dict, ready for JSON)."""
    settings = root.settings
    names = root.registry.names()
    jobname_schema: Doc = {"type": "string"}
    if names:
        jobname_schema["enum"] = names
    jobname = path_param("jobname", "A job definition's name", jobname_schema)
    security: list[Doc] = [{"basicAuth": []}, {"bearerAuth": []}]
    if settings.ALLOW_ANONYMOUS:
        security.append({})  # anonymous callers are served too
    paths = {
        **_service_paths(),
        **openapi_jdl.paths(jobname_schema),
        **openapi_store.paths(),
        **openapi_prov.paths(jobname_schema),
        **openapi_progress.paths(jobname_schema),
        **openapi_share.paths(jobname_schema),
        **openapi_accounts.paths(),
        **openapi_oidc.paths(),
        **openapi_uws.paths(settings, jobname),
        **_public_paths(),
        **openapi_admin.paths(),
        **openapi_ops.paths(settings),
        **openapi_web.paths(jobname_schema),
    }
    openapi_compat.add_paths(paths, settings)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "OPUS: an IVOA UWS 1.1 job server",
            "version": "1.1",
            "description": (
                "The UWS 1.1 REST interface of OPUS, with its VOSI resources, the job definitions and "
                "the admin API. Every state change answers 303 with an absolute `Location`. Errors are "
                "plain text, or JSON `{error, status}` with `Accept: application/json`. A method a "
                "resource does not have answers 405 with `Allow`."),
        },
        "servers": [{"url": base}],
        "security": security,
        "tags": [{"name": n} for n in ("UWS", "VOSI", "Service", "Admin", "Internal")],
        "paths": paths,
        "components": components(settings),
    }


@routes.get("/openapi.json", opus_public=True)
def openapi_document() -> HTTPResponse:
    return as_json(build_document(services(), base_url(services().settings)))
