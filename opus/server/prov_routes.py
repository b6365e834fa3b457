"""Provenance over HTTP (``docs/provenance.md``).

    GET /rest/<jobname>/<job_id>/provenance   one job: its activity and results, then DEPTH steps
                                              back (default 1: its inputs); its owner and admins
    GET /provsap?ID=...                       ProvSAP: any jobs and entities, DEPTH steps BACK or
                                              FORTH; only what the caller may see

Both are built from the database when asked (never in a job's completion).
"""

from __future__ import annotations

from bottle import HTTPResponse
from prov.model import ProvDocument

from opus import provenance
from opus.provenance.options import ProvOptions
from opus.server.files import protect
from opus.server.routing import RouteTable, services, settings
from opus.server.urls import JOB_RULE
from opus.server.web import base_url, identity, query_items

routes = RouteTable()


def _answer(doc: ProvDocument, options: ProvOptions, name: str) -> HTTPResponse:
    body = provenance.serialize(doc, options.format, attributes=options.attributes)
    ext = {"json": "json", "provn": "provn", "xml": "provx", "votable": "vot", "svg": "svg", "png": "png"}
    # Served like a job's files (opus.server.files): the document quotes names and values that users
    # chose, so an SVG or XML graph is an attachment, sandboxed and never sniffed.
    return protect(HTTPResponse(body, status=200, headers={"Content-Type": options.content_type}),
                   options.content_type, f"{name}.{ext[options.format]}")


@routes.get(JOB_RULE + "/provenance")
def job_provenance(jobname: str, job_id: str) -> HTTPResponse:
    job = services().jobs.get(jobname, job_id, identity())
    options = provenance.job_options(query_items(), job.job_id)
    doc = provenance.build(services(), identity(), options, base_url(settings()), with_results=True)
    return _answer(doc, options, f"provenance-{job.job_id}")


@routes.get("/provsap")
def provsap() -> HTTPResponse:
    options = provenance.provsap_options(query_items())
    doc = provenance.build(services(), identity(), options, base_url(settings()))
    return _answer(doc, options, "provenance")
