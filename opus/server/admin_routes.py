"""The admin-only JSON API for users: /admin/users...

    GET    /admin/users                 list
    POST   /admin/users                 create {name, admin?, jobDefinitions?, maxActiveJobs?} -> token (once)
    GET    /admin/users/<name>          one user
    PATCH  /admin/users/<name>          change {enabled?, admin?, jobDefinitions?, grant?, revoke?, maxActiveJobs?}
    DELETE /admin/users/<name>          delete
    POST   /admin/users/<name>/token    replace the token -> new token (once)
"""

from __future__ import annotations

from bottle import Bottle

from opus import safejson
from opus.errors import BadRequest, Forbidden, Unauthorized
from opus.auth.admin import UserAdmin
from opus.server.web import as_json, identity, read_body
def _require_admin() -> None:
    who = identity()
    if who.anonymous:
        raise Unauthorized("the admin API needs an admin's credentials")
    if not who.is_admin:
        raise Forbidden("the admin API is for admins only")


def _body(settings) -> dict:
    raw = read_body(settings.MAX_BODY_SIZE)
    if not raw:
        return {}
    try:
        data = safejson.loads(raw)  # 400 when nested deeper than MAX_JSON_DEPTH
    except ValueError:
        raise BadRequest("send a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("send a JSON object")
    unknown = set(data) - {"name", "admin", "enabled", "jobDefinitions", "grant", "revoke", "maxActiveJobs"}
    if unknown:
        raise BadRequest(f"unknown field(s) {sorted(unknown)}")
    return data


def install(app: Bottle, services) -> None:
    admin = UserAdmin(services.users)
    settings = services.settings

    @app.get("/admin/users")
    def list_users():
        _require_admin()
        return as_json({"users": [u.public() for u in admin.list()]})

    @app.post("/admin/users")
    def add_user():
        _require_admin()
        data = _body(settings)
        if "name" not in data:
            raise BadRequest("'name' is required")
        user, token = admin.add(data["name"], bool(data.get("admin", False)), data.get("jobDefinitions", "*"),
                                data.get("maxActiveJobs"))
        return as_json({**user.public(), "token": token}, 201)

    @app.get("/admin/users/<name>")
    def get_user(name):
        _require_admin()
        return as_json(admin.get(name).public())

    @app.route("/admin/users/<name>", method="PATCH")
    def change_user(name):
        _require_admin()
        data = _body(settings)
        for key in ("admin", "enabled"):
            if key in data and not isinstance(data[key], bool):
                raise BadRequest(f"'{key}' must be true or false")
        user = admin.update(name, enabled=data.get("enabled"), admin=data.get("admin"),
                            jobdefs=data.get("jobDefinitions"), grant=data.get("grant"), revoke=data.get("revoke"),
                            **({"max_active_jobs": data["maxActiveJobs"]} if "maxActiveJobs" in data else {}))
        return as_json(user.public())

    @app.delete("/admin/users/<name>")
    def delete_user(name):
        _require_admin()
        admin.delete(name)
        return as_json({"deleted": name})

    @app.post("/admin/users/<name>/token")
    def rotate_token(name):
        _require_admin()
        return as_json({"name": name, "token": admin.new_token(name)})
