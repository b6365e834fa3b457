"""The web client's pages, sign-in and assets: ``/web/...``.

    GET  /web/                             home: what the site offers (its definitions), how to start
    GET  /web/jobs[/<jobname>]             job lists (all definitions, or one)
    GET  /web/jobs/<jobname>/<job_id>      one job
    GET  /web/new/<jobname>[?from=<id>]    the job form ("run again" prefills it from a job)
    GET  /web/editor[?name=]               the definition editor
    GET  /web/admin                        users, definitions and server status (admins)
    GET  /web/session                      who the browser is signed in as, and its CSRF token (JSON)
    GET  /web/signin, POST /web/signin     the sign-in form (name + token -> a session cookie)
    POST /web/signout                      ends the session
    GET  /web/static/<path>                the pages' scripts and styles, uws.js; site-logo: SITE_LOGO's file
    GET  /web/lib/<path>                   the npm libraries (Bootstrap, CodeMirror...): opus.weblibs

Pages are shells: their scripts fetch everything through the public REST API (``uws.js``).  A
page asked for without the credentials it needs answers 401 with the sign-in form (``errors``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from bottle import HTTPResponse, request, static_file

from opus.auth import session as web_session
from opus.errors import BadRequest, Forbidden, NotFound, TooManyRequests, Unauthorized
from opus.server import pages, urls
from opus.server.errors import KIND, PAGE
from opus.server.render import iso
from opus.server.routing import RouteTable, services, settings
from opus.server.web import as_json, base_url, form_input, identity, query_get, require_admin
from opus import weblibs
from opus.settings import SITE_LOGO_TYPES, Settings
from opus.web import STATIC_DIR

#: Where an installed package holds the libraries (build_web.py copies them there).
PACKAGED_LIBRARIES = STATIC_DIR.parent / "lib"
routes = RouteTable()
#: The options of a page route: its errors are HTML pages, 401 the sign-in form.
PAGE_ROUTE = {KIND: PAGE}


# ---- pages ------------------------------------------------------------------------------------
@routes.get("/web/", **PAGE_ROUTE)
def web_home() -> HTTPResponse:
    """The home page: what this service offers (its definitions), how to start, the API's documents."""
    return pages.render("definitions", "Home", intro=pages.home_paragraphs(settings().SITE_HOME_TEXT),
                        api_base=base_url(settings()))


@routes.get("/web/jobs", **PAGE_ROUTE)
def web_all_jobs() -> HTTPResponse:
    return pages.render("jobs", "Jobs", jobname="")


@routes.get("/web/jobs/<jobname>", **PAGE_ROUTE)
def web_jobs(jobname: str) -> HTTPResponse:
    jobdef = services().registry.get(jobname)
    return pages.render("jobs", f"Jobs: {jobdef.name}", jobname=jobdef.name)


@routes.get("/web/shared", **PAGE_ROUTE)
def web_shared() -> HTTPResponse:
    """Jobs shared with the caller (or a group of theirs), read-only (opus.server.share_routes)."""
    return pages.render("shared", "Shared with you")


@routes.get("/web/jobs/<jobname>/<job_id>", **PAGE_ROUTE)
def web_job(jobname: str, job_id: str) -> HTTPResponse:
    job = services().jobs.get(jobname, job_id, identity())
    return pages.render("job", f"Job {job.job_id}", jobname=job.jobname, job_id=job.job_id)


@routes.get("/web/new/<jobname>", **PAGE_ROUTE)
def web_new(jobname: str) -> HTTPResponse:
    jobdef = services().registry.get(jobname)
    if not identity().may_use(jobdef.name):
        raise Forbidden(f"you may not use the job definition {jobdef.name!r}")
    source = (query_get("from") or "").strip()
    if source:  # "run again": the job must be the caller's
        source = services().jobs.get(jobname, source, identity()).job_id
    return pages.render("form", f"New {jobdef.name} job", jobname=jobdef.name, from_job=source)


@routes.get("/web/editor", **PAGE_ROUTE)
def web_editor() -> HTTPResponse:
    return pages.render("editor", "Definition editor", name=(query_get("name") or "")[:64])


@routes.get("/web/admin", **PAGE_ROUTE)
def web_admin() -> HTTPResponse:
    require_admin(identity(), "this page")
    return pages.render("admin", "Administration")


@routes.get("/web/session")
def web_session_info() -> HTTPResponse:
    who = identity()
    session = request.environ.get("opus.session")
    return as_json({
        "user": who.name, "admin": who.is_admin, "anonymous": who.anonymous,
        "session": session is not None,
        "csrfToken": web_session.csrf_token(settings(), session) if session else None,
        "expires": iso(datetime.fromtimestamp(session.expires, timezone.utc)) if session else None,
        "signin": urls.web(base_url(settings()), "signin")})


# ---- signing in and out ------------------------------------------------------------------------
@routes.get("/web/signin", opus_public=True)
def web_signin_form() -> HTTPResponse:
    return pages.signin_page(next_url=query_get("next"), signed_out=bool(query_get("signed_out")))


