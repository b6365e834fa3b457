"""The components of the OpenAPI document (``openapi``): security schemes, shared headers, error
responses and the schemas of the JSON documents."""

from __future__ import annotations

from typing import Any

from opus.server.openapi_parts import JSON, PHASES, STRING, TEXT, Doc, array, obj, schema
from opus.settings import Settings

NULLABLE_STR = {"type": ["string", "null"]}
INSTANT = {"type": ["string", "null"], "format": "date-time"}
ERROR_CONTENT = {TEXT: {"schema": {"type": "string"}}, JSON: {"schema": schema("Error")}}
PARAMETER = {"type": "object", "properties": {
    "id": {"type": "string"}, "value": {"type": "string"}, "byReference": {"type": "boolean"}}}
RESULT = {"type": "object", "properties": {
    "id": {"type": "string"}, "href": {"type": "string"}, "size": {"type": ["integer", "null"]},
    "mimeType": NULLABLE_STR, "sha256": NULLABLE_STR, "name": {"type": "string"},
    "description": {"type": "string"}, "role": {"type": "string"},
    "obscore": {"type": "object", "additionalProperties": {"type": "string"}},
    "entity": {"type": "string"}, "store": {"type": "string"}}}


def components(settings: Settings) -> Doc:
    return {
        "securitySchemes": {
            "basicAuth": {"type": "http", "scheme": "basic",
                          "description": "User name and token (`opus user add` or the admin API)"},
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "The user's token"},
        },
        "headers": {
            "Location": {"description": "The absolute URL to go to", "required": True,
                         "schema": {"type": "string", "format": "uri"}},
            "ContentLength": {"schema": {"type": "integer"}},
            "LastModified": {"schema": {"type": "string"}},
            "AcceptRanges": {"schema": {"type": "string"}},
            "ContentRange": {"schema": {"type": "string"}},
        },
        "responses": _error_responses(settings),
        "schemas": {**_uws_schemas(), **_other_schemas()},
    }


def _error(description: str, **headers: Any) -> Doc:
    response: Doc = {"description": description, "content": ERROR_CONTENT}
    if headers:
        response["headers"] = headers
    return response


def _error_responses(settings: Settings) -> Doc:
    return {
        "BadRequest": _error("Malformed input; the message says what is wrong"),
        "Unauthorized": _error("No or wrong credentials",
                               **{"WWW-Authenticate": {"schema": {"type": "string"}}}),
        "Forbidden": _error("Not allowed to this caller, or illegal in the job's phase"),
        "NotFound": _error("No such job definition, job, child resource, result or user"),
        "MethodNotAllowed": _error("The resource exists but not with this method "
                                   "(`Allow` lists those it has)", Allow={"schema": STRING}),
        "Gone": _error("Removed for good: the file of a deleted job's entity"),
        "Conflict": _error("The request contradicts the current state (a version that exists already)"),
        "PayloadTooLarge": _error(f"A body over {settings.MAX_BODY_SIZE} bytes or an upload over "
                                  f"{settings.MAX_UPLOAD_SIZE} bytes"),
        "UnprocessableContent": _error("An `Idempotency-Key` already used by this caller for a different request"),
        "ServiceUnavailable": _error("The database (or another part the request needs) is unavailable for now; "
                                     "nothing was changed: retry after `Retry-After` seconds",
                                     **{"Retry-After": {"schema": {"type": "integer"}}}),
        "InsufficientStorage": _error("No space left for the uploads on the server; no job was created"),
    }


def _uws_schemas() -> Doc:
    """The UWS documents as JSON (``opus.server.render``) and the error body."""
    return {
        "Error": {"type": "object", "required": ["error", "status"],
                  "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
        "Phase": {"type": "string", "enum": PHASES},
        "JobRef": {"type": "object", "properties": {
            "jobId": {"type": "string"}, "jobName": {"type": "string"}, "phase": schema("Phase"),
            "runId": NULLABLE_STR, "ownerId": NULLABLE_STR, "creationTime": INSTANT,
            "href": {"type": "string"}}},
        "JobList": {"type": "object", "required": ["jobs"],
                    "properties": {"jobs": {"type": "array", "items": schema("JobRef")}}},
        "Parameters": {"type": "array", "items": PARAMETER},
        "Results": {"type": "array", "items": RESULT},
        "Job": {"type": "object", "properties": {
            "jobId": {"type": "string"}, "jobName": {"type": "string"}, "runId": NULLABLE_STR,
            "ownerId": NULLABLE_STR, "phase": schema("Phase"), "quote": INSTANT, "creationTime": INSTANT,
            "startTime": INSTANT, "endTime": INSTANT, "executionDuration": {"type": "integer"},
            "destruction": INSTANT, "parameters": schema("Parameters"), "results": schema("Results"),
            "errorSummary": {"oneOf": [{"type": "null"}, obj({
                "type": STRING, "hasDetail": {"type": "boolean"}, "message": STRING})]},
            "jobDefinitionVersion": NULLABLE_STR, "href": {"type": "string"}}},
    }


def _other_schemas() -> Doc:
    """Job definitions, users, and the wrappers' reports."""
    return {
        "JobDefinition": obj({"name": STRING, "description": NULLABLE_STR, "version": NULLABLE_STR,
                               "parameters": {"type": "object"}},
                              description="A job definition (the JSON of `jdl/<name>.json`)"),
        "User": {"type": "object", "properties": {
            "name": {"type": "string"},
            "id": {"type": "integer", "description": "The account's id, never given to another account "
                                                     "(a name deleted and re-created gets a new one)"},
            "roles": {"type": "array", "items": {"type": "string"}},
            "enabled": {"type": "boolean"}, "maxActiveJobs": {"type": ["integer", "null"]},
            "jobDefinitions": {"type": "array", "items": {"type": "string"}}, "created": NULLABLE_STR,
            "password": {"type": "boolean", "description": "Whether the account has a password"},
            "email": NULLABLE_STR,
            "emailVerified": {"type": "boolean", "description": "The address is confirmed (notifications go there)"},
            "groups": {"type": "array", "items": {"type": "string"},
                       "description": "The groups the user belongs to (a job may be shared with a group)"}}},
        "UserWithToken": {"allOf": [schema("User"), {"type": "object", "required": ["token"],
                                                      "properties": {"token": {"type": "string"}}}]},
        "UserChange": {
            "type": "object", "additionalProperties": False,
            "description": "POST needs `name`; PATCH changes the fields given",
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"},
                "admin": {"type": "boolean"}, "enabled": {"type": "boolean"},
                "editor": {"type": "boolean", "description": "May propose and edit job definitions"},
                "jobDefinitions": {"oneOf": [STRING, array(STRING)],
                                   "description": "`*` (all) or a list of names"},
                "grant": {"oneOf": [STRING, array(STRING)]},
                "revoke": {"oneOf": [STRING, array(STRING)]},
                "maxActiveJobs": {"type": ["integer", "null"], "minimum": 0},
                "groups": {"oneOf": [STRING, {"type": "array", "maxItems": 100, "items": {
                    "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"}}],
                           "description": "The user's groups, replacing them: a list, or names separated by "
                                          "commas ([] or \"\": none)"}}},
        "JobEvent": obj({
            "job_id": STRING, "token": STRING, "phase": schema("Phase"), "message": STRING,
            "results": {"type": "array"}, "start_time": STRING, "end_time": STRING,
            "event": {**STRING, "enum": ["slurm_end"]}, "slurm_job_id": STRING, "exit_code": STRING},
            description="A job wrapper's report, signed with the job's token"),
    }
