"""The OpenAPI 3.1 description of the whole REST interface, served at ``GET /openapi.json``.

The document is built per request: ``servers`` is this request's base URL and the job definition
names are the registry's at that moment.  It is public (like VOSI): a client may read what the
service offers before it has credentials.  ``tests/test_openapi.py`` checks that it documents
exactly the routes the application has.
"""

from __future__ import annotations

from bottle import Bottle

from opus.uws import Phase
from opus.server import openapi_jdl, openapi_ops, openapi_prov, openapi_store, openapi_web
from opus.server.web import as_json, base_url
OPENAPI_VERSION = "3.1.0"
PHASES = [p.value for p in Phase]
JOB_ID_PATTERN = "^[0-9a-f]{16}$"
#: A job parameter's name (opus.service.jobs.PARAM_NAME) and a value XML can carry (opus.uws.NOT_XML_CHAR).
PARAMETER_NAME = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
XML_TEXT = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\ufffe\\uffff]*$"

XML = "text/xml"
TEXT = "text/plain"
JSON = "application/json"
VOTABLE = "application/x-votable+xml"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
OCTETS = "application/octet-stream"


STRING = {"type": "string"}


def _obj(properties: dict, **extra) -> dict:
    return {"type": "object", "properties": properties, **extra}


def _array(items: dict) -> dict:
    return {"type": "array", "items": items}


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> dict:
    return _ref("schemas", name)


def _errors(*codes: int) -> dict:
    names = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
             413: "PayloadTooLarge"}
    return {str(code): _ref("responses", names[code]) for code in codes}


def _ok(description: str, content: dict, **headers) -> dict:
    response = {"description": description, "content": content}
    if headers:
        response["headers"] = headers
    return {"200": response}


def _text(description: str, schema: dict | None = None) -> dict:
    return _ok(description, {TEXT: {"schema": schema or {"type": "string"}}})


def _xml_or_json(description: str, json_schema: str) -> dict:
    return _ok(description + " (JSON with `Accept: application/json`)",
               {XML: {"schema": {"type": "string"}}, JSON: {"schema": _schema(json_schema)}})


def _see_other(description: str) -> dict:
    return {"303": {"description": description, "headers": {"Location": _ref("headers", "Location")}}}


def _file_responses(description: str, content_type: str = "*/*") -> dict:
    """A file of the job's area: bottle's static_file (Range, If-Modified-Since, HEAD)."""
    any_body = {content_type: {"schema": {"type": "string", "format": "binary"}}}
    return {
        "200": {"description": description,
                "headers": {"Content-Length": _ref("headers", "ContentLength"),
                            "Last-Modified": _ref("headers", "LastModified"),
                            "Accept-Ranges": _ref("headers", "AcceptRanges")},
                "content": any_body},
        "206": {"description": "The requested byte range (a `Range` request)",
                "headers": {"Content-Range": _ref("headers", "ContentRange")},
                "content": any_body},
        "304": {"description": "Not modified since `If-Modified-Since`"},
        "416": {"description": "The `Range` asked for lies beyond the end of the file"},
    }


def _form_body(settings, properties: dict, required: list[str] | None = None, multipart: bool = False,
               other_fields: bool = True, body_required: bool = True, description: str = "") -> dict:
    """A form request body, urlencoded (and multipart, whose file parts become by-reference values).

    With ``other_fields``, any job parameter may be sent besides ``properties``: names as
    PARAMETER_NAME, values that XML can carry, each at most MAX_PARAMETER_VALUE characters."""
    schema: dict = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    value = {"type": "string", "maxLength": settings.MAX_PARAMETER_VALUE, "pattern": XML_TEXT}
    if other_fields:  # (otherwise other fields are ignored)
        schema.update(additionalProperties=value, propertyNames={"pattern": PARAMETER_NAME},
                      maxProperties=settings.MAX_PARAMETERS)
    content = {FORM: {"schema": schema}}
    if multipart:
        content[MULTIPART] = {"schema": {**schema, "additionalProperties": {
            "anyOf": [value, {"type": "string", "format": "binary"}]}}}
    body = {"required": body_required, "content": content}
    if description:
        body["description"] = description
    return body


def _json_body(schema: str, required: bool = True) -> dict:
    return {"required": required, "content": {JSON: {"schema": _schema(schema)}}}


