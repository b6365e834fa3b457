"""Accounts: one's own profile, token, password and service tokens; registration; password resets.

    GET    /account                            the caller's profile (JSON): roles, limits, token id
    POST   /account/token                      replace one's own token -> the new token (once)
    POST   /account/password                   {current?, password} -> set one's password
    GET    /account/tokens                     one's service tokens
    POST   /account/tokens                     {name, scope: read|submit, days} -> the token (once)
    DELETE /account/tokens/<token_id>          revoke one
    GET    /admin/users/<name>/tokens          a user's service tokens (admins)
    DELETE /admin/users/<name>/tokens/<id>     revoke one (admins)
    POST   /admin/users/<name>/reset           a one-time password reset link (admins)
    GET    /web/profile                        the profile page
    GET    /web/register, POST /web/register   self-registration (REGISTRATION: off, open, approved)
    GET    /web/reset, POST /web/reset         set a password with a reset link

The /account routes need the user's own credentials (its token, a password session, REMOTE_USER of a
stored user): a service token may not manage the account it belongs to.  A session whose stamp
changes here (a new token, a new password) gets a new cookie in the same response; every other
session of the user ends.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from bottle import HTTPResponse, request

from opus.auth import session as web_session
from opus.auth.accounts import Accounts
from opus.auth.users import User
from opus.errors import BadRequest, Forbidden, OpusError, TooManyRequests, Unauthorized
from opus.server import pages, urls
from opus.server.errors import KIND, PAGE
from opus.server.render import iso
from opus.server.routing import RouteTable, services, settings
from opus.server.web import as_json, base_url, form_input, identity, json_object, query_get, require_admin
from opus.service import addresses

routes = RouteTable()
PAGE_ROUTE = {KIND: PAGE}


def _accounts() -> Accounts:
    return Accounts(services().users, settings(), services().auth)


def _own_user() -> User:
    """The caller's stored account, when it called with its own credentials."""
    who = identity()
    if who.anonymous:
        raise Unauthorized("sign in to see your account")
    if who.scope is not None:
        raise Forbidden("a service token cannot manage its account: use your own token or sign in")
    user = services().users.get(who.name or "")
    if user is None or user.owner_key != who.owner_key:
        raise Forbidden("you have no account on this server (your front end signed you in): ask an admin")
    return user


def _json() -> dict[str, Any]:
    """The request's JSON object (or its form fields, for a form)."""
    if request.content_type.split(";")[0].strip() in ("application/x-www-form-urlencoded", "multipart/form-data"):
        fields, _files = form_input(settings())
        return dict(fields)
    return json_object(settings())


def _renew_session(response: HTTPResponse, user: User) -> HTTPResponse:
    """A caller signed in with the session cookie keeps a session after its stamp changed."""
    if request.environ.get("opus.session") is not None:
        value, _ = web_session.issue(settings(), user.name, user.session_stamp)
        response.add_header("Set-Cookie", pages.cookie(web_session.COOKIE, value, settings().SESSION_LIFETIME))
    return response


def profile(user: User) -> dict[str, Any]:
    """What a user sees of its own account."""
    s = settings()
    limit = user.max_active_jobs if user.max_active_jobs is not None else s.DEFAULT_MAX_ACTIVE_JOBS
    return {**user.public(), "tokenId": user.token_id,
            "limits": {"maxActiveJobs": limit or None, "activeJobs": services().users.active_jobs(user.owner_key),
                       "jobDefinitions": sorted(user.jobdefs), "maxDestructionInterval": s.MAX_DESTRUCTION_INTERVAL,
                       "maxExecutionDuration": s.MAX_EXECUTION_DURATION},
            "serviceTokens": [t.public() for t in services().users.service_tokens(user.stored_uid)]}


# ---- one's own account -----------------------------------------------------------------------------
@routes.get("/account")
def get_account() -> HTTPResponse:
    return as_json(profile(_own_user()))


