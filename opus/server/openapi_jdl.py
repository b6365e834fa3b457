"""The OpenAPI description of the job definition registry (``/jdl...``, see ``jdl_routes``)."""

from __future__ import annotations

from opus.jobdef.formats import CONTENT_TYPES, FORMATS
from opus.jobdef.model import NAME_RE
NAME = {"type": "string", "pattern": NAME_RE.pattern.replace("\\Z", "$")}
STRING = {"type": "string"}
DIGEST = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
          "description": "SHA-256 (hexadecimal) of the stored proposal document, as shown with the proposal"}
JSON = "application/json"
TAG = "Job definitions"


def _errors(*codes: int) -> dict:
    names = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
             413: "PayloadTooLarge"}
    return {str(code): {"$ref": f"#/components/responses/{names[code]}"} for code in codes}


def _json(description: str, schema: dict, status: str = "200") -> dict:
    return {status: {"description": description, "content": {JSON: {"schema": schema}}}}


def _see_other(description: str) -> dict:
    return {"303": {"description": description, "headers": {"Location": {"$ref": "#/components/headers/Location"}}}}


def _document(description: str, **headers) -> dict:
    content = {CONTENT_TYPES[f]: {"schema": STRING} for f in FORMATS if f != "json"}
    content[CONTENT_TYPES["json"] + "; charset=UTF-8"] = {"schema": {"type": "object"}}
    response = {"description": description, "content": content}
    if headers:
        response["headers"] = headers
    return {"200": response}


def _op(op_id: str, summary: str, responses: dict, **extra) -> dict:
    return {"operationId": op_id, "summary": summary, "tags": [TAG], "responses": responses, **extra}


FORMAT = {"name": "format", "in": "query", "required": False,
          "description": "votable (the ActivityDescription, default), wadl or json",
          "schema": {"type": "string", "enum": [*FORMATS, "vot", "xml"]}}
DELETE_FORM = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "required": ["ACTION"], "properties": {"ACTION": {"type": "string", "enum": ["DELETE"]}}}}}}


def paths(jobname_schema: dict) -> dict:
    name = {"name": "name", "in": "path", "required": True, "description": "A job definition's name",
            "schema": NAME}
    summary = {"type": "object", "properties": {
        "name": STRING, "version": STRING, "description": STRING, "type": STRING, "subtype": STRING,
        "href": STRING, "jobs": STRING}}
    proposal = {"type": "object", "properties": {
        "name": STRING, "version": STRING, "proposer": STRING, "proposed": STRING, "href": STRING,
        "digest": DIGEST}}
    digest_param = {"name": "digest", "in": "query", "required": False, "schema": DIGEST,
                    "description": "The digest shown with the proposal: 409 unless the proposal is still "
                                   "that document"}
    validate_form = {"required": False, "description": "The digest, as a form field (or the `digest` query "
                     "parameter): one of the two is required", "content": {
                         "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
                             "digest": DIGEST}}}}}
    upload = {"required": True, "description": "The definition (at most 1 MiB): JSON, VOTable or WADL as the "
              "body, or a multipart part `file`", "content": {
                  **{CONTENT_TYPES[f]: {"schema": STRING} for f in FORMATS},
                  "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                      "file": {"type": "string", "format": "binary"}, "format": {"type": "string"}}}}}}
    return {
        "/jdl": {
            "get": _op("listJobDefinitions", "The live job definitions the caller may use", {
                **_json("Name, version, description and links of each", {"type": "object", "properties": {
                    "jobDefinitions": {"type": "array", "items": summary}}}), **_errors(401)}),
            "post": _op("proposeJobDefinition", "Propose a definition or a new version (signed-in users); "
                        "409 if the version exists or another user's proposal holds the name", {
                **_json("Proposed; an admin validates it by its digest", proposal, "201"),
                **_errors(400, 401, 403, 409, 413)}, requestBody=upload),
        },
        "/jdl/proposals": {
            "get": _op("listProposals", "Pending proposals (admins: all; users: their own)", {
                **_json("The proposals", {"type": "object", "properties": {
                    "proposals": {"type": "array", "items": proposal}}}), **_errors(401)}),
        },
        "/jdl/proposals/{name}": {
            "parameters": [name],
            "get": _op("getProposal", "A proposal (its proposer and admins)", {
                **_document("The proposed definition", **{"OPUS-Proposal-Digest": {
                    "description": "The proposal's digest (to validate it)", "schema": DIGEST}}),
                **_errors(400, 401, 403, 404, 409)}, parameters=[FORMAT, digest_param]),
            "delete": _op("withdrawProposal", "Withdraw (proposer) or reject (admin) a proposal", {
                **_see_other("Done; `Location` is the list of proposals"), **_errors(401, 403, 404)}),
            "post": _op("withdrawProposalByForm", "The same, for HTML forms: ACTION=DELETE", {
                **_see_other("Done; `Location` is the list of proposals"), **_errors(400, 401, 403, 404)},
                requestBody=DELETE_FORM),
        },
        "/jdl/proposals/{name}/validate": {
            "parameters": [name],
            "post": _op("validateProposal", "Make a proposal live, keeping the version it replaces (admins); "
                        "the digest names the document reviewed (409 if it changed since)", {
                **_see_other("Live; `Location` is the definition"), **_errors(400, 401, 403, 404, 409)},
                parameters=[{**digest_param, "description": "The digest shown with the proposal (or as a "
                                                            "form field)"}], requestBody=validate_form),
        },
        "/jdl/{name}": {
            "parameters": [{**name, "schema": jobname_schema}],
            "get": _op("getJobDefinition", "One job definition, in the format asked for (callers granted it)", {
                **_document("The definition, with the control parameters every job takes"),
                **_errors(400, 401, 403, 404)}, parameters=[FORMAT, {
                    "name": "version", "in": "query", "required": False, "schema": STRING,
                    "description": "A kept version (default: the live one)"}]),
            "delete": _op("deleteJobDefinition", "Stop offering a definition; its last version is kept (admins)", {
                **_see_other("Deleted; `Location` is the list"), **_errors(401, 403, 404)}),
            "post": _op("deleteJobDefinitionByForm", "The same, for HTML forms: ACTION=DELETE", {
                **_see_other("Deleted; `Location` is the list"), **_errors(400, 401, 403, 404)},
                requestBody=DELETE_FORM),
        },
        "/jdl/{name}/versions": {
            "parameters": [{**name, "schema": jobname_schema}],
            "get": _op("listJobDefinitionVersions", "The kept versions of a definition (callers granted it)", {
                **_json("The versions, and which is live", {"type": "object", "properties": {
                    "name": STRING, "live": {"type": ["string", "null"]}, "versions": {"type": "array"}}}),
                **_errors(401, 403, 404)}),
        },
    }
