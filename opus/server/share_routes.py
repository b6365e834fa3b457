"""Share links, jobs shared with users, and one's notification address (``opus.service.sharing``,
``opus.service.notifications``).

    POST   /share                       a new link: entity=<id>, or job=<id> with result=<id> or input=<name>;
                                        lifetime=<seconds> (JSON or form); 201 with its URL
    GET    /share                       the caller's links (an admin's: everyone's)
    DELETE /share/<link id>             revoke a link (its creator or an admin)
    GET    /share/<link id>.<sig>[/<file name>]   the shared file, to anyone holding the link (no credentials)
    GET    /shared                      the jobs shared with the caller
    GET    /shared/<jobname>/<job id>   a job the caller owns or that was shared with them (JSON, read-only)
    GET    /shared/<jobname>/<job id>/results/<result id>   one of its results
    GET    /shared/<jobname>/<job id>/users                 whom the owner shared it with (users and groups)
    PUT    /shared/<jobname>/<job id>/users/<name>          share it read-only with a user (its owner)
    DELETE /shared/<jobname>/<job id>/users/<name>          stop sharing it with that user
    PUT    /shared/<jobname>/<job id>/groups/<name>         share it read-only with a group's members
    DELETE /shared/<jobname>/<job id>/groups/<name>         stop sharing it with that group
    GET    /notifications, PUT /notifications {"email": ...}   one's address for NOTIFY=email
"""

from __future__ import annotations

import re
from typing import Any

from bottle import HTTPResponse, request

from opus import safejson
from opus.errors import BadRequest, ConfigurationError, Gone, NotFound, Unauthorized
from opus.jobdef.content_types import result_type
from opus.server.files import files_base_url, serve_file
from opus.server.render import iso
from opus.server.routing import RouteTable, services, settings
from opus.server.web import as_json, base_url, form_input, identity, query_items, read_body
from opus.service import addresses
from opus.service.notifications import uid_of
from opus.service.sharing import SharingService, Target
from opus.storage.entitystore import Entity
from opus.storage.jobfiles import JobFiles
from opus.storage.outbox import OutboxStore
from opus.storage.sharestore import ShareLink
from opus.uws import Job

routes = RouteTable()
LINK_ID = "<link_id:re:[0-9a-f]{32}>"
TOKEN = r"<token:re:[0-9a-f]{32}\.[0-9a-f]{32}>"
SHARED_JOB = "/shared/<jobname>/<job_id>"
_EMAIL = re.compile(r"^[^@\s\x00-\x1f<>,;\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
_FIELDS = {"entity", "job", "result", "input", "lifetime"}


def sharing() -> SharingService:
    """The process's sharing service (``Root.sharing``)."""
    return services().sharing


def _outbox() -> OutboxStore:
    """The process's outbox (the notifications' own, built once by ``Root``)."""
    return services().notifications.outbox


def _link_url(token: str, entity: Entity | None) -> str:
    url = f"{files_base_url(settings())}/share/{token}"
    return f"{url}/{entity.file_name}" if entity is not None else url


def _link_json(link: ShareLink, entity: Entity | None = None) -> dict[str, Any]:
    return {"id": link.link_id, "url": _link_url(sharing().token(link), entity), "entityId": link.entity_id,
            "label": link.label, "created": iso(link.created), "expires": iso(link.expires),
            "revoked": iso(link.revoked)}


def _share_request() -> tuple[Target, int | None]:
    """What POST /share asks for, from a JSON object or form (or query) fields."""
    if request.content_type.split(";")[0].strip() == "application/json":
        try:
            data = safejson.loads(read_body(settings().MAX_BODY_SIZE) or b"{}")
        except ValueError:
            raise BadRequest("send a JSON object") from None
        if not isinstance(data, dict) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                 for v in data.values()):
            raise BadRequest("send a JSON object of strings (lifetime: a number)")
        values = {k: str(v) for k, v in data.items()}
    else:
        fields, _uploads = form_input(settings())
        values = dict(query_items()) | dict(fields)
    unknown = set(values) - _FIELDS
    if unknown:
        raise BadRequest(f"unknown field(s) {sorted(unknown)[:5]}; give entity, or job with result or input, "
                         "and optionally lifetime")
    lifetime = values.get("lifetime")
    if lifetime is not None and not re.fullmatch(r"[0-9]{1,12}", lifetime):
        raise BadRequest("lifetime: a number of seconds (at most 12 digits)")
    target = Target(values.get("entity"), values.get("job"), values.get("result"), values.get("input"))
    return target, int(lifetime) if lifetime is not None else None


