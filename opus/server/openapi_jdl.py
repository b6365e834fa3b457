"""The OpenAPI description of the job definition registry (``/jdl...``, see ``jdl_routes``)."""

from __future__ import annotations

from ..jobdef.formats import CONTENT_TYPES, FORMATS
from ..jobdef.model import NAME_RE

NAME = {"type": "string", "pattern": NAME_RE.pattern.replace("\\Z", "$")}
STRING = {"type": "string"}
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


def _document(description: str) -> dict:
    content = {CONTENT_TYPES[f]: {"schema": STRING} for f in FORMATS if f != "json"}
    content[CONTENT_TYPES["json"] + "; charset=UTF-8"] = {"schema": {"type": "object"}}
    return {"200": {"description": description, "content": content}}


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
        "name": STRING, "version": STRING, "proposer": STRING, "proposed": STRING, "href": STRING}}
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
            "post": _op("proposeJobDefinition", "Propose a definition or a new version (signed-in users)", {
                **_json("Proposed; an admin validates it", proposal, "201"),
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
                **_document("The proposed definition"), **_errors(400, 401, 403, 404)}, parameters=[FORMAT]),
            "delete": _op("withdrawProposal", "Withdraw (proposer) or reject (admin) a proposal", {
                **_see_other("Done; `Location` is the list of proposals"), **_errors(401, 403, 404)}),
            "post": _op("withdrawProposalByForm", "The same, for HTML forms: ACTION=DELETE", {
                **_see_other("Done; `Location` is the list of proposals"), **_errors(400, 401, 403, 404)},
                requestBody=DELETE_FORM),
        },
        "/jdl/proposals/{name}/validate": {
            "parameters": [name],
            "post": _op("validateProposal", "Make a proposal live, keeping the version it replaces (admins)", {
                **_see_other("Live; `Location` is the definition"), **_errors(400, 401, 403, 404, 409)}),
        },
        "/jdl/{name}": {
            "parameters": [{**name, "schema": jobname_schema}],
            "get": _op("getJobDefinition", "One job definition, in the format asked for", {
                **_document("The definition, with the control parameters every job takes"),
                **_errors(400, 401, 404)}, parameters=[FORMAT, {
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
            "get": _op("listJobDefinitionVersions", "The kept versions of a definition", {
                **_json("The versions, and which is live", {"type": "object", "properties": {
                    "name": STRING, "live": {"type": ["string", "null"]}, "versions": {"type": "array"}}}),
                **_errors(401, 404)}),
        },
    }
