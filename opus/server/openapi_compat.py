"""The OpenAPI description of the original OPUS's URLs (``compat_routes``), every operation
``deprecated``: read from the routes themselves, so that the two cannot drift apart."""

from __future__ import annotations

import re

from opus.server import compat_routes
from opus.server.openapi_parts import JSON, STRING, TEXT, Doc, errors, form_body, path_param, ref
from opus.settings import Settings

TAG = "Original OPUS (deprecated)"
_TEMPLATE = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)(?::[^>]*)?>")
_PARAMS = {"jobname": "A job definition's name", "job_id": "A job's id", "name": "A parameter's or definition's name",
           "kind": "json, xml or svg"}
_MOVED = {"301": {"description": "Moved permanently to what replaces it (docs/migration.md)",
                  "headers": {"Location": ref("headers", "Location")}, "content": {TEXT: {"schema": STRING}}}}


def _op_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path) + (["slash"] if path.endswith("/") else [])
    return "original" + method.capitalize() + "".join(w[:1].upper() + w[1:] for w in words)


def _operation(settings: Settings, method: str, path: str) -> Doc:
    if path.endswith("/json"):
        summary, responses = ("The definition in the original's JSON shape",
                              {"200": {"description": "Its content dictionary", "content": {
                                  JSON: {"schema": {"type": "object"}}}}, **errors(401, 403, 404)})
    elif path.endswith("/script"):
        summary, responses = ("The definition's script", {"200": {"description": "The script", "content": {
            TEXT: {"schema": STRING}}}, **errors(401, 403, 404)})
    elif method == "POST":
        summary, responses = ("Set one parameter of a PENDING job (VALUE)", {
            "303": {"description": "Set: see the job", "headers": {"Location": ref("headers", "Location")}},
            **errors(400, 401, 403, 404, 413)})
    elif "/prov{kind}" in path:  # a job's provenance: moved only for those who may read the job
        summary, responses = "Moved: the job's provenance document", {**_MOVED, **errors(401, 403, 404)}
    else:
        # 404: a path segment no page can have (bottle's router refuses it before any redirect).
        summary, responses = "Moved: the page or document that replaces it", {**_MOVED, **errors(401, 404)}
    operation: Doc = {"operationId": _op_id(method, path), "summary": summary, "tags": [TAG],
                      "deprecated": True, "responses": responses}
    if method == "POST":
        operation["requestBody"] = form_body(settings, {"VALUE": STRING}, ["VALUE"], other_fields=False)
    return operation


def add_paths(paths: Doc, settings: Settings) -> None:
    """Add the operations of ``compat_routes`` to ``paths`` (an existing path keeps its operations)."""
    for route in compat_routes.routes.routes:
        path = _TEMPLATE.sub(r"{\1}", route.path)
        method = str(route.method).upper()
        item = paths.setdefault(path, {})
        operation = _operation(settings, method, path)
        names = re.findall(r"{([^}]+)}", path)
        if names and "parameters" not in item:
            operation["parameters"] = [path_param(n, _PARAMS.get(n, n)) for n in names]
        item[method.lower()] = operation
