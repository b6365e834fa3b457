"""Single sign-on with OpenID Connect (issue 17; docs/single-sign-on.md; SECURITY.md, "Single sign-on").

    GET    /web/signin/oidc[?next=]                  302 to the identity provider (state, nonce, PKCE)
    GET    /web/signin/oidc/callback?code=&state=    the provider's answer -> a session, 303 to ``next``
    GET    /admin/users/<name>/oidc                  the identities linked to a user (admins)
    POST   /admin/users/<name>/oidc                  {subject, issuer?}: link an identity to a user (admins)
    DELETE /admin/users/<name>/oidc?subject=&issuer= unlink it (admins)

The sign-in under way lives in the cookie ``opus_oidc`` (``opus.auth.oidc.seal``: signed, 10 minutes,
HttpOnly, SameSite=Lax so that the provider's redirect brings it back, Secure over https, sent to the
callback only).  The callback checks the state against it before anything else, so a callback URL
carried to another browser, or forged, signs nobody in.  Every failure shows the sign-in page with
what went wrong (400, 401, 403; 502 when the provider cannot be reached), never a 500.
"""

from __future__ import annotations

import hmac

from bottle import HTTPResponse, request

from opus.auth import oidc
from opus.auth import session as web_session
from opus.auth.oidc_accounts import OidcAccounts
from opus.errors import NotFound, OpusError
from opus.server import pages
from opus.server.errors import KIND, PAGE
from opus.server.routing import RouteTable, services, settings
from opus.server.web import as_json, base_url, identity, json_object, query_get, require_admin

routes = RouteTable()
PAGE_ROUTE = {KIND: PAGE}
COOKIE = "opus_oidc"
START = "/web/signin/oidc"
CALLBACK = "/web/signin/oidc/callback"


def _configured() -> None:
    if not settings().OIDC_ISSUER:
        raise NotFound("single sign-on is not configured on this server (OIDC_ISSUER)")


def _accounts() -> OidcAccounts:
    return OidcAccounts(services().users, settings(), services().users.token_key)


def _redirect_uri() -> str:
    return pages.absolute(pages.root() + CALLBACK)


def _state_cookie(value: str, max_age: int) -> str:
    secure = request.environ.get("wsgi.url_scheme") == "https" or base_url(settings()).startswith("https:")
    return web_session.set_cookie_header(COOKIE, value, max_age, secure, pages.root() + START, "Lax")


def _failure(message: str, status: int, next_url: str | None, end: bool = True) -> HTTPResponse:
    """The sign-in page with what went wrong; the sign-in under way is over (``end``), unless the answer
    was not this browser's: a forged callback cannot cancel the sign-in the user is making."""
    response = pages.signin_page(message, status, next_url=next_url)
    if end:
        response.add_header("Set-Cookie", _state_cookie("", 0))
    return response


@routes.get(START, opus_public=True, **PAGE_ROUTE)
def oidc_start() -> HTTPResponse:
    _configured()
    pending = oidc.new_pending(pages.next_path(query_get("next")))
    try:
        url = oidc.authorization_url(settings(), _redirect_uri(), pending)
    except OpusError as exc:
        return _failure(f"Signing in with {settings().OIDC_PROVIDER_NAME} is not possible now: {exc.message}",
                        exc.status, pending.next_url)
    response = HTTPResponse(status=302, headers={"Location": url, "Cache-Control": "no-store"})
    response.add_header("Set-Cookie", _state_cookie(oidc.seal(settings(), pending), oidc.STATE_LIFETIME))
    return response


def _provider_error(error: str, description: str) -> tuple[str, int]:
    name = settings().OIDC_PROVIDER_NAME
    if error == "access_denied":
        return f"The sign-in with {name} was cancelled or refused.", 401
    detail = f" ({description[:200]})" if description else ""
    return f"{name} could not sign you in: {error[:100]}{detail}.", 400


@routes.get(CALLBACK, opus_public=True, **PAGE_ROUTE)
def oidc_callback() -> HTTPResponse:
    _configured()
    pending = oidc.unseal(settings(), web_session.cookie_of(request.environ, COOKIE))
    if query_get("error") and not query_get("state"):  # some providers send no state with an error
        message, status = _provider_error(query_get("error") or "error",
                                          query_get("error_description") or "")
        return _failure(message, status, pending.next_url if pending else None, end=False)
    if pending is None:
        return _failure("This sign-in had expired, or was started in another browser (or cookies are off): "
                        "please sign in again.", 400, None)
    state = query_get("state") or ""
    if not hmac.compare_digest(state.encode(), pending.state.encode()):
        return _failure("This sign-in's answer does not belong to the sign-in this browser started: please sign "
                        "in again.", 400, pending.next_url, end=False)
    if query_get("error"):
        message, status = _provider_error(query_get("error") or "error",
                                          query_get("error_description") or "")
        return _failure(message, status, pending.next_url)
    code = query_get("code")
    if not code:
        return _failure("The identity provider's answer has no code: please sign in again.", 400, pending.next_url)
    try:
        user = _accounts().sign_in(oidc.exchange(settings(), _redirect_uri(), pending, code))
    except OpusError as exc:
        return _failure(exc.message[:1].upper() + exc.message[1:] + ".", exc.status, pending.next_url)
    value, _session = web_session.issue(settings(), user.name, user.session_stamp)
    response = HTTPResponse(status=303, headers={
        "Location": pages.absolute(pages.next_path(pending.next_url)), "Cache-Control": "no-store"})
    response.add_header("Set-Cookie", pages.cookie(web_session.COOKIE, value, settings().SESSION_LIFETIME))
    response.add_header("Set-Cookie", _state_cookie("", 0))
    return response


# ---- admins: linking identities to users ------------------------------------------------------------------
def _admin_accounts() -> OidcAccounts:
    require_admin(identity(), "the admin API")
    return _accounts()


@routes.get("/admin/users/<name>/oidc")
def list_identities(name: str) -> HTTPResponse:
    linked = _admin_accounts().linked(name)
    return as_json({"name": name, "identities": [i.public() for i in linked]})


@routes.post("/admin/users/<name>/oidc")
def link_identity(name: str) -> HTTPResponse:
    accounts = _admin_accounts()
    data = json_object(settings(), '{"subject": ..., "issuer": ...}')
    made = accounts.link(name, data.get("subject"), data.get("issuer"))
    return as_json({"name": name, **made.public()}, 201)


@routes.delete("/admin/users/<name>/oidc")
def unlink_identity(name: str) -> HTTPResponse:
    subject = query_get("subject")
    _admin_accounts().unlink(name, subject, query_get("issuer"))
    return as_json({"name": name, "unlinked": subject})
