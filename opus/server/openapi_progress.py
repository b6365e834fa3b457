"""The OpenAPI description of a job's progress (``…/progress``, see ``progress_routes``)."""

from __future__ import annotations

from opus.server.openapi_parts import STRING, Doc, errors, ok

_NULLABLE_STRING = {"type": ["string", "null"]}
PROGRESS = {"type": "object", "properties": {
    "phase": STRING, "manager": {"type": "string", "enum": ["local", "slurm", "fake", "base"]},
    "queuePosition": {"type": ["integer", "null"], "minimum": 1,
                      "description": "1 = the next job to start, among the QUEUED jobs no manager has taken yet"},
    "queueScanned": {"type": "integer", "description": "How far down the queue a position is counted"},
    "handedTo": {"type": ["string", "null"], "enum": ["starting", "local", "submitting", "slurm", None]},
    "slurmJobId": _NULLABLE_STRING,
    "stdoutSize": {"type": ["integer", "null"], "description": "Bytes the job printed on stdout so far"},
    "stderrSize": {"type": ["integer", "null"], "description": "Bytes the job printed on stderr so far"}}}


def paths(jobname_schema: Doc) -> Doc:
    return {"/rest/{jobname}/{job_id}/progress": {
        "parameters": [
            {"name": "jobname", "in": "path", "required": True, "description": "A job definition's name",
             "schema": jobname_schema},
            {"name": "job_id", "in": "path", "required": True, "description": "The job's id", "schema": STRING}],
        "get": {
            "operationId": "getJobProgress", "summary": "Where an active job stands beyond its phase",
            "tags": ["UWS"],
            "description": "Its place in the queue of jobs waiting for a slot (local manager), or the SLURM job "
                           "it was handed to. Read from the database only. Not part of UWS. The job's owner "
                           "and admins. The tail of its output: a Range request on …/stdout or …/stderr.",
            "responses": {**ok("The job's progress", {"application/json": {"schema": PROGRESS}}),
                          **errors(401, 403, 404)}}}}