@routes.post("/web/signin", opus_public=True)
def web_signin() -> HTTPResponse:
    try:
        fields, _files = form_input(settings())
    except BadRequest as exc:  # a browser's form page: the form again, saying why (never a bare text)
        return pages.signin_page(f"The form could not be read ({exc.message}): please try again.", 400)
    values = {k: v for k, v in fields if k in ("name", "token", "next", web_session.CSRF_FIELD)}
    name, token = values.get("name", "").strip(), values.get("token", "").strip()
    next_url = values.get("next", "")
    nonce = web_session.cookie_of(request.environ, web_session.SIGNIN_COOKIE)
    if not web_session.check_signin(settings(), nonce, values.get(web_session.CSRF_FIELD)):
        return pages.signin_page("The sign-in form had expired (or cookies are off): please try again.", 403,
                                 name, next_url)
    if not name or not token:
        return pages.signin_page("Give your user name and your token.", 400, name, next_url)
    try:
        user = services().auth.sign_in(name, token, request.environ.get("REMOTE_ADDR"))
    except Unauthorized:
        return pages.signin_page("Wrong user name or token.", 401, name, next_url)
    except TooManyRequests as exc:  # failed sign-ins throttled (opus.auth.throttle): no check was made
        response = pages.signin_page(f"Too many failed sign-ins: try again in {exc.retry_after} s.", 429, name,
                                     next_url)
        response.set_header("Retry-After", str(exc.retry_after))
        return response
    value, _session = web_session.issue(settings(), user.name, user.session_stamp)
    response = HTTPResponse(status=303, headers={"Location": pages.absolute(pages.next_path(next_url))})
    response.add_header("Set-Cookie", pages.cookie(web_session.COOKIE, value, settings().SESSION_LIFETIME))
    response.add_header("Set-Cookie", pages.cookie(web_session.SIGNIN_COOKIE, "", 0))
    return response


@routes.post("/web/signout", opus_public=True)
def web_signout() -> HTTPResponse:
    fields, _files = form_input(settings())
    value = web_session.cookie_of(request.environ)
    session = web_session.parse(settings(), value) if value else None
    if session is not None:
        presented = [v for k, v in fields if k == web_session.CSRF_FIELD]
        if len(presented) != 1 or not web_session.check_csrf(settings(), session, presented[0]):
            raise Forbidden("signing out needs the page's CSRF token: use the Sign out button")
    response = HTTPResponse(status=303, headers={"Location": pages.absolute(f"{pages.root()}/web/signin?signed_out=1")})
    response.add_header("Set-Cookie", pages.cookie(web_session.COOKIE, "", 0))
    return response


# ---- assets --------------------------------------------------------------------------------------
#: The logo is the operator's file, but an SVG opened on its own must run nothing and load nothing.
LOGO_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
                "Cross-Origin-Resource-Policy": "same-origin"}


def site_logo() -> HTTPResponse:
    """SITE_LOGO when it is a file (settings checked its type by its extension); 404 otherwise."""
    logo = settings().SITE_LOGO
    if not logo.startswith("/"):
        raise NotFound("this site has no logo file (SITE_LOGO)")
    path = Path(logo)
    response: HTTPResponse = static_file(path.name, root=str(path.parent),
                                         mimetype=SITE_LOGO_TYPES[path.suffix.lower()])
    if response.status_code >= 400:
        raise NotFound("the site's logo (SITE_LOGO) cannot be read")
    for name, value in LOGO_HEADERS.items():
        response.set_header(name, value)
    return response


@routes.get("/web/static/<path:path>", opus_public=True)
def web_static(path: str) -> HTTPResponse:
    if path == pages.LOGO_ASSET:  # the site's logo, among the pages' assets (public: the sign-in page shows it)
        return site_logo()
    return _asset(path, STATIC_DIR, "no-cache")


@routes.get("/web/lib/<path:path>", opus_public=True)
def web_lib(path: str) -> HTTPResponse:
    directory = libraries_dir(settings().WEB_LIBRARIES_DIR)
    if not weblibs.served(path, _packages(directory)):
        raise BadRequest("/web/lib serves only the browser files (scripts, styles, fonts, images) "
                         "of the packages that package-lock.json lists")
    return _asset(path, directory, "public, max-age=86400",
                  missing=" (in a checkout, run `npm ci` at the top of OPUS: scripts/setup.sh does)")


def libraries_dir(configured: str) -> Path:
    """WEB_LIBRARIES_DIR when set to another place than its default (the checkout's node_modules);
    otherwise the libraries built into the installed package when there are some (a wheel), else
    node_modules (a checkout, or an editable install)."""
    if configured != Settings.WEB_LIBRARIES_DIR or not (PACKAGED_LIBRARIES / weblibs.LOCK_NAME).is_file():
        return Path(configured)
    return PACKAGED_LIBRARIES


def _packages(directory: Path) -> list[str]:
    stamps = []
    for path in (directory, directory / weblibs.LOCK_NAME):
        try:
            stamps.append(path.stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
    return _packages_of(directory, tuple(stamps))


@lru_cache(maxsize=8)
def _packages_of(directory: Path, stamps: tuple[int, ...]) -> list[str]:
    """The packages of a libraries directory, read again when it or its lock file changes (``stamps``)."""
    return weblibs.installed(directory)


def _asset(path: str, directory: Path | str, cache: str, missing: str = "") -> HTTPResponse:
    if not path or any(ord(c) < 32 for c in path):
        raise BadRequest("bad asset path")
    response: HTTPResponse = static_file(path, root=str(directory))
    if response.status_code in (403, 404):
        return HTTPResponse(f"no such file: {quote(path)[:200]}{missing}\n", status=404,
                            headers={"Content-Type": "text/plain; charset=UTF-8"})
    if response.status_code < 400:
        response.set_header("Cache-Control", cache)
        response.set_header("X-Content-Type-Options", "nosniff")
    return response
