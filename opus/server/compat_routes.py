"""The original OPUS's URLs, kept answering for the bookmarks and scripts written against it
(deprecated: docs/migration.md says what replaces each).

    GET  /rest/<jobname>/<id>/provjson|provxml|provsvg   301 to .../provenance?format=json|xml|svg
    POST /rest/<jobname>/<id>/parameters/<p>  VALUE=v    sets one parameter of a PENDING job, as
                                                         POST .../parameters p=v does: 303 to the job
    GET  /jdl/<name>/json                                the definition in the original's JSON shape
    GET  /jdl/<name>/script                              its script (text/plain)
    GET  /opus_client/..., /jobs..., /job_execute..., /job_edit/..., /job_form/..., /job_definition...,
         /admin/preferences|server_accounts|server_jobs, /accounts/profile
                                                         301 to the web client's page for the same thing

``original_jdl_list`` is the original's ``GET /jdl`` answer ({"jobnames": [...], "details": {...}}),
served by ``GET /jdl?format=original`` (opus.server.jdl_routes).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from bottle import HTTPResponse, request

from opus.errors import BadRequest, Forbidden
from opus.jobdef import JobDefinition, control
from opus.jobdef.original_json import to_original
from opus.server import urls
from opus.server.errors import KIND, PAGE
from opus.server.routing import RouteTable, services, settings
from opus.server.urls import JOB_RULE
from opus.server.web import as_json, base_url, form_input, identity, required, see_other, text

routes = RouteTable()
#: Where the original's web client was mounted (its Apache example: WSGIScriptAlias /opus_client).
CLIENT_PREFIXES = ("", "/opus_client")
#: The original's query value of ``GET /jdl`` asking for its list shape.
ORIGINAL_LIST = "original"


def _moved(path: str, query: dict[str, str] | None = None) -> HTTPResponse:
    """301 Moved Permanently to ``path`` (a path of this server, made absolute)."""
    location = base_url(settings()) + path + (f"?{urlencode(query)}" if query else "")
    return HTTPResponse(status=301, headers={"Location": location, "Content-Type": "text/plain; charset=UTF-8"},
                        body=f"Moved to {location}\n")


def _segment(value: str) -> str:
    return quote(value, safe="")


# ---- provenance files and parameters of a job ------------------------------------------------------
@routes.get(JOB_RULE + "/prov<kind:re:json|xml|svg>")
def provenance_file(jobname: str, job_id: str, kind: str) -> HTTPResponse:
    """The original served the provenance files each job wrote; the same document is built here.
    Only for those who may read the job (403/404 as the job's own URL answers)."""
    services().jobs.get(jobname, job_id, identity())
    location = urls.job(base_url(settings()), jobname, job_id) + "/provenance?" + urlencode({"format": kind})
    return HTTPResponse(status=301, headers={"Location": location, "Content-Type": "text/plain; charset=UTF-8"},
                        body=f"Moved to {location}\n")


@routes.post(JOB_RULE + "/parameters/<name>")
def set_parameter(jobname: str, job_id: str, name: str) -> HTTPResponse:
    """The original's way of changing one parameter of a PENDING job: a form with VALUE."""
    fields, files = form_input(settings())
    if files:
        raise BadRequest("send the new value as the form field VALUE; replace an uploaded file with "
                         f"PUT .../parameters/{name[:64]} or POST .../parameters (multipart)")
    value = required(fields, "VALUE")
    services().jobs.set_parameters(jobname, job_id, identity(), [(name, value)], base=base_url(settings()))
    return see_other(urls.job(base_url(settings()), jobname, job_id))


# ---- job definitions ------------------------------------------------------------------------------
def _granted(name: str) -> JobDefinition:
    """A live definition the caller may use (403 otherwise, as /jdl/<name> answers)."""
    registry = services().registry
    if registry.known(name) and not identity().may_use(name):
        raise Forbidden(f"you may not use the job definition {name[:64]!r}")
    return registry.get(name)


@routes.get("/jdl/<name>/json")
def definition_json(name: str) -> HTTPResponse:
    return as_json(to_original(_granted(name), control.parameters(settings())))


@routes.get("/jdl/<name>/script")
def definition_script(name: str) -> HTTPResponse:
    return text(_granted(name).script)


def original_jdl_list() -> HTTPResponse:
    """The original's ``GET /jdl``: the names the caller may use, and each definition in its shape."""
    who = identity()
    jobdefs = sorted((d for d in services().registry.all() if who.may_use(d.name)), key=lambda d: d.name)
    ctrl = control.parameters(settings())
    body: dict[str, Any] = {"jobnames": [d.name for d in jobdefs],
                            "details": {d.name: to_original(d, ctrl) for d in jobdefs}}
    return as_json(body)


# ---- the original web client's pages ----------------------------------------------------------------
def _editor(jobname: str) -> HTTPResponse:
    """Its definition page: ``new/<name>`` and ``tmp/<name>`` were definitions being proposed."""
    head, _, last = jobname.rstrip("/").rpartition("/")
    if not last:
        return _moved("/web/editor")
    return _moved("/web/editor", {"proposal" if head in ("new", "tmp") else "name": last})


#: Route config key holding the page a route of the original client moved to ("{jobname}" etc. filled in).
MOVED_TO = "opus_moved_to"
#: Each page of the original client and the web client's page for the same thing.
PAGES: list[tuple[str, str]] = [
    ("/jobs", "/web/jobs"), ("/jobs/", "/web/jobs"), ("/jobs/<jobname>", "/web/jobs/{jobname}"),
    ("/job_execute", "/web/"), ("/job_execute/", "/web/"), ("/job_execute/<jobname>", "/web/new/{jobname}"),
    ("/job_form/<jobname>", "/web/new/{jobname}"), ("/job_edit/<jobname>/<job_id>", "/web/jobs/{jobname}/{job_id}"),
    ("/job_definition", "/web/editor"), ("/job_definition/", "/web/editor"),
    ("/admin/preferences", "/web/admin"), ("/admin/server_accounts", "/web/admin"),
    ("/admin/server_jobs", "/web/admin"), ("/accounts/profile", "/web/profile"),
]


def old_page(**parts: str) -> HTTPResponse:
    """301 to the web client's page that replaces the original client's page of this route."""
    target: str = request.route.config[MOVED_TO]
    return _moved(target.format(**{name: _segment(value) for name, value in parts.items()}))


def _pages() -> None:
    """Declare the redirects of every page of the original client, under each of its prefixes.
    Page routes: a caller who must sign in gets the sign-in form, then comes back."""
    for prefix in CLIENT_PREFIXES:
        moves = PAGES + ([("", "/web/"), ("/", "/web/")] if prefix else [])  # / is this server's index
        for path, target in moves:
            routes.get(prefix + path, **{KIND: PAGE, MOVED_TO: target})(old_page)
        routes.get(prefix + "/job_definition/<jobname:path>", **{KIND: PAGE})(_editor)


_pages()