def _op(op_id: str, summary: str, tag: str, responses: dict, *, parameters: list | None = None,
        body: dict | None = None, public: bool = False, description: str = "") -> dict:
    op: dict = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = body
    if public:
        op["security"] = []  # no credentials needed: overrides the document's security
    return op


def _path_param(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string"}}


def _query(name: str, description: str, schema: dict, **extra) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema,
            **extra}


def _job_paths(settings, jobname: dict) -> dict:
    """The UWS tree: /rest/{jobname} and the job resources below it."""
    job_id = _path_param("job_id", "The job's id: 16 lowercase hexadecimal characters",
                         {"type": "string", "pattern": JOB_ID_PATTERN})
    job = [jobname, job_id]
    tag = "UWS"
    std_errors = _errors(401, 403, 404)
    change_errors = _errors(400, 401, 403, 404, 413)
    rng = {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
           "description": "A byte range, e.g. `bytes=0-99` (answered with 206)"}
    control = {
        "PHASE": {"type": "string", "enum": ["RUN"], "description": "RUN: start the job at once"},
        "RUNID": {"type": "string", "maxLength": 64, "description": "A client-chosen label"},
        "EXECUTIONDURATION": {"type": "string", "pattern": "^[0-9]+$",
                              "description": "Wall-clock limit in seconds (0 = unlimited)"},
        "DESTRUCTION": {"type": "string", "format": "date-time", "description": "When the job is destroyed"},
    }
    J = "/rest/{jobname}/{job_id}"
    return {
        "/rest/{jobname}": {
            "parameters": [jobname],
            "get": _op("listJobs", "The job list of a job definition", tag, {
                **_xml_or_json("`<uws:jobs>`, newest first; ARCHIVED jobs only with PHASE=ARCHIVED",
                               "JobList"),
                **_errors(400, 401, 403, 404)}, parameters=[
                _query("PHASE", "Only jobs in these phases (repeatable: union)",
                       _array({"type": "string", "enum": PHASES}), style="form", explode=True),
                _query("AFTER", "Only jobs created strictly after this instant (ISO 8601)",
                       {"type": "string", "format": "date-time"}),
                _query("LAST", "Only the newest n jobs", {"type": "integer", "minimum": 1}),
            ]),
            "post": _op("createJob", "Create a job", tag, {
                **_see_other("The job is created; `Location` is its URL"), **change_errors},
                parameters=[_query("PHASE", "RUN: start the job at once", {**STRING, "enum": ["RUN"]})],
                body=_form_body(settings, control, multipart=True, body_required=False, description=(
                    "The job's parameters (see `GET /jdl/{name}`) and the control parameters; a multipart "
                    "file part becomes a by-reference parameter.")),
                description="Answers 303 to the new job. Parameter names are case-insensitive."),
        },
        J: {
            "parameters": job,
            "get": _op("getJob", "The job", tag,
                       {**_xml_or_json("`<uws:job>`", "Job"), **_errors(400), **std_errors},
                       parameters=[
                           _query("WAIT", "Block until the phase changes, at most this many seconds "
                                  "(-1: the server's maximum)", {"type": "integer", "minimum": -1}),
                           _query("PHASE", "With WAIT: block only while the job is in this phase",
                                  {"type": "string", "enum": PHASES})]),
            "delete": _op("deleteJob", "Delete the job", tag, {
                **_see_other("Deleted; `Location` is the job list"), **std_errors}),
            "post": _op("postJob", "Delete, run, abort, or set parameters", tag, {
                **_see_other("Done; `Location` is the job (or, after ACTION=DELETE, the job list)"),
                **change_errors}, body=_form_body(settings, {
                    "ACTION": {"type": "string", "enum": ["DELETE"]},
                    "PHASE": {"type": "string", "enum": ["RUN", "ABORT"]}}, multipart=True)),
        },
        J + "/phase": {
            "parameters": job,
            "get": _op("getPhase", "The job's phase", tag,
                       {**_text("The phase", {"type": "string", "enum": PHASES}), **std_errors}),
            "post": _op("postPhase", "Run or abort the job", tag, {
                **_see_other("Done; `Location` is the job"), **change_errors},
                body=_form_body(settings, {"PHASE": {"type": "string", "enum": ["RUN", "ABORT"]}}, ["PHASE"],
                                other_fields=False)),
        },
        J + "/executionduration": {
            "parameters": job,
            "get": _op("getExecutionDuration", "The wall-clock limit in seconds (0 = unlimited)", tag,
                       {**_text("Seconds", {"type": "string", "pattern": "^[0-9]+$"}), **std_errors}),
            "post": _op("postExecutionDuration", "Change the limit (while PENDING)", tag, {
                **_see_other("Done; `Location` is the job"), **change_errors},
                body=_form_body(settings, {"EXECUTIONDURATION": {"type": "string", "pattern": "^[0-9]+$"}},
                                ["EXECUTIONDURATION"], other_fields=False)),
        },
        J + "/destruction": {
            "parameters": job,
            "get": _op("getDestruction", "When the job will be destroyed", tag,
                       {**_text("An ISO 8601 instant"), **std_errors}),
            "post": _op("postDestruction", "Change the destruction instant", tag, {
                **_see_other("Done; `Location` is the job"), **change_errors},
                body=_form_body(settings, {"DESTRUCTION": {**STRING, "format": "date-time"}},
                                ["DESTRUCTION"], other_fields=False)),
        },
        J + "/quote": {
            "parameters": job,
            "get": _op("getQuote", "The estimated completion instant (empty when unknown)", tag,
                       {**_text("An ISO 8601 instant or nothing"), **std_errors}),
        },
        J + "/owner": {
            "parameters": job,
            "get": _op("getOwner", "The job's owner (empty for anonymous jobs)", tag,
                       {**_text("The owner's name"), **std_errors}),
        },
        J + "/error": {
            "parameters": job,
            "get": _op("getError", "The error VOTable of a failed job", tag, {
                **_ok("A VOTable with `INFO name=QUERY_STATUS value=ERROR`",
                      {VOTABLE: {"schema": {"type": "string"}}}),
                **std_errors}, description="404 when the job has no error."),
        },
        J + "/parameters": {
            "parameters": job,
            "get": _op("getParameters", "The job's parameters", tag,
                       {**_xml_or_json("`<uws:parameters>`", "Parameters"), **std_errors}),
            "post": _op("postParameters", "Set parameters (while PENDING)", tag, {
                **_see_other("Done; `Location` is the job"), **change_errors},
                body=_form_body(settings, {}, multipart=True)),
        },
        J + "/parameters/{name}": {
            "parameters": [*job, _path_param("name", "A parameter's name (case-insensitive)")],
            "get": _op("getParameter", "One parameter's value, or its uploaded file", tag, {
                **_file_responses("The value (`text/plain`) or the uploaded file"), **std_errors},
                parameters=[rng]),
            "put": _op("putParameter", "Replace one parameter's value (while PENDING)", tag, {
                **_see_other("Done; `Location` is the job"), **_errors(400, 401, 403, 404)},
                body={"required": True, "description": "The new value (UTF-8 text) or file content",
                      "content": {TEXT: {"schema": {"type": "string"}},
                                  OCTETS: {"schema": {"type": "string", "format": "binary"}}}}),
        },
        J + "/results": {
            "parameters": job,
            "get": _op("getResults", "The job's results", tag,
                       {**_xml_or_json("`<uws:results>`", "Results"), **std_errors}),
        },
        J + "/results/{result_id}": {
            "parameters": [*job, _path_param("result_id", "A result's id")],
            "get": _op("getResult", "A result file, with its own content type", tag, {
                **_file_responses("The result"), **std_errors}, parameters=[rng]),
        },
        J + "/stdout": {
            "parameters": job,
            "get": _op("getStdout", "What the job's script printed on stdout", tag, {
                **_file_responses("The text", TEXT), **std_errors}, parameters=[rng]),
        },
        J + "/stderr": {
            "parameters": job,
            "get": _op("getStderr", "What the job's script printed on stderr", tag, {
                **_file_responses("The text", TEXT), **std_errors}, parameters=[rng]),
        },
    }


