"""The OpenAPI description of single sign-on (``/web/signin/oidc...``) and of the admins' links between
identities and users (``/admin/users/<name>/oidc``): see ``oidc_routes``."""

from __future__ import annotations

from opus.server.openapi_parts import JSON, STRING, Doc, array, errors, obj, ok, op, path_param

HTML = {"text/html": {"schema": STRING}}
IDENTITY = obj({"issuer": STRING, "subject": STRING, "created": STRING, "lastSignIn": STRING})
OFF = "Single sign-on is not configured (OIDC_ISSUER)"


def _page(text: str) -> Doc:
    return {"description": text, "content": HTML}


def _signin() -> Doc:
    start = {"operationId": "webSigninOidc", "summary": "Sign in with the identity provider (OpenID Connect)",
             "tags": ["Web client"], "security": [],
             "description": "Redirects to the provider's authorization endpoint with a state, a nonce and PKCE "
                            "(S256); sets the cookie `opus_oidc` (signed, 10 minutes, HttpOnly, SameSite=Lax).",
             "parameters": [{"name": "next", "in": "query", "required": False, "schema": STRING,
                             "description": "The page to go to once signed in (a page of this server)"}],
             "responses": {"302": {"description": "Go to the identity provider", "headers": {
                 "Location": {"$ref": "#/components/headers/Location"}, "Set-Cookie": {"schema": STRING}}},
                 "404": _page(OFF), "502": _page("The sign-in page: the provider cannot be reached")}}
    callback = {"operationId": "webSigninOidcCallback", "summary": "The identity provider's answer",
                "tags": ["Web client"], "security": [],
                "description": "Checks `state` against the cookie `opus_oidc`, exchanges the code, checks the ID "
                               "token (signature, iss, aud, exp, nonce), then signs the user in (cookie "
                               "`opus_session`).",
                "parameters": [{"name": n, "in": "query", "required": False, "schema": STRING,
                                "description": d} for n, d in (
                    ("code", "The authorization code"), ("state", "The state sent to the provider"),
                    ("error", "The provider's error (e.g. access_denied)"),
                    ("error_description", "The provider's words on its error"))],
                "responses": {"303": {"description": "Signed in: go on to the page", "headers": {
                    "Location": {"$ref": "#/components/headers/Location"}, "Set-Cookie": {"schema": STRING}}},
                    "400": _page("The sign-in page: expired, forged or foreign state, no code, or the provider's "
                                 "error"),
                    "401": _page("The sign-in page: cancelled, the code refused, or the ID token failed a check"),
                    "403": _page("The sign-in page: no account (or a local account of that name, not linked), "
                                 "or the account is disabled"),
                    "404": _page(OFF), "502": _page("The sign-in page: the provider cannot be reached")}}
    return {"/web/signin/oidc": {"get": start}, "/web/signin/oidc/callback": {"get": callback}}


def _admin() -> Doc:
    name = path_param("name", "A user's name")
    link_body = {"required": True, "content": {JSON: {"schema": {
        "type": "object", "properties": {"subject": STRING, "issuer": STRING}, "required": ["subject"]}}}}
    query = [{"name": "subject", "in": "query", "required": True, "schema": STRING,
              "description": "The identity's `sub` claim"},
             {"name": "issuer", "in": "query", "required": False, "schema": STRING,
              "description": "The provider's issuer (default: OIDC_ISSUER)"}]
    return {"/admin/users/{name}/oidc": {
        "parameters": [name],
        "get": op("listUserIdentities", "The single sign-on identities linked to a user (admins)", "Admin", {
            **ok("The identities", {JSON: {"schema": obj({"name": STRING, "identities": array(IDENTITY)})}}),
            **errors(401, 403, 404)}),
        "post": op("linkUserIdentity", "Link a single sign-on identity to a user (admins)", "Admin", {
            "201": {"description": "Linked", "content": {JSON: {"schema": {
                "allOf": [IDENTITY, obj({"name": STRING})]}}}}, **errors(400, 401, 403, 404, 409, 413)},
            body=link_body,
            description="`subject` is the identity's `sub` claim, `issuer` the provider's (default OIDC_ISSUER). "
                        "The identity then signs in as this user; an existing account is never linked otherwise."),
        "delete": op("unlinkUserIdentity", "Unlink a single sign-on identity from a user (admins)", "Admin", {
            **ok("Unlinked", {JSON: {"schema": obj({"name": STRING, "unlinked": STRING})}}),
            **errors(401, 403, 404)}, parameters=query)}}


def paths() -> Doc:
    return {**_signin(), **_admin()}
