"""The OpenAPI description of provenance (``/provsap`` and a job's ``/provenance``, see ``prov_routes``)."""

from __future__ import annotations

from typing import Any

from opus.provenance.options import FORMATS, MAX_DEPTH, MAX_IDS
from opus.server.openapi_parts import ID_SCHEMA, STRING, Doc, errors

TAG = "Provenance"
ID = ID_SCHEMA
_SPELLINGS = sorted({s for _ctype, spellings in FORMATS.values() for s in spellings})
_ANY_CASE = "case-insensitive; "


def _documents() -> Doc:
    schemas = {"application/json": {"type": "object", "description": "PROV-JSON"},
               "image/png": {"type": "string", "format": "binary"}}
    content = {ctype: {"schema": schemas.get(ctype, STRING)} for ctype, _s in FORMATS.values()}
    return {
        "200": {"description": "The provenance document (PROV-JSON by default)", "content": content},
        "503": {"description": "An SVG or PNG graph asked for, and Graphviz's `dot` is not installed "
                               "(or took too long)",
                "content": {"text/plain": {"schema": STRING}, "application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}},
    }


def _query(name: str, description: str, schema: Doc, **extra: Any) -> Doc:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema, **extra}


def _common() -> list[Doc]:
    boolean = {"type": "string", "enum": ["true", "false", "TRUE", "FALSE", "True", "False", "yes", "no", "1", "0"]}
    return [
        _query("DEPTH", "Steps to follow from the given ids (one step: entity to the activity that generated "
               f"it, or activity to the entities it used; FORTH the reverse): 0 to {MAX_DEPTH}, or ALL. "
               "Default 1", {"type": "string", "pattern": "^([0-9]{1,7}|[Aa][Ll][Ll])$"}),
        _query("MODEL", "IVOA (voprov terms, the default) or W3C (plain PROV, no voprov term)",
               {"type": "string", "enum": ["IVOA", "W3C", "ivoa", "w3c"]}),
        _query("AGENTS", "Include the owner and contact agents (default true)", boolean),
        _query("DESCRIPTIONS", "Include the ActivityDescription's parameter, usage and generation descriptions "
               "(default false)", boolean),
        _query("CONFIGURATION", "Include the parameter values (wasConfiguredBy; default true)", boolean),
    ]


def _format(name: str) -> Doc:
    return _query(name, _ANY_CASE + "PROV-JSON (json, the default), PROV-N (provn), PROV-XML (xml), "
                  "PROV-VOTABLE (votable), svg or png; media types are accepted too",
                  {"type": "string", "enum": _SPELLINGS + [s.upper() for s in _SPELLINGS if "/" not in s]})


def paths(jobname_schema: Doc) -> Doc:
    return {
        "/rest/{jobname}/{job_id}/provenance": {
            "parameters": [
                {"name": "jobname", "in": "path", "required": True, "description": "A job definition's name",
                 "schema": jobname_schema},
                {"name": "job_id", "in": "path", "required": True, "description": "The job's id", "schema": STRING}],
            "get": {
                "operationId": "getJobProvenance", "summary": "The job's provenance", "tags": [TAG],
                "description": "The job's activity, its agents, plan and configuration, its results, then DEPTH "
                               "steps back (default 1: the entities it used). The job's owner and admins.",
                "parameters": [_format("format"), *_common()],
                "responses": {**_documents(), **errors(400, 401, 403, 404)}}},
        "/provsap": {"get": {
            "operationId": "provsap", "summary": "ProvSAP: the provenance of jobs and entities", "tags": [TAG],
            "description": "Ids the caller may not see, or that do not exist, are left out (an empty document "
                           "when none is left); the walk stops at whatever the caller may not see.",
            "parameters": [
                {"name": "ID", "in": "query", "required": True, "style": "form", "explode": True,
                 "description": f"A job id or an entity id (repeatable, at most {MAX_IDS})",
                 "schema": {"type": "array", "items": ID, "minItems": 1, "maxItems": MAX_IDS}},
                *_common(),
                _query("DIRECTION", "BACK (towards the origins, the default) or FORTH (towards what was made "
                       "from them)", {"type": "string", "enum": ["BACK", "FORTH", "back", "forth"]}),
                _format("RESPONSEFORMAT")],
            "responses": {**_documents(), **errors(400, 401)}}},
    }
