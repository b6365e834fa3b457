"""The OpenAPI description of the UWS tree (``/rest/{jobname}...``, see ``uws_routes``)."""

from __future__ import annotations

from opus.server.openapi_parts import (JOB_ID_PATTERN, OCTETS, PHASES, STRING, TEXT, VOTABLE, XML_TEXT, Doc, array,
                                       errors, file_responses, form_body, ok, op, path_param, query, see_other,
                                       text, xml_or_json)
from opus.settings import Settings

TAG = "UWS"
J = "/rest/{jobname}/{job_id}"
STD_ERRORS = errors(401, 403, 404, 503)
CHANGE_ERRORS = errors(400, 401, 403, 404, 413, 503)
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                   "description": "Your own key for this creation: a retry with the same key and the same "
                                  "request answers the job already created (303), not a second job"}
RANGE = {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "A byte range, e.g. `bytes=0-99` (answered with 206)"}
#: The UWS control parameters a new job may be given.
CONTROL = {
    "PHASE": {"type": "string", "enum": ["RUN"], "description": "RUN: start the job at once"},
    "RUNID": {"type": "string", "maxLength": 64, "description": "A client-chosen label"},
    "EXECUTIONDURATION": {"type": "string", "pattern": "^[0-9]+$",
                          "description": "Wall-clock limit in seconds (0 = unlimited)"},
    "DESTRUCTION": {"type": "string", "format": "date-time", "description": "When the job is destroyed"},
}


def paths(settings: Settings, jobname: Doc) -> Doc:
    """The UWS tree: /rest/{jobname} and the job resources below it."""
    job_id = path_param("job_id", "The job's id: 16 lowercase hexadecimal characters",
                        {"type": "string", "pattern": JOB_ID_PATTERN})
    job = [jobname, job_id]
    return {**_job_list(settings, jobname), **_job(settings, job), **_job_properties(settings, job),
            **_job_data(settings, job)}


def _job_list(settings: Settings, jobname: Doc) -> Doc:
    """The job list: read it, create a job."""
    return {
        "/rest/{jobname}": {
            "parameters": [jobname],
            "get": op("listJobs", "The job list of a job definition", TAG, {
                **xml_or_json("`<uws:jobs>`, newest first; ARCHIVED jobs only with PHASE=ARCHIVED",
                               "JobList"),
                **errors(400, 401, 403, 404)}, parameters=[
                query("PHASE", "Only jobs in these phases (repeatable: union)",
                       array({"type": "string", "enum": PHASES}), style="form", explode=True),
                query("AFTER", "Only jobs created strictly after this instant (ISO 8601)",
                       {"type": "string", "format": "date-time"}),
                query("LAST", "Only the newest n jobs", {"type": "integer", "minimum": 1}),
                query("BEFORE", "OPUS extension: only jobs created strictly before this instant (ISO 8601)",
                       {"type": "string", "format": "date-time"}),
                query("RUNID", "OPUS extension: only jobs with this run id; `*` matches any characters, "
                      "and then case is ignored (`*survey*`: run ids containing \"survey\")",
                      {"type": "string", "maxLength": 200, "pattern": XML_TEXT}),
            ]),
            "post": op("createJob", "Create a job", TAG, {
                **see_other("The job is created; `Location` is its URL"), **CHANGE_ERRORS, **errors(422, 507)},
                parameters=[query("PHASE", "RUN: start the job at once", {**STRING, "enum": ["RUN"]}),
                            IDEMPOTENCY_KEY],
                body=form_body(settings, CONTROL, multipart=True, body_required=False, description=(
                    "The job's parameters (see `GET /jdl/{name}`) and the control parameters; a multipart "
                    "file part becomes a by-reference parameter.")),
                description="Answers 303 to the new job. Parameter names are case-insensitive."),
        },
    }


def _job(settings: Settings, job: list[Doc]) -> Doc:
    """One job: read it (and wait), delete it, change it."""
    return {
        J: {
            "parameters": job,
            "get": op("getJob", "The job", TAG,
                       {**xml_or_json("`<uws:job>`", "Job"), **errors(400), **STD_ERRORS},
                       parameters=[
                           query("WAIT", "Block until the phase changes, at most this many seconds "
                                  "(-1: the server's maximum)", {"type": "integer", "minimum": -1}),
                           query("PHASE", "With WAIT: block only while the job is in this phase",
                                  {"type": "string", "enum": PHASES})]),
            "delete": op("deleteJob", "Delete the job", TAG, {
                **see_other("Deleted; `Location` is the job list"), **STD_ERRORS}),
            "post": op("postJob", "Delete, run, abort, or set parameters", TAG, {
                **see_other("Done; `Location` is the job (or, after ACTION=DELETE, the job list)"),
                **CHANGE_ERRORS}, body=form_body(settings, {
                    "ACTION": {"type": "string", "enum": ["DELETE"]},
                    "PHASE": {"type": "string", "enum": ["RUN", "ABORT"]}}, multipart=True)),
        },
    }


