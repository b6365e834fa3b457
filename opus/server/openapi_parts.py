"""The building blocks of the OpenAPI document (``openapi``): media types, references, responses,
request bodies and operations, shared by the modules that describe each part of the interface."""

from __future__ import annotations

from typing import Any

from opus.settings import Settings
from opus.uws import ID_PATTERN, Phase

Doc = dict[str, Any]
PHASES = [p.value for p in Phase]
#: A job's or an entity's id (opus.uws.ID_PATTERN): 16 hex digits here, shorter for ids kept by opus migrate.
ID_SCHEMA: dict[str, Any] = {"type": "string", "pattern": f"^{ID_PATTERN}$",
                             "description": "16 hexadecimal digits; an id kept from the original OPUS by "
                                            "`opus migrate` may be shorter"}
JOB_ID_PATTERN = ID_SCHEMA["pattern"]
#: A job parameter's name (opus.service.submission.PARAM_NAME) and a value XML can carry (opus.uws.NOT_XML_CHAR).
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


def obj(properties: Doc, **extra: Any) -> Doc:
    return {"type": "object", "properties": properties, **extra}


def array(items: Doc) -> Doc:
    return {"type": "array", "items": items}


def ref(kind: str, name: str) -> Doc:
    return {"$ref": f"#/components/{kind}/{name}"}


def schema(name: str) -> Doc:
    return ref("schemas", name)


def errors(*codes: int) -> Doc:
    names = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
             410: "Gone", 413: "PayloadTooLarge", 422: "UnprocessableContent", 503: "ServiceUnavailable",
             507: "InsufficientStorage"}
    return {str(code): ref("responses", names[code]) for code in codes}


def ok(description: str, content: Doc, **headers: Any) -> Doc:
    response = {"description": description, "content": content}
    if headers:
        response["headers"] = headers
    return {"200": response}


def text(description: str, text_schema: Doc | None = None) -> Doc:
    return ok(description, {TEXT: {"schema": text_schema or {"type": "string"}}})


def xml_or_json(description: str, json_schema: str) -> Doc:
    return ok(description + " (JSON with `Accept: application/json`)",
              {XML: {"schema": {"type": "string"}}, JSON: {"schema": schema(json_schema)}})


def see_other(description: str) -> Doc:
    return {"303": {"description": description, "headers": {"Location": ref("headers", "Location")}}}


def file_responses(description: str, content_type: str = "*/*") -> Doc:
    """A file of the job's area: bottle's static_file (Range, If-Modified-Since, HEAD)."""
    any_body = {content_type: {"schema": {"type": "string", "format": "binary"}}}
    return {
        "200": {"description": description,
                "headers": {"Content-Length": ref("headers", "ContentLength"),
                            "Last-Modified": ref("headers", "LastModified"),
                            "Accept-Ranges": ref("headers", "AcceptRanges")},
                "content": any_body},
        "206": {"description": "The requested byte range (a `Range` request)",
                "headers": {"Content-Range": ref("headers", "ContentRange")},
                "content": any_body},
        "304": {"description": "Not modified since `If-Modified-Since`"},
        "416": {"description": "The `Range` asked for lies beyond the end of the file"},
    }


def form_body(settings: Settings, properties: Doc, required: list[str] | None = None, multipart: bool = False,
              other_fields: bool = True, body_required: bool = True, description: str = "") -> Doc:
    """A form request body, urlencoded (and multipart, whose file parts become by-reference values).

    With ``other_fields``, any job parameter may be sent besides ``properties``: names as
    PARAMETER_NAME, values that XML can carry, each at most MAX_PARAMETER_VALUE characters."""
    form: Doc = {"type": "object", "properties": properties}
    if required:
        form["required"] = required
    value = {"type": "string", "maxLength": settings.MAX_PARAMETER_VALUE, "pattern": XML_TEXT}
    if other_fields:  # (otherwise other fields are ignored)
        form.update(additionalProperties=value, propertyNames={"pattern": PARAMETER_NAME},
                    maxProperties=settings.MAX_PARAMETERS)
    content = {FORM: {"schema": form}}
    if multipart:
        content[MULTIPART] = {"schema": {**form, "additionalProperties": {
            "anyOf": [value, {"type": "string", "format": "binary"}]}}}
    body = {"required": body_required, "content": content}
    if description:
        body["description"] = description
    return body


def json_body(name: str, required: bool = True) -> Doc:
    return {"required": required, "content": {JSON: {"schema": schema(name)}}}


def op(op_id: str, summary: str, tag: str, responses: Doc, *, parameters: list[Doc] | None = None,
       body: Doc | None = None, public: bool = False, description: str = "") -> Doc:
    operation: Doc = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = body
    if public:
        operation["security"] = []  # no credentials needed: overrides the document's security
    return operation


def path_param(name: str, description: str, param_schema: Doc | None = None) -> Doc:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": param_schema or {"type": "string"}}


def query(name: str, description: str, param_schema: Doc, **extra: Any) -> Doc:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": param_schema,
            **extra}
