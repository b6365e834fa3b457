"""An active job's progress beyond UWS, for the web client's job page.

    GET /rest/<jobname>/<job_id>/progress   JSON: its place in the local queue, or its SLURM job
                                            (``opus.service.progress``); its owner and admins

The tail of what the job prints needs no route of its own: ``…/stdout`` and ``…/stderr`` answer
Range requests (``Range: bytes=-16384``) while the job runs.
"""

from __future__ import annotations

from bottle import HTTPResponse

from opus.server.routing import RouteTable, services, settings
from opus.server.urls import JOB_RULE
from opus.server.web import as_json, identity
from opus.service.progress import progress_of

routes = RouteTable()


@routes.get(JOB_RULE + "/progress")
def job_progress(jobname: str, job_id: str) -> HTTPResponse:
    root = services()
    job = root.jobs.get(jobname, job_id, identity())
    answer = progress_of(root.store, root.manager.name, job, settings().jobs_dir)
    response = as_json(answer)
    response.set_header("Cache-Control", "no-store")
    return response