def _admin_paths() -> dict:
    tag = "Admin"
    name = _path_param("name", "A user's name", {"type": "string"})
    errors = _errors(401, 403)
    return {
        "/admin/users": {
            "get": _op("listUsers", "All users", tag, {
                **_ok("The users", {JSON: {"schema": {"type": "object", "required": ["users"], "properties": {
                    "users": {"type": "array", "items": _schema("User")}}}}}), **errors}),
            "post": _op("addUser", "Create a user", tag, {
                "201": {"description": "Created; the token is shown only now",
                        "content": {JSON: {"schema": _schema("UserWithToken")}}},
                **_errors(400, 401, 403)}, body=_json_body("UserChange")),
        },
        "/admin/users/{name}": {
            "parameters": [name],
            "get": _op("getUser", "One user", tag, {**_ok("The user", {JSON: {"schema": _schema("User")}}),
                                                    **_errors(401, 403, 404)}),
            "patch": _op("changeUser", "Change a user", tag, {
                **_ok("The changed user", {JSON: {"schema": _schema("User")}}),
                **_errors(400, 401, 403, 404)},
                body=_json_body("UserChange", required=False),
                description="403 when the change would leave no enabled admin."),
            "delete": _op("deleteUser", "Delete a user", tag, {
                **_ok("Deleted", {JSON: {"schema": _obj({"deleted": STRING})}}),
                **_errors(401, 403, 404)}),
        },
        "/admin/users/{name}/token": {
            "parameters": [name],
            "post": _op("newToken", "Replace the user's token", tag, {
                **_ok("The new token, shown only now", {JSON: {"schema": {
                    "type": "object", "required": ["name", "token"],
                    "properties": {"name": {"type": "string"}, "token": {"type": "string"}}}}}),
                **_errors(401, 403, 404)}),
        },
    }