@routes.post("/share")
def create_link() -> HTTPResponse:
    target, lifetime = _share_request()
    link, entity = sharing().create(identity(), target, lifetime)
    return as_json(_link_json(link, entity), status=201)


@routes.get("/share")
def list_links() -> HTTPResponse:
    return as_json({"links": [_link_json(link) for link in sharing().links(identity())]})


@routes.delete("/share/" + LINK_ID)
def revoke_link(link_id: str) -> HTTPResponse:
    return as_json(_link_json(sharing().revoke(identity(), link_id)))


def _shared_file(token: str, file_name: str | None) -> HTTPResponse:
    entity = sharing().resolve(token)
    if file_name is not None and file_name != entity.file_name:
        raise NotFound(f"this link gives {entity.file_name!r}")
    assert entity.location is not None  # resolve() answers 410 for a file that is gone
    response = serve_file(settings().jobs_dir, entity.location, entity.content_type, entity.file_name)
    if response.status_code >= 400 and response.status_code != 416:
        raise Gone("the shared file is no longer there")
    # The link is a credential in the URL: no Referer carries it on, no shared cache keeps the file.
    response.set_header("Referrer-Policy", "no-referrer")
    response.set_header("Cache-Control", "private, no-store")
    response.set_header("X-Robots-Tag", "noindex")
    response.set_header("Digest", f"sha-256={entity.sha256}")
    return response


@routes.get("/share/" + TOKEN, opus_public=True)
def shared_file(token: str) -> HTTPResponse:
    return _shared_file(token, None)


@routes.get("/share/" + TOKEN + "/<file_name>", opus_public=True)
def shared_file_by_name(token: str, file_name: str) -> HTTPResponse:
    return _shared_file(token, file_name)


# ---- jobs shared with named users and groups --------------------------------------------------------
def _job_json(job: Job) -> dict[str, Any]:
    url = f"{base_url(settings())}/shared/{job.jobname}/{job.job_id}"
    error = None if job.error is None else {"message": job.error.message, "type": job.error.type}
    return {"jobId": job.job_id, "jobName": job.jobname, "runId": job.run_id, "ownerId": job.owner_id,
            "phase": job.phase.value, "creationTime": iso(job.creation_time),
            "startTime": iso(job.start_time), "endTime": iso(job.end_time), "href": url,
            "errorSummary": error,
            "parameters": {p.name: p.value for p in job.parameters if p.name != "WEBHOOK"},
            "results": [{"id": r.result_id, "fileName": r.file_name, "size": r.size,
                         "contentType": r.content_type, "href": f"{url}/results/{r.result_id}"}
                        for r in job.results]}


@routes.get("/shared")
def shared_with_me() -> HTTPResponse:
    return as_json({"jobs": [dict(_job_json(job), sharedSince=iso(share.created), viaGroup=share.group)
                             for share, job in sharing().shared_with(identity())]})


@routes.get(SHARED_JOB)
def shared_job(jobname: str, job_id: str) -> HTTPResponse:
    return as_json(_job_json(sharing().shared_job(identity(), jobname, job_id)))