@routes.post("/account/token")
def replace_own_token() -> HTTPResponse:
    user, token = _accounts().replace_token(_own_user().name)
    return _renew_session(as_json({"name": user.name, "token": token, "tokenId": user.token_id}), user)


@routes.post("/account/password")
def change_own_password() -> HTTPResponse:
    data = _json()
    user = _accounts().change_password(_own_user().name, data.get("current"), data.get("password"),
                                       request.environ.get("REMOTE_ADDR"))
    return _renew_session(as_json({"name": user.name, "password": True}), user)


@routes.get("/account/tokens")
def list_own_tokens() -> HTTPResponse:
    return as_json({"tokens": [t.public() for t in _accounts().service_tokens(_own_user().name)]})


@routes.post("/account/tokens")
def new_own_token() -> HTTPResponse:
    data = _json()
    made, token = _accounts().new_service_token(_own_user().name, data.get("name"), data.get("scope"),
                                                data.get("days", 30))
    return as_json({**made.public(), "token": token}, 201)


@routes.delete("/account/tokens/<token_id>")
def revoke_own_token(token_id: str) -> HTTPResponse:
    _accounts().revoke(_own_user().name, token_id)
    return as_json({"revoked": token_id})


# ---- admins ------------------------------------------------------------------------------------------
def _admin_accounts() -> Accounts:
    require_admin(identity(), "the admin API")
    return _accounts()


@routes.get("/admin/users/<name>/tokens")
def list_user_tokens(name: str) -> HTTPResponse:
    return as_json({"name": name, "tokens": [t.public() for t in _admin_accounts().service_tokens(name)]})


@routes.delete("/admin/users/<name>/tokens/<token_id>")
def revoke_user_token(name: str, token_id: str) -> HTTPResponse:
    _admin_accounts().revoke(name, token_id)
    return as_json({"name": name, "revoked": token_id})


@routes.post("/admin/users/<name>/reset")
def issue_reset(name: str) -> HTTPResponse:
    code, expires = _admin_accounts().issue_reset(name)
    link = urls.web(base_url(settings()), "reset") + "?" + urlencode({"name": name, "code": code})
    return as_json({"name": name, "url": link, "expires": iso(expires)})


# ---- pages -------------------------------------------------------------------------------------------
@routes.get("/web/profile", **PAGE_ROUTE)
def web_profile() -> HTTPResponse:
    _own_user()
    return pages.render("profile", "Your account")


def _form_page(template: str, title: str, status: int = 200, **data: Any) -> HTTPResponse:
    """A public form page with a fresh (or still fresh) nonce cookie against CSRF, like the sign-in form."""
    nonce = web_session.cookie_of(request.environ, web_session.SIGNIN_COOKIE)
    if nonce is None or not web_session.fresh_signin_nonce(nonce):
        nonce = web_session.new_signin_nonce()
    cookie = pages.cookie(web_session.SIGNIN_COOKIE, nonce, web_session.SIGNIN_LIFETIME)
    defaults = {"message": "", "done": "", "name": "", "email": "", "code": ""}
    return pages.render(template, title, status=status, cookies=(cookie,), form_csrf=web_session.signin_token(
        settings(), nonce), mode=settings().REGISTRATION, min_length=settings().PASSWORD_MIN_LENGTH,
        **{**defaults, **data})


def _form_fields(*names: str) -> dict[str, str] | None:
    """The posted form's fields, or None when its CSRF field does not match its nonce cookie;
    BadRequest when the body is not a readable form."""
    fields, _files = form_input(settings())
    values = {k: v for k, v in fields if k in names + (web_session.CSRF_FIELD,)}
    nonce = web_session.cookie_of(request.environ, web_session.SIGNIN_COOKIE)
    if not web_session.check_signin(settings(), nonce, values.get(web_session.CSRF_FIELD)):
        return None
    return values


