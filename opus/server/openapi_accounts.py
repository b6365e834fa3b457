"""The OpenAPI description of accounts (``/account...``, admins' ``/admin/users/<name>/tokens|reset``,
the profile, registration and reset pages): see ``account_routes``."""

from __future__ import annotations

from opus.server.openapi_parts import JSON, STRING, Doc, array, errors, obj, ok, op, path_param

TAG = "Accounts"
HTML = {"text/html": {"schema": STRING}}
NULLABLE = {"type": ["string", "null"]}
SERVICE_TOKEN = obj({"id": STRING, "name": STRING, "scope": {"type": "string", "enum": ["read", "submit"]},
                     "expires": STRING, "created": STRING})
THROTTLED = {"description": "Too many failed sign-ins for this user name or from this address",
             "headers": {"Retry-After": {"schema": {"type": "integer"}}}}
TOKENS = {JSON: {"schema": obj({"tokens": array(SERVICE_TOKEN)})}}


def _json(properties: Doc, required: list[str]) -> Doc:
    return {"required": True, "content": {JSON: {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


def _form(properties: Doc, required: list[str]) -> Doc:
    body = {"type": "object", "properties": {**properties, "_csrf": STRING}, "required": required + ["_csrf"]}
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": body},
                                          "multipart/form-data": {"schema": body}}}


def _public_page(op_id: str, summary: str, codes: dict[str, str], body: Doc | None = None) -> Doc:
    responses = {code: {"description": text, "content": HTML} for code, text in codes.items()}
    operation: Doc = {"operationId": op_id, "summary": summary, "tags": [TAG], "security": [], "responses": responses}
    if body is not None:
        operation["requestBody"] = body
        operation["responses"]["303"] = {"description": "Done and signed in: go to the profile page", "headers": {
            "Location": {"$ref": "#/components/headers/Location"}, "Set-Cookie": {"schema": STRING}}}
    return operation


def _own() -> Doc:
    profile = {"allOf": [{"$ref": "#/components/schemas/User"}, obj({
        "tokenId": STRING, "limits": {"type": "object"}, "serviceTokens": array(SERVICE_TOKEN)})]}
    own = errors(401, 403)
    return {
        "/account": {"get": op("getAccount", "Your account: roles, limits, token id, service tokens", TAG, {
            **ok("Your account", {JSON: {"schema": profile}}), **own})},
        "/account/token": {"post": op("replaceOwnToken", "Replace your own token", TAG, {
            **ok("The new token, shown only now", {JSON: {"schema": obj({"name": STRING, "token": STRING,
                                                                          "tokenId": STRING})}}), **own})},
        "/account/password": {"post": op("setOwnPassword", "Set or change your password (web sign-in)", TAG, {
            **ok("Set", {JSON: {"schema": obj({"name": STRING, "password": {"type": "boolean"}})}}),
            **errors(400, 401, 403), "429": THROTTLED}, body=_json({"current": STRING, "password": STRING}, ["password"]),
            description="`current` is needed when a password is set already; a wrong one counts as a failed "
                        "sign-in. Every other session of the user ends.")},
        "/account/tokens": {
            "get": op("listOwnServiceTokens", "Your service tokens", TAG, {**ok("Your service tokens", TOKENS),
                                                                          **own}),
            "post": op("newServiceToken", "Make a service token", TAG, {
                "201": {"description": "Made; the token is shown only now", "content": {JSON: {"schema": {
                    "allOf": [SERVICE_TOKEN, obj({"token": STRING})]}}}}, **errors(400, 401, 403)},
                body=_json({"name": STRING, "scope": {"type": "string", "enum": ["read", "submit"]},
                            "days": {"type": "integer", "minimum": 1}}, ["name", "scope"])),
        },
        "/account/tokens/{token_id}": {
            "parameters": [path_param("token_id", "A service token's id")],
            "delete": op("revokeOwnServiceToken", "Revoke one of your service tokens", TAG, {
                **ok("Revoked", {JSON: {"schema": obj({"revoked": STRING})}}), **errors(401, 403, 404)})},
    }


def _admin() -> Doc:
    name = path_param("name", "A user's name")
    return {
        "/admin/users/{name}/tokens": {"parameters": [name], "get": op(
            "listUserServiceTokens", "A user's service tokens (admins)", "Admin",
            {**ok("The user's service tokens", TOKENS), **errors(401, 403, 404)})},
        "/admin/users/{name}/tokens/{token_id}": {
            "parameters": [name, path_param("token_id", "A service token's id")],
            "delete": op("revokeUserServiceToken", "Revoke a user's service token (admins)", "Admin", {
                **ok("Revoked", {JSON: {"schema": obj({"name": STRING, "revoked": STRING})}}),
                **errors(401, 403, 404)})},
        "/admin/users/{name}/reset": {"parameters": [name], "post": op(
            "passwordResetLink", "A one-time password reset link for a user (admins)", "Admin", {
                **ok("The link, shown only now", {JSON: {"schema": obj({"name": STRING, "url": STRING,
                                                                         "expires": STRING})}}),
                **errors(401, 403, 404)},
            description="Valid PASSWORD_RESET_LIFETIME seconds, once; a new link replaces the previous one.")},
    }


def _pages() -> Doc:
    signed = {"401": {"description": "Not signed in: the sign-in form", "content": HTML}}
    return {
        "/web/profile": {"get": {"operationId": "webProfile", "summary": "Page: your account", "tags": [TAG],
                                 "responses": {"200": {"description": "The page", "content": HTML}, **signed,
                                               "403": {"description": "A service token, or no stored account",
                                                       "content": HTML}}}},
        "/web/register": {
            "get": _public_page("webRegisterForm", "Page: the registration form",
                                {"200": "The form", "403": "Registration is off (REGISTRATION)"}),
            "post": _public_page("webRegister", "Register an account", {
                "202": "Registered; an admin must approve it (REGISTRATION = \"approved\")",
                "400": "The form again, with what is wrong", "403": "Registration is off, or the form expired",
                "429": "Too many registrations from this address"},
                _form({"name": STRING, "password": STRING, "password2": STRING, "email": STRING},
                      ["name", "password", "password2"])),
        },
        "/web/confirm": {
            "get": {**_public_page("webConfirmAddress", "Page: confirm one's e-mail address (the link of the e-mail)", {
                "200": "Confirmed", "400": "A malformed or forged link",
                "410": "An expired link, or one for an address that is no longer the account's"}),
                "parameters": [{"name": n, "in": "query", "required": True, "schema": {"type": "string"}}
                               for n in ("uid", "email", "expires", "sig")]},
        },
        "/web/reset": {
            "get": _public_page("webResetForm", "Page: set a password with a reset link", {"200": "The form"}),
            "post": _public_page("webReset", "Set a password with a reset link", {
                "200": "Set, but the account is disabled", "400": "The form again, with what is wrong",
                "403": "The link is not valid, was used or expired", "429": "Too many wrong codes"},
                _form({"name": STRING, "code": STRING, "password": STRING, "password2": STRING},
                      ["name", "code", "password", "password2"])),
        },
    }


def paths() -> Doc:
    return {**_own(), **_admin(), **_pages()}
