"""The OpenAPI description of the job definition registry (``/jdl...``, see ``jdl_routes``)."""

from __future__ import annotations

from typing import Any

from opus.jobdef.formats import CONTENT_TYPES, FORMATS
from opus.jobdef.model import NAME_RE
from opus.server.openapi_parts import JSON, STRING, Doc, errors, see_other

NAME = {"type": "string", "pattern": NAME_RE.pattern.replace("\\Z", "$")}
DIGEST = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
          "description": "SHA-256 (hexadecimal) of the stored proposal document, as shown with the proposal"}
TAG = "Job definitions"


def _json(description: str, schema: Doc, status: str = "200") -> Doc:
    return {status: {"description": description, "content": {JSON: {"schema": schema}}}}


def _document(description: str, **headers: Any) -> Doc:
    content = {CONTENT_TYPES[f]: {"schema": STRING} for f in FORMATS if f != "json"}
    content[CONTENT_TYPES["json"] + "; charset=UTF-8"] = {"schema": {"type": "object"}}
    response: Doc = {"description": description, "content": content}
    if headers:
        response["headers"] = headers
    return {"200": response}


def _op(op_id: str, summary: str, responses: Doc, **extra: Any) -> Doc:
    return {"operationId": op_id, "summary": summary, "tags": [TAG], "responses": responses, **extra}


FORMAT = {"name": "format", "in": "query", "required": False,
          "description": "votable (the ActivityDescription, default), wadl or json",
          "schema": {"type": "string", "enum": [*FORMATS, "vot", "xml"]}}
DELETE_FORM = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "required": ["ACTION"], "properties": {"ACTION": {"type": "string", "enum": ["DELETE"]}}}}}}
CHECK = {"name": "check", "in": "query", "required": False,
         "description": "true: check the document as proposing would (the same 400, 403 and 409), storing nothing",
         "schema": {"type": "boolean", "default": False}}
NAME_PARAM = {"name": "name", "in": "path", "required": True, "description": "A job definition's name",
              "schema": NAME}
SUMMARY = {"type": "object", "properties": {
    "name": STRING, "version": STRING, "description": STRING, "type": STRING, "subtype": STRING,
    "href": STRING, "jobs": STRING}}
PROPOSAL = {"type": "object", "properties": {
    "name": STRING, "version": STRING, "proposer": STRING, "proposed": STRING, "href": STRING,
    "digest": DIGEST}}
DIGEST_PARAM = {"name": "digest", "in": "query", "required": False, "schema": DIGEST,
                "description": "The digest shown with the proposal: 409 unless the proposal is still "
                               "that document"}
VALIDATE_FORM = {"required": False, "description": "The digest, as a form field (or the `digest` query "
                 "parameter): one of the two is required", "content": {
                     "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
                         "digest": DIGEST}}}}}
UPLOAD = {"required": True, "description": "The definition (at most 1 MiB): JSON, VOTable or WADL as the "
          "body, or a multipart part `file`", "content": {
              **{CONTENT_TYPES[f]: {"schema": STRING} for f in FORMATS},
              "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                  "file": {"type": "string", "format": "binary"}, "format": {"type": "string"}}}}}}


def paths(jobname_schema: Doc) -> Doc:
    """The registry: live definitions, proposals, versions."""
    return {**_list_and_propose(), **_proposals(), **_definition(jobname_schema)}


def _list_and_propose() -> Doc:
    """The live definitions' list, and proposing one."""
    return {
        "/jdl": {
            "get": _op("listJobDefinitions", "The live job definitions the caller may use", {
                **_json("Name, version, description and links of each", {"type": "object", "properties": {
                    "jobDefinitions": {"type": "array", "items": SUMMARY}}}), **errors(401)}),
            "post": _op("proposeJobDefinition", "Propose a definition or a new version (signed-in users); "
                        "409 if the version exists or another user's proposal holds the name", {
                **_json("Proposed; an admin validates it by its digest", PROPOSAL, "201"),
                **_json("With check=true: the document would be accepted (nothing was stored)", {
                    "type": "object", "properties": {"name": NAME, "version": STRING, "proposer": STRING,
                                                     "status": STRING}}),
                **errors(400, 401, 403, 409, 413)}, requestBody=UPLOAD, parameters=[CHECK]),
        },
    }


def _proposals() -> Doc:
    """Pending proposals: read, withdraw or reject, validate."""
    return {
        "/jdl/proposals": {
            "get": _op("listProposals", "Pending proposals (admins: all; users: their own)", {
                **_json("The proposals", {"type": "object", "properties": {
                    "proposals": {"type": "array", "items": PROPOSAL}}}), **errors(401)}),
        },
        "/jdl/proposals/{name}": {
            "parameters": [NAME_PARAM],
            "get": _op("getProposal", "A proposal (its proposer and admins)", {
                **_document("The proposed definition", **{"OPUS-Proposal-Digest": {
                    "description": "The proposal's digest (to validate it)", "schema": DIGEST}}),
                **errors(400, 401, 403, 404, 409)}, parameters=[FORMAT, DIGEST_PARAM]),
            "delete": _op("withdrawProposal", "Withdraw (proposer) or reject (admin) a proposal", {
                **see_other("Done; `Location` is the list of proposals"), **errors(401, 403, 404)}),
            "post": _op("withdrawProposalByForm", "The same, for HTML forms: ACTION=DELETE", {
                **see_other("Done; `Location` is the list of proposals"), **errors(400, 401, 403, 404)},
                requestBody=DELETE_FORM),
        },
        "/jdl/proposals/{name}/validate": {
            "parameters": [NAME_PARAM],
            "post": _op("validateProposal", "Make a proposal live, keeping the version it replaces (admins); "
                        "the digest names the document reviewed (409 if it changed since)", {
                **see_other("Live; `Location` is the definition"), **errors(400, 401, 403, 404, 409)},
                parameters=[{**DIGEST_PARAM, "description": "The digest shown with the proposal (or as a "
                                                            "form field)"}], requestBody=VALIDATE_FORM),
        },
    }


def _definition(jobname_schema: Doc) -> Doc:
    """One live definition and its kept versions."""
    return {
        "/jdl/{name}": {
            "parameters": [{**NAME_PARAM, "schema": jobname_schema}],
            "get": _op("getJobDefinition", "One job definition, in the format asked for (callers granted it)", {
                **_document("The definition, with the control parameters every job takes"),
                **errors(400, 401, 403, 404)}, parameters=[FORMAT, {
                    "name": "version", "in": "query", "required": False, "schema": STRING,
                    "description": "A kept version (default: the live one)"}]),
            "delete": _op("deleteJobDefinition", "Stop offering a definition; its last version is kept (admins)", {
                **see_other("Deleted; `Location` is the list"), **errors(401, 403, 404)}),
            "post": _op("deleteJobDefinitionByForm", "The same, for HTML forms: ACTION=DELETE", {
                **see_other("Deleted; `Location` is the list"), **errors(400, 401, 403, 404)},
                requestBody=DELETE_FORM),
        },
        "/jdl/{name}/versions": {
            "parameters": [{**NAME_PARAM, "schema": jobname_schema}],
            "get": _op("listJobDefinitionVersions", "The kept versions of a definition (callers granted it)", {
                **_json("The versions, and which is live", {"type": "object", "properties": {
                    "name": STRING, "live": {"type": ["string", "null"]}, "versions": {"type": "array"}}}),
                **errors(401, 403, 404)}),
        },
    }