def _components(settings) -> dict:
    nullable_str = {"type": ["string", "null"]}
    instant = {"type": ["string", "null"], "format": "date-time"}
    error_content = {TEXT: {"schema": {"type": "string"}}, JSON: {"schema": _schema("Error")}}

    def error(description: str, **headers) -> dict:
        response = {"description": description, "content": error_content}
        if headers:
            response["headers"] = headers
        return response

    parameter = {"type": "object", "properties": {
        "id": {"type": "string"}, "value": {"type": "string"}, "byReference": {"type": "boolean"}}}
    result = {"type": "object", "properties": {
        "id": {"type": "string"}, "href": {"type": "string"}, "size": {"type": ["integer", "null"]},
        "mimeType": nullable_str, "sha256": nullable_str, "name": {"type": "string"},
        "description": {"type": "string"}, "role": {"type": "string"},
        "obscore": {"type": "object", "additionalProperties": {"type": "string"}},
        "entity": {"type": "string"}, "store": {"type": "string"}}}
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
        "responses": {
            "BadRequest": error("Malformed input; the message says what is wrong"),
            "Unauthorized": error("No or wrong credentials",
                                  **{"WWW-Authenticate": {"schema": {"type": "string"}}}),
            "Forbidden": error("Not allowed to this caller, or illegal in the job's phase"),
            "NotFound": error("No such job definition, job, child resource, result or user"),
            "MethodNotAllowed": error("The resource exists but not with this method "
                                      "(`Allow` lists those it has)", Allow={"schema": STRING}),
            "Gone": error("Removed for good: the file of a deleted job's entity"),
            "Conflict": error("The request contradicts the current state (a version that exists already)"),
            "PayloadTooLarge": error(f"A body over {settings.MAX_BODY_SIZE} bytes or an upload over "
                                     f"{settings.MAX_UPLOAD_SIZE} bytes"),
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error", "status"],
                      "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
            "Phase": {"type": "string", "enum": PHASES},
            "JobRef": {"type": "object", "properties": {
                "jobId": {"type": "string"}, "jobName": {"type": "string"}, "phase": _schema("Phase"),
                "runId": nullable_str, "ownerId": nullable_str, "creationTime": instant,
                "href": {"type": "string"}}},
            "JobList": {"type": "object", "required": ["jobs"],
                        "properties": {"jobs": {"type": "array", "items": _schema("JobRef")}}},
            "Parameters": {"type": "array", "items": parameter},
            "Results": {"type": "array", "items": result},
            "Job": {"type": "object", "properties": {
                "jobId": {"type": "string"}, "jobName": {"type": "string"}, "runId": nullable_str,
                "ownerId": nullable_str, "phase": _schema("Phase"), "quote": instant, "creationTime": instant,
                "startTime": instant, "endTime": instant, "executionDuration": {"type": "integer"},
                "destruction": instant, "parameters": _schema("Parameters"), "results": _schema("Results"),
                "errorSummary": {"oneOf": [{"type": "null"}, _obj({
                    "type": STRING, "hasDetail": {"type": "boolean"}, "message": STRING})]},
                "jobDefinitionVersion": nullable_str, "href": {"type": "string"}}},
            "JobDefinition": _obj({"name": STRING, "description": nullable_str, "version": nullable_str,
                                   "parameters": {"type": "object"}},
                                  description="A job definition (the JSON of `jdl/<name>.json`)"),
            "User": {"type": "object", "properties": {
                "name": {"type": "string"},
                "id": {"type": "integer", "description": "The account's id, never given to another account "
                                                         "(a name deleted and re-created gets a new one)"},
                "roles": {"type": "array", "items": {"type": "string"}},
                "enabled": {"type": "boolean"}, "maxActiveJobs": {"type": ["integer", "null"]},
                "jobDefinitions": {"type": "array", "items": {"type": "string"}}, "created": nullable_str}},
            "UserWithToken": {"allOf": [_schema("User"), {"type": "object", "required": ["token"],
                                                          "properties": {"token": {"type": "string"}}}]},
            "UserChange": {
                "type": "object", "additionalProperties": False,
                "description": "POST needs `name`; PATCH changes the fields given",
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"},
                    "admin": {"type": "boolean"}, "enabled": {"type": "boolean"},
                    "jobDefinitions": {"oneOf": [STRING, _array(STRING)],
                                       "description": "`*` (all) or a list of names"},
                    "grant": {"oneOf": [STRING, _array(STRING)]},
                    "revoke": {"oneOf": [STRING, _array(STRING)]},
                    "maxActiveJobs": {"type": ["integer", "null"], "minimum": 0}}},
            "JobEvent": _obj({
                "job_id": STRING, "token": STRING, "phase": _schema("Phase"), "message": STRING,
                "results": {"type": "array"}, "start_time": STRING, "end_time": STRING,
                "event": {**STRING, "enum": ["slurm_end"]}, "slurm_job_id": STRING, "exit_code": STRING},
                description="A job wrapper's report, signed with the job's token"),
        },
    }