def _job_properties(settings: Settings, job: list[Doc]) -> Doc:
    """The job's single-valued resources: phase, limits, quote, owner, error."""
    return {
        J + "/phase": {
            "parameters": job,
            "get": op("getPhase", "The job's phase", TAG,
                       {**text("The phase", {"type": "string", "enum": PHASES}), **STD_ERRORS}),
            "post": op("postPhase", "Run or abort the job", TAG, {
                **see_other("Done; `Location` is the job"), **CHANGE_ERRORS},
                body=form_body(settings, {"PHASE": {"type": "string", "enum": ["RUN", "ABORT"]}}, ["PHASE"],
                                other_fields=False)),
        },
        J + "/executionduration": {
            "parameters": job,
            "get": op("getExecutionDuration", "The wall-clock limit in seconds (0 = unlimited)", TAG,
                       {**text("Seconds", {"type": "string", "pattern": "^[0-9]+$"}), **STD_ERRORS}),
            "post": op("postExecutionDuration", "Change the limit (while PENDING)", TAG, {
                **see_other("Done; `Location` is the job"), **CHANGE_ERRORS},
                body=form_body(settings, {"EXECUTIONDURATION": {"type": "string", "pattern": "^[0-9]+$"}},
                                ["EXECUTIONDURATION"], other_fields=False)),
        },
        J + "/destruction": {
            "parameters": job,
            "get": op("getDestruction", "When the job will be destroyed", TAG,
                       {**text("An ISO 8601 instant"), **STD_ERRORS}),
            "post": op("postDestruction", "Change the destruction instant", TAG, {
                **see_other("Done; `Location` is the job"), **CHANGE_ERRORS},
                body=form_body(settings, {"DESTRUCTION": {**STRING, "format": "date-time"}},
                                ["DESTRUCTION"], other_fields=False)),
        },
        J + "/quote": {
            "parameters": job,
            "get": op("getQuote", "The estimated completion instant (empty when unknown)", TAG,
                       {**text("An ISO 8601 instant or nothing"), **STD_ERRORS}),
        },
        J + "/owner": {
            "parameters": job,
            "get": op("getOwner", "The job's owner (empty for anonymous jobs)", TAG,
                       {**text("The owner's name"), **STD_ERRORS}),
        },
        J + "/error": {
            "parameters": job,
            "get": op("getError", "The error VOTable of a failed job", TAG, {
                **ok("A VOTable with `INFO name=QUERY_STATUS value=ERROR`",
                      {VOTABLE: {"schema": {"type": "string"}}}),
                **STD_ERRORS}, description="404 when the job has no error."),
        },
    }


def _job_data(settings: Settings, job: list[Doc]) -> Doc:
    """The job's parameters, results and output."""
    return {
        J + "/parameters": {
            "parameters": job,
            "get": op("getParameters", "The job's parameters", TAG,
                       {**xml_or_json("`<uws:parameters>`", "Parameters"), **STD_ERRORS}),
            "post": op("postParameters", "Set parameters (while PENDING)", TAG, {
                **see_other("Done; `Location` is the job"), **CHANGE_ERRORS},
                body=form_body(settings, {}, multipart=True)),
        },
        J + "/parameters/{name}": {
            "parameters": [*job, path_param("name", "A parameter's name (case-insensitive)")],
            "get": op("getParameter", "One parameter's value, or its uploaded file", TAG, {
                **file_responses("The value (`text/plain`) or the uploaded file"), **STD_ERRORS},
                parameters=[RANGE]),
            "put": op("putParameter", "Replace one parameter's value (while PENDING)", TAG, {
                **see_other("Done; `Location` is the job"), **errors(400, 401, 403, 404)},
                body={"required": True, "description": "The new value (UTF-8 text) or file content",
                      "content": {TEXT: {"schema": {"type": "string"}},
                                  OCTETS: {"schema": {"type": "string", "format": "binary"}}}}),
        },
        J + "/results": {
            "parameters": job,
            "get": op("getResults", "The job's results", TAG,
                       {**xml_or_json("`<uws:results>`", "Results"), **STD_ERRORS}),
        },
        J + "/results/{result_id}": {
            "parameters": [*job, path_param("result_id", "A result's id")],
            "get": op("getResult", "A result file, with its own content type", TAG, {
                **file_responses("The result"), **STD_ERRORS}, parameters=[RANGE]),
        },
        J + "/stdout": {
            "parameters": job,
            "get": op("getStdout", "What the job's script printed on stdout", TAG, {
                **file_responses("The text", TEXT), **STD_ERRORS}, parameters=[RANGE]),
        },
        J + "/stderr": {
            "parameters": job,
            "get": op("getStderr", "What the job's script printed on stderr", TAG, {
                **file_responses("The text", TEXT), **STD_ERRORS}, parameters=[RANGE]),
        },
    }
