"""The handler endpoint through which job wrappers (and the SLURM epilog) report.

The route reads and parses; ``opus.service.completion.CompletionService`` checks and applies.
"""

from __future__ import annotations

from bottle import HTTPResponse

from opus import safejson
from opus.errors import BadRequest
from opus.server.routing import RouteTable, services
from opus.server.web import as_json, read_body

routes = RouteTable()


@routes.post("/handler/job_event", opus_public=True)
def job_event() -> HTTPResponse:
    """A job wrapper's report: JSON {job_id, token, phase, message?, results?, start_time?, end_time?};
    or the SLURM epilog's hint: {job_id, event: "slurm_end", slurm_job_id, exit_code}."""
    root = services()
    body = read_body(root.settings.MAX_REPORT_SIZE)  # public: bounded before the token is checked
    try:
        report = safejson.loads(body or b"{}")  # 400 when nested deeper than MAX_JSON_DEPTH
    except ValueError:
        raise BadRequest("the report must be a JSON object") from None
    if not isinstance(report, dict):
        raise BadRequest("the report must be a JSON object")
    job_id = str(report.get("job_id") or "")
    if report.get("event") == "slurm_end":
        # From scripts/opus-slurm-epilog, which holds no secret: a hint that the server checks
        # against its own sources before changing anything.
        outcome = root.completion.epilog_hint(report)
        return as_json({"job_id": job_id, "event": "slurm_end", "outcome": outcome})
    outcome = root.completion.wrapper_report(report)
    return as_json({"job_id": job_id, "phase": report.get("phase"), "outcome": outcome})