def build_document(services, base: str) -> dict:
    """The OpenAPI document for the server at ``base`` (a dict, ready for JSON)."""
    settings = services.settings
    names = services.registry.names()
    jobname_schema: dict = {"type": "string"}
    if names:
        jobname_schema["enum"] = names
    jobname = _path_param("jobname", "A job definition's name", jobname_schema)
    security = [{"basicAuth": []}, {"bearerAuth": []}]
    if settings.ALLOW_ANONYMOUS:
        security.append({})  # anonymous callers are served too
    anyone = "no credentials needed"
    paths = {
        "/": {"get": _op("index", "What this server offers", "Service", {
            **_ok("The job lists (JSON with `Accept: application/json`)", {
                TEXT: {"schema": STRING},
                JSON: {"schema": _obj({"jobDefinitions": _array(_obj({"name": STRING, "href": STRING}))})}}),
            **_errors(401)})},
        "/openapi.json": {"get": _op("openapi", "This document", "Service", _ok(
            "The OpenAPI document", {JSON: {"schema": {"type": "object"}}}),
            public=True, description=anyone)},
        **openapi_jdl.paths(jobname_schema),
        **openapi_store.paths(),
        **openapi_prov.paths(jobname_schema),
        **_job_paths(settings, jobname),
        "/availability": {"get": _op("availability", "VOSI availability", "VOSI", _ok(
            "`<vosi:availability>`", {XML: {"schema": STRING}}), public=True, description=anyone)},
        "/capabilities": {"get": _op("capabilities", "VOSI capabilities", "VOSI", _ok(
            "`<vosi:capabilities>`", {XML: {"schema": STRING}}), public=True, description=anyone)},
        "/handler/job_event": {"post": _op("jobEvent", "A job wrapper's report (internal)", "Internal", {
            **_ok("The report's outcome", {JSON: {"schema": {"type": "object", "properties": {
                "job_id": {"type": "string"}, "phase": {}, "event": {"type": "string"},
                "outcome": {"type": "string"}}}}}),
            **_errors(400, 403, 404), "413": _ref("responses", "PayloadTooLarge")},
            body=_json_body("JobEvent", required=False), public=True,
            description="No credentials: the report carries the job's HMAC token instead (403 when wrong).")},
        **_admin_paths(),
        **openapi_ops.paths(settings),
        **openapi_web.paths(jobname_schema),
    }
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
        "components": _components(settings),
    }


def install(app: Bottle, services) -> None:
    @app.get("/openapi.json", opus_public=True)
    def openapi_document():
        return as_json(build_document(services, base_url(services.settings)))
