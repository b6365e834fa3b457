"""The OpenAPI description of the operations routes (``GET /metrics``, see ``metrics``)."""

from __future__ import annotations

from opus.server.metrics import CONTENT_TYPE
from opus.server.openapi_parts import Doc
from opus.settings import Settings

TEXT = CONTENT_TYPE.split(";")[0]


def paths(settings: Settings) -> Doc:
    public = settings.METRICS_PUBLIC
    op: Doc = {
        "operationId": "metrics",
        "summary": "Prometheus metrics of this server",
        "tags": ["Service"],
        "description": (
            "The Prometheus text exposition format 0.0.4 (`Content-Type: " + CONTENT_TYPE + "`): jobs by "
            "phase (`opus_jobs`), HTTP requests by method and status and their duration, wrapper "
            "callbacks by outcome, execution manager errors, `opus_info`. Counters are totals over the "
            "server's processes on this host. "
            + ("Public on this server (METRICS_PUBLIC): the front end restricts it."
               if public else "For admins only (401 without credentials, 403 for other users).")),
        "responses": {
            "200": {"description": "The metrics", "content": {TEXT: {"schema": {"type": "string"}}}},
            **({} if public else {code: {"$ref": f"#/components/responses/{name}"}
                                  for code, name in (("401", "Unauthorized"), ("403", "Forbidden"))}),
        },
    }
    if public:
        op["security"] = []
    return {"/metrics": {"get": op}}
