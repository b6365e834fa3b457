"""The OpenAPI description of the admin API (``/admin/users...``, see ``admin_routes``)."""

from __future__ import annotations

from opus.server.openapi_parts import JSON, STRING, Doc, errors, json_body, obj, ok, op, path_param, schema


def paths() -> Doc:
    """The user administration: ``/admin/users...`` (admins only)."""
    tag = "Admin"
    name = path_param("name", "A user's name", {"type": "string"})
    not_admin = errors(401, 403)
    return {
        "/admin/users": {
            "get": op("listUsers", "All users", tag, {
                **ok("The users", {JSON: {"schema": {"type": "object", "required": ["users"], "properties": {
                    "users": {"type": "array", "items": schema("User")}}}}}), **not_admin}),
            "post": op("addUser", "Create a user", tag, {
                "201": {"description": "Created; the token is shown only now",
                        "content": {JSON: {"schema": schema("UserWithToken")}}},
                **errors(400, 401, 403)}, body=json_body("UserChange"),
                description="`groups`: the user's groups (a list, or names separated by commas); a bad "
                            "name is 400."),
        },
        "/admin/users/{name}": {
            "parameters": [name],
            "get": op("getUser", "One user", tag, {**ok("The user", {JSON: {"schema": schema("User")}}),
                                                    **errors(401, 403, 404)}),
            "patch": op("changeUser", "Change a user", tag, {
                **ok("The changed user", {JSON: {"schema": schema("User")}}),
                **errors(400, 401, 403, 404)},
                body=json_body("UserChange", required=False),
                description="403 when the change would leave no enabled admin. `groups` replaces the "
                            "user's groups ([] or \"\": none); a bad name is 400."),
            "delete": op("deleteUser", "Delete a user", tag, {
                **ok("Deleted", {JSON: {"schema": obj({"deleted": STRING})}}),
                **errors(401, 403, 404)}),
        },
        "/admin/users/{name}/token": {
            "parameters": [name],
            "post": op("newToken", "Replace the user's token", tag, {
                **ok("The new token, shown only now", {JSON: {"schema": {
                    "type": "object", "required": ["name", "token"],
                    "properties": {"name": {"type": "string"}, "token": {"type": "string"}}}}}),
                **errors(401, 403, 404)}),
        },
    }