def _signed_in(user: User, path: str) -> HTTPResponse:
    value, _ = web_session.issue(settings(), user.name, user.session_stamp)
    response = HTTPResponse(status=303, headers={"Location": pages.absolute(f"{pages.root()}{path}")})
    response.add_header("Set-Cookie", pages.cookie(web_session.COOKIE, value, settings().SESSION_LIFETIME))
    response.add_header("Set-Cookie", pages.cookie(web_session.SIGNIN_COOKIE, "", 0))
    return response


def _failure(template: str, title: str, exc: OpusError, **data: Any) -> HTTPResponse:
    response = _form_page(template, title, exc.status, message=exc.message, **data)
    if isinstance(exc, TooManyRequests):
        response.set_header("Retry-After", str(exc.retry_after))
    return response


@routes.get("/web/register", opus_public=True)
def web_register_form() -> HTTPResponse:
    off = settings().REGISTRATION == "off"
    return _form_page("register", "Register", 403 if off else 200)


@routes.post("/web/register", opus_public=True)
def web_register() -> HTTPResponse:
    try:
        values = _form_fields("name", "password", "password2", "email")
    except BadRequest as exc:  # a browser's form page: the form again, saying why
        return _form_page("register", "Register", 400, message=f"The form could not be read ({exc.message}).")
    if values is None:
        return _form_page("register", "Register", 403, message="The form had expired (or cookies are off): "
                                                               "please try again.")
    name, email = values.get("name", "").strip(), values.get("email", "").strip()
    if values.get("password", "") != values.get("password2", ""):
        return _form_page("register", "Register", 400, message="The two passwords differ.", name=name, email=email)
    try:
        user = _accounts().register(name, values.get("password", ""), email, request.environ.get("REMOTE_ADDR"))
    except OpusError as exc:
        return _failure("register", "Register", exc, name=name, email=email)
    addresses.ask_confirmation(services().notifications, user.stored_uid, user.name)
    if not user.enabled:  # REGISTRATION = "approved"
        return _form_page("register", "Register", 202, done="approval", name=user.name)
    return _signed_in(user, "/web/profile")


@routes.get("/web/confirm", opus_public=True)
def web_confirm_address() -> HTTPResponse:
    """The link of a confirmation e-mail (opus.service.addresses): the address is confirmed."""
    try:
        email = addresses.confirm(services().notifications, query_get("uid") or "", query_get("email") or "",
                                  query_get("expires") or "", query_get("sig") or "")
    except OpusError as exc:
        return pages.render("error", "E-mail address not confirmed", status=exc.status, message=exc.message)
    return pages.render("confirmed", "E-mail address confirmed", email=email)


@routes.get("/web/reset", opus_public=True)
def web_reset_form() -> HTTPResponse:
    return _form_page("password", "Set your password", name=(query_get("name") or "")[:64],
                      code=(query_get("code") or "")[:100])


@routes.post("/web/reset", opus_public=True)
def web_reset() -> HTTPResponse:
    try:
        values = _form_fields("name", "code", "password", "password2")
    except BadRequest as exc:
        return _form_page("password", "Set your password", 400, message=f"The form could not be read ({exc.message}).")
    if values is None:
        return _form_page("password", "Set your password", 403,
                          message="The form had expired (or cookies are off): open the link again.")
    name, code = values.get("name", "").strip(), values.get("code", "").strip()
    if values.get("password", "") != values.get("password2", ""):
        return _form_page("password", "Set your password", 400, message="The two passwords differ.", name=name,
                          code=code)
    try:
        user = _accounts().reset_password(name, code, values.get("password", ""), request.environ.get("REMOTE_ADDR"))
    except OpusError as exc:
        return _failure("password", "Set your password", exc, name=name, code=code)
    if not user.enabled:
        return _form_page("password", "Set your password", 200, done="disabled", name=name)
    return _signed_in(user, "/web/profile")
