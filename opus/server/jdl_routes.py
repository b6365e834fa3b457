"""The registry of job definitions over HTTP: /jdl...

    GET    /jdl                                  the live definitions the caller may use (JSON)
    GET    /jdl/<name>?format=&version=          one definition: votable (default), wadl or json
    GET    /jdl/<name>/versions                  its kept versions (JSON)
                                                 (these three: only definitions granted to the caller;
                                                 403 for others, as POST /rest/<name> answers)
    DELETE /jdl/<name>                           admin: stop offering it (its last version is kept)
    POST   /jdl                                  propose a definition or a new version: the document as
                                                 the body (JSON, VOTable, WADL) or a multipart "file";
                                                 ``?check=true``: answer 200 or what proposing would
                                                 refuse (400, 403, 409), storing nothing
    GET    /jdl/proposals                        pending proposals (admins: all; users: their own),
                                                 each with its digest (SHA-256 of the stored document)
    GET    /jdl/proposals/<name>?format=&digest= one proposal (admins, or the user who proposed it);
                                                 its digest in the OPUS-Proposal-Digest header; with
                                                 ``digest``, 409 unless it is still that document
    DELETE /jdl/proposals/<name>                 withdraw (the proposer) or reject (an admin)
    POST   /jdl/proposals/<name>/validate        admin: make it live, keeping the version it replaces;
                                                 ``digest`` (form field or query) names the document
                                                 the admin reviewed: 409 if it changed since

A pending proposal belongs to its proposer: another user proposing the same name gets 409.

Browsers' forms may use POST with ``ACTION=DELETE`` instead of DELETE.
"""

from __future__ import annotations

from typing import Any

from bottle import HTTPResponse, request

from opus.auth.identity import Identity
from opus.errors import BadRequest, ConfigurationError, Conflict, Forbidden, NotFound, Unauthorized
from opus.jobdef import JobDefinition, control, health
from opus.jobdef.definition_files import InvalidDefinitionFile
from opus.jobdef.limits import job_limits
from opus.jobdef.formats import CONTENT_TYPES, FORMATS, read_definition, write_definition
from opus.jobdef.registry import is_proposer
from opus.server import compat_routes, urls
from opus.server.limits import MAX_DEFINITION_SIZE
from opus.server.routing import RouteTable, services, settings
from opus.server.web import (as_json, base_url, check_body_size, form_input, form_values, identity, query_get,
                             query_values, read_body, require_admin, see_other)
from opus.settings import Settings

DIGEST_HEADER = "OPUS-Proposal-Digest"
routes = RouteTable()


def _signed_in(message: str) -> tuple[str, Identity]:
    """The caller's name and identity; 401 with ``message`` when anonymous."""
    who = identity()
    if who.name is None:  # anonymous
        raise Unauthorized(message)
    return who.name, who


def _require_granted(name: str) -> None:
    """A definition (its script included) is shown only to callers who may use it: the same 403
    as ``POST /rest/<name>``; admins may see every one."""
    if not identity().may_use(name):
        raise Forbidden(f"you may not use the job definition {name!r}")


def _digest_sent() -> str:
    """The ``digest`` of a validate request: a form field or a query parameter, given once."""
    fields, _files = form_input(settings())
    values = form_values(fields, "digest") + query_values("digest")
    if len(set(values)) > 1:
        raise BadRequest("digest given more than once")
    if not values:
        raise BadRequest("validating a proposal needs the 'digest' of the document you reviewed, as shown "
                         "in GET /jdl/proposals (or the OPUS-Proposal-Digest header of the proposal)")
    return values[0]


