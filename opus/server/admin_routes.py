"""The admin-only JSON API for users: /admin/users...

    GET    /admin/users                 list
    POST   /admin/users                 create {name, admin?, editor?, jobDefinitions?, maxActiveJobs?, groups?}
                                        -> token (once)
    GET    /admin/users/<name>          one user
    PATCH  /admin/users/<name>          change {enabled?, admin?, editor?, jobDefinitions?, grant?, revoke?,
                                        maxActiveJobs?, groups? (replaces them; [] none)}
    DELETE /admin/users/<name>          delete
    POST   /admin/users/<name>/token    replace the token -> new token (once)

A user's service tokens and password reset links: ``opus.server.account_routes``.
"""

from __future__ import annotations

from typing import Any

from bottle import HTTPResponse

from opus.auth.admin import UserAdmin
from opus.errors import BadRequest
from opus.server.routing import RouteTable, services, settings
from opus.server.web import as_json, identity, json_object, require_admin

routes = RouteTable()
FIELDS = frozenset({"name", "admin", "editor", "enabled", "jobDefinitions", "grant", "revoke", "maxActiveJobs",
                    "groups"})


def _admin() -> UserAdmin:
    """The user administration, once the caller is known to be an admin."""
    require_admin(identity(), "the admin API")
    return UserAdmin(services().users, services().registry.known)


def _body() -> dict[str, Any]:
    data = json_object(settings())
    unknown = set(data) - FIELDS
    if unknown:
        raise BadRequest(f"unknown field(s) {sorted(unknown)}")
    return data


@routes.get("/admin/users")
def list_users() -> HTTPResponse:
    return as_json({"users": [u.public() for u in _admin().list()]})


@routes.post("/admin/users")
def add_user() -> HTTPResponse:
    admin = _admin()
    data = _body()
    if "name" not in data:
        raise BadRequest("'name' is required")
    for key in ("admin", "editor"):
        if key in data and not isinstance(data[key], bool):
            raise BadRequest(f"'{key}' must be true or false")
    user, token = admin.add(data["name"], bool(data.get("admin", False)), data.get("jobDefinitions", "*"),
                            data.get("maxActiveJobs"), bool(data.get("editor", False)), data.get("groups"))
    return as_json({**user.public(), "token": token}, 201)


@routes.get("/admin/users/<name>")
def get_user(name: str) -> HTTPResponse:
    return as_json(_admin().get(name).public())


@routes.route("PATCH", "/admin/users/<name>")
def change_user(name: str) -> HTTPResponse:
    admin = _admin()
    data = _body()
    for key in ("admin", "editor", "enabled"):
        if key in data and not isinstance(data[key], bool):
            raise BadRequest(f"'{key}' must be true or false")
    user = admin.update(name, enabled=data.get("enabled"), admin=data.get("admin"), editor=data.get("editor"),
                        jobdefs=data.get("jobDefinitions"), grant=data.get("grant"), revoke=data.get("revoke"),
                        **({"max_active_jobs": data["maxActiveJobs"]} if "maxActiveJobs" in data else {}),
                        **({"groups": data["groups"]} if "groups" in data else {}))
    return as_json(user.public())


@routes.delete("/admin/users/<name>")
def delete_user(name: str) -> HTTPResponse:
    _admin().delete(name)
    return as_json({"deleted": name})


@routes.post("/admin/users/<name>/token")
def rotate_token(name: str) -> HTTPResponse:
    return as_json({"name": name, "token": _admin().new_token(name)})
