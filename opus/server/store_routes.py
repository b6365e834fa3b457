"""The result store: every input and result of every job, by entity id.

    GET /store?ID=<id>                the entity's file (its content type, Content-Length, ranges)
    GET /store/<id>/<file name>       the same, under its own file name
    GET /store/<id>                   what is known of it (JSON): checksum, size, type, origin, users

Access follows the jobs': an entity belongs to the owner of the job it came in with; its owner
and admins may read it.  An entity whose job was deleted keeps its record (provenance still names
it) but not its file: 410 Gone.
"""

from __future__ import annotations

from typing import Any

from bottle import HTTPResponse

from opus.auth.identity import can_access
from opus.errors import BadRequest, Forbidden, Gone, NotFound
from opus.server import urls
from opus.server.files import files_base_url, serve_file
from opus.server.render import iso
from opus.server.routing import RouteTable, services, settings
from opus.server.urls import ENTITY_ID_RE, ENTITY_RULE
from opus.server.web import as_json, base_url, identity, query_values
from opus.storage.entitystore import Entity

routes = RouteTable()


def _entity_of(entity_id: str) -> Entity:
    entity = services().entities.get(entity_id)
    if entity is None:
        raise NotFound(f"no entity {entity_id!r} in the store")
    if not can_access(identity(), entity.owner_key):
        raise Forbidden(f"the entity {entity_id} belongs to someone else")
    return entity


def _serve(entity: Entity) -> HTTPResponse:
    if entity.location is None:  # not available
        raise Gone(f"the file of entity {entity.entity_id} was deleted with its job")
    # The recorded type was decided by the server (opus.jobdef.content_types); serve_file filters it again
    # for records made before that, and adds nosniff, the sandboxing CSP and the disposition.
    response = serve_file(settings().jobs_dir, entity.location, entity.content_type, entity.file_name)
    if response.status_code >= 400 and response.status_code != 416:
        raise Gone(f"the file of entity {entity.entity_id} is no longer there")
    response.set_header("Digest", f"sha-256={entity.sha256}")
    return response


@routes.get("/store")
def by_query() -> HTTPResponse:
    ids = query_values("ID")
    if len(ids) != 1:
        raise BadRequest("give one ID: /store?ID=<entity id>")
    entity_id = ids[0].strip()
    if not ENTITY_ID_RE.match(entity_id):
        raise BadRequest(f"ID {entity_id[:40]!r}: an entity id is 16 hexadecimal digits (or an id kept from "
                         "the original OPUS)")
    return _serve(_entity_of(entity_id))


@routes.get(ENTITY_RULE + "/<file_name>")
def by_name(entity_id: str, file_name: str) -> HTTPResponse:
    entity = _entity_of(entity_id)
    if file_name != entity.file_name:
        raise NotFound(f"the entity {entity_id} is called {entity.file_name!r}")
    return _serve(entity)


def _users(entity_id: str, base: str) -> list[dict[str, Any]]:
    """The jobs that used the entity, those the caller may see."""
    who = identity()
    users = []
    for job_id, _role, _eid in services().entities.users_of([entity_id]):
        job = services().store.get(job_id)
        if job is not None and can_access(who, job.owner_key):
            users.append({"jobId": job_id, "jobName": job.jobname, "href": urls.job(base, job.jobname, job_id)})
    return users


@routes.get(ENTITY_RULE)
def describe(entity_id: str) -> HTTPResponse:
    entity = _entity_of(entity_id)
    base = base_url(settings())
    return as_json({
        "id": entity.entity_id, "fileName": entity.file_name, "contentType": entity.content_type,
        "size": entity.size, "sha256": entity.sha256, "owner": entity.owner_id, "role": entity.role,
        "created": iso(entity.created), "available": entity.available, "source": entity.source,
        "href": urls.store_file(files_base_url(settings()), entity.entity_id, entity.file_name),
        "generatedBy": None if entity.generated_by is None else {
            "jobId": entity.generated_by, "jobName": entity.jobname,
            "href": urls.job(base, str(entity.jobname), entity.generated_by)},
        "usedBy": _users(entity_id, base),
    })