@routes.get(SHARED_JOB + "/results/<result_id>")
def shared_result(jobname: str, job_id: str, result_id: str) -> HTTPResponse:
    job = sharing().shared_job(identity(), jobname, job_id)
    result = job.result(result_id)
    if result is None:
        raise NotFound(f"job {job_id} has no result {result_id[:64]!r}")
    try:
        ctype = result_type(services().registry.get(job.jobname, job.jdl_version), result.result_id,
                            result.file_name)
    except (NotFound, ConfigurationError):  # the definition is gone or broken: OPUS's extension table
        ctype = result_type(None, result.result_id, result.file_name)
    root = JobFiles.of(settings().jobs_dir, job_id).results
    response = serve_file(root, result.file_name, ctype, result.file_name)
    if response.status_code >= 400 and response.status_code != 416:
        raise NotFound(f"the result {result_id!r} is not available")
    return response


def _grant_json(jobname: str, job_id: str) -> HTTPResponse:
    shares = sharing().grantees(identity(), jobname, job_id)
    return as_json({"users": [{"name": s.grantee_name, "since": iso(s.created)} for s in shares if s.group is None],
                    "groups": [{"name": s.group, "since": iso(s.created)} for s in shares if s.group is not None]})


@routes.get(SHARED_JOB + "/users")
def job_grantees(jobname: str, job_id: str) -> HTTPResponse:
    return _grant_json(jobname, job_id)


@routes.put(SHARED_JOB + "/users/<name>")
def grant_job(jobname: str, job_id: str, name: str) -> HTTPResponse:
    sharing().grant(identity(), jobname, job_id, name)
    return _grant_json(jobname, job_id)


@routes.delete(SHARED_JOB + "/users/<name>")
def ungrant_job(jobname: str, job_id: str, name: str) -> HTTPResponse:
    sharing().ungrant(identity(), jobname, job_id, name)
    return _grant_json(jobname, job_id)


@routes.put(SHARED_JOB + "/groups/<name>")
def grant_job_to_group(jobname: str, job_id: str, name: str) -> HTTPResponse:
    sharing().grant_group(identity(), jobname, job_id, name)
    return _grant_json(jobname, job_id)


@routes.delete(SHARED_JOB + "/groups/<name>")
def ungrant_job_from_group(jobname: str, job_id: str, name: str) -> HTTPResponse:
    sharing().ungrant_group(identity(), jobname, job_id, name)
    return _grant_json(jobname, job_id)


# ---- one's notification address -----------------------------------------------------------------------
def _my_uid() -> int:
    who = identity()
    uid = uid_of(who.owner_key)
    if uid is None:
        raise Unauthorized("notifications need a signed-in user with an account on this server")
    return uid


def _notification_json(uid: int, sent: bool = False) -> HTTPResponse:
    s = settings()
    email, confirmed, _last = _outbox().address(uid)
    return as_json({"email": email, "emailConfirmed": confirmed, "confirmationSent": sent, "mail": bool(s.SMTP_HOST),
                    "digest": bool(s.SMTP_HOST) and s.MAIL_DIGEST_HOUR is not None,
                    "digestHour": s.MAIL_DIGEST_HOUR, "webhooks": s.WEBHOOKS and bool(s.INPUT_URL_HOSTS)})


@routes.get("/notifications")
def my_notifications() -> HTTPResponse:
    return _notification_json(_my_uid())


@routes.put("/notifications")
def set_my_notifications() -> HTTPResponse:
    uid = _my_uid()
    try:
        data = safejson.loads(read_body(settings().MAX_BODY_SIZE) or b"{}")
    except ValueError:
        raise BadRequest('send a JSON object: {"email": "you@example.org"} (null: none)') from None
    if not isinstance(data, dict) or set(data) - {"email"}:
        raise BadRequest('send a JSON object: {"email": "you@example.org"} (null: none)')
    email = data.get("email")
    if email is not None and (not isinstance(email, str) or len(email) > 254 or not _EMAIL.match(email)):
        raise BadRequest("email: not an e-mail address (name@domain)")
    _outbox().set_email(uid, email or None)
    # An address is used once its owner opened the link sent to it (opus.service.addresses).
    sent = addresses.ask_confirmation(services().notifications, uid, identity().name or "")
    return _notification_json(uid, sent)