def _format() -> str:
    fmt = (query_get("format") or "votable").strip().lower()
    fmt = {"vot": "votable", "xml": "votable"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise BadRequest(f"format {fmt[:32]!r}: use one of {', '.join(FORMATS)}")
    return fmt


def _document(jobdef: JobDefinition, fmt: str) -> HTTPResponse:
    access_url = urls.job_list(base_url(settings()), jobdef.name)
    body = write_definition(jobdef, fmt, access_url=access_url, control=control.parameters(settings()),
                            limits=job_limits(jobdef, settings()))
    ctype = CONTENT_TYPES[fmt]
    ctype += "; charset=UTF-8" if fmt == "json" else ""
    ext = {"votable": "vot", "wadl": "wadl", "json": "json"}[fmt]
    return HTTPResponse(body, status=200, headers={
        "Content-Type": ctype, "Content-Disposition": f'inline; filename="{jobdef.name}.{ext}"'})


def _summary(jobdef: JobDefinition, base: str) -> dict[str, Any]:
    return {"name": jobdef.name, "version": jobdef.version, "description": jobdef.description,
            "type": jobdef.type, "subtype": jobdef.subtype, "href": urls.jdl(base, jobdef.name),
            "jobs": urls.job_list(base, jobdef.name)}


def _uploaded_definition(settings: Settings) -> JobDefinition:
    """The proposed document: a multipart part "file", or the request body itself."""
    ctype = request.content_type.split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        check_body_size(MAX_DEFINITION_SIZE + 64 * 1024)
        fields, files = form_input(settings)
        parts = [f for f in files if f.name == "file"]
        if len(parts) != 1:
            raise BadRequest("send the definition as one multipart part named 'file'")
        data = parts[0].stream.read(MAX_DEFINITION_SIZE + 1)
        filename = parts[0].filename
        fmt = next((v for k, v in fields if k.lower() == "format"), None)
    else:
        data = read_body(MAX_DEFINITION_SIZE)
        filename, fmt = "", query_get("format") or None
    if len(data) > MAX_DEFINITION_SIZE:
        raise BadRequest(f"a job definition is at most {MAX_DEFINITION_SIZE} bytes")
    if not data.strip():
        raise BadRequest("no job definition sent: send it as the body or as a multipart part named 'file'")
    try:
        return read_definition(data, fmt.strip().lower() if fmt else None, content_type=ctype, filename=filename)
    except ConfigurationError as exc:
        raise BadRequest(f"invalid job definition: {exc}") from None


def _check_only() -> bool:
    """``POST /jdl?check=true``: check the document as proposing would, without storing it."""
    value = (query_get("check") or "false").strip().lower()
    if value not in ("true", "false"):
        raise BadRequest(f"check {value[:16]!r}: true or false")
    return value == "true"


def _action_delete() -> None:
    fields, _files = form_input(settings())
    actions = [v.strip().upper() for k, v in fields if k.upper() == "ACTION"]
    if actions != ["DELETE"]:
        raise BadRequest("POST here needs ACTION=DELETE")


def _own_proposal(name: str) -> tuple[JobDefinition, dict[str, Any]]:
    _name, who = _signed_in("sign in to see proposed job definitions")
    jobdef, meta = services().registry.proposal(name)
    if not who.is_admin and not is_proposer(meta, who.name, who.owner_key):
        raise Forbidden(f"the proposal {name!r} is someone else's")
    return jobdef, meta


# ---- live definitions ----------------------------------------------------------------------------
@routes.get("/jdl")
def jdl_list() -> HTTPResponse:
    """The usable definitions; for admins also ``problems``: every definition file that is invalid,
    misnamed or needs what this host lacks, with the file and the reason (opus.jobdef.health).
    ``?format=original``: the original OPUS's list shape, for its clients (deprecated)."""
    if (query_get("format") or "").strip().lower() == compat_routes.ORIGINAL_LIST:
        return compat_routes.original_jdl_list()
    who = identity()
    base = base_url(settings())
    registry = services().registry
    body: dict[str, Any] = {"jobDefinitions": [_summary(d, base) for d in registry.all() if who.may_use(d.name)]}
    if who.is_admin:
        body["problems"] = [h.public() for h in health.report(registry) if h.state != health.OK]
    return as_json(body)


@routes.get("/jdl/proposals")
def proposals() -> HTTPResponse:
    _name, who = _signed_in("sign in to see proposed job definitions")
    base = base_url(settings())
    return as_json({"proposals": [
        {**p, "href": urls.proposal(base, p["name"])} for p in services().registry.proposals()
        if who.is_admin or is_proposer(p, who.name, who.owner_key)]})


@routes.post("/jdl")
def propose() -> HTTPResponse:
    proposer, who = _signed_in("sign in to propose a job definition")
    if not who.may_edit_definitions:
        raise Forbidden("proposing a job definition needs the editor role: ask an admin")
    check = _check_only()
    jobdef = _uploaded_definition(settings())
    if check:  # what proposing would answer, storing nothing (the web editor's "Check")
        checked = services().registry.check_proposal(jobdef, proposer, who.owner_key)
        return as_json({**checked, "status": "valid: proposing it would be accepted (nothing was stored)"})
    meta = services().registry.propose(jobdef, proposer, who.owner_key)
    services().notifications.definition_proposed(jobdef.name, proposer, str(meta.get("digest", "")))
    url = urls.proposal(base_url(settings()), jobdef.name)
    response = as_json({**meta, "href": url, "status": "proposed: an admin validates it"}, 201)
    response.set_header("Location", url)
    return response


@routes.get("/jdl/proposals/<name>")
def proposal(name: str) -> HTTPResponse:
    fmt = _format()
    jobdef, meta = _own_proposal(name)
    pinned = (query_get("digest") or "").strip().lower()
    if pinned and pinned != meta["digest"]:
        # A link made from the list shows the document that Validate would make live, or nothing.
        raise Conflict(f"the proposal {name!r} changed since its digest was shown: list the proposals again")
    response = _document(jobdef, fmt)
    response.set_header(DIGEST_HEADER, meta["digest"])
    return response


@routes.route(["DELETE", "POST"], "/jdl/proposals/<name>")
def withdraw(name: str) -> HTTPResponse:
    if request.method == "POST":
        _action_delete()
    _own_proposal(name)
    services().registry.withdraw(name)
    return see_other(urls.proposals(base_url(settings())))


@routes.post("/jdl/proposals/<name>/validate")
def validate(name: str) -> HTTPResponse:
    require_admin(identity(), "validating a job definition")
    jobdef = services().registry.validate(name, _digest_sent())
    return see_other(urls.jdl(base_url(settings()), jobdef.name))


@routes.get("/jdl/<name>")
def jdl_get(name: str) -> HTTPResponse:
    fmt = _format()
    version = query_get("version") or None
    if services().registry.known(name):  # before reading it: an ungranted caller learns nothing of its versions
        _require_granted(name)
    jobdef = services().registry.get(name, version)
    if version is not None and jobdef.version != version:
        raise NotFound(f"no version {version[:64]!r} of the job definition {name!r}")
    return _document(jobdef, fmt)


@routes.get("/jdl/<name>/versions")
def jdl_versions(name: str) -> HTTPResponse:
    registry = services().registry
    if not registry.known(name):
        raise registry.unknown(name)
    _require_granted(name)
    try:
        live: str | None = registry.get(name).version
    except (NotFound, InvalidDefinitionFile):  # a broken live file: its kept versions are still listed
        live = None
    base = base_url(settings())
    versions = registry.versions(name)
    if live is not None and live not in {v["version"] for v in versions}:
        versions.append({"version": live, "kept": None})
    return as_json({"name": name, "live": live, "versions": [
        {**v, "live": v["version"] == live, "href": urls.jdl_version(base, name, v["version"])}
        for v in versions]})


@routes.route(["DELETE", "POST"], "/jdl/<name>")
def jdl_delete(name: str) -> HTTPResponse:
    if request.method == "POST":
        _action_delete()
    require_admin(identity(), "deleting a job definition")
    services().registry.delete(name)
    return see_other(urls.jdl_list(base_url(settings())))
