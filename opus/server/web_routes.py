"""The web client's pages, sign-in and assets: ``/web/...``.

    GET  /web/                             the job definitions the caller may run
    GET  /web/jobs[/<jobname>]             job lists (all definitions, or one)
    GET  /web/jobs/<jobname>/<job_id>      one job
    GET  /web/new/<jobname>[?from=<id>]    the job form ("run again" prefills it from a job)
    GET  /web/editor[?name=]               the definition editor
    GET  /web/admin                        users, definitions and server status (admins)
    GET  /web/session                      who the browser is signed in as, and its CSRF token (JSON)
    GET  /web/signin, POST /web/signin     the sign-in form (name + token -> a session cookie)
    POST /web/signout                      ends the session
    GET  /web/static/<path>                the pages' scripts and styles, uws.js
    GET  /web/lib/<path>                   Bootstrap and CodeMirror, from WEB_LIBRARIES_DIR (npm ci)

Pages are shells: their scripts fetch everything through the public REST API (``uws.js``).  A
page asked for without the credentials it needs answers 401 with the sign-in form.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import bottle
from bottle import Bottle, HTTPResponse, request, static_file

from opus.errors import BadRequest, Forbidden, OpusError, TooManyRequests, Unauthorized
from opus.web import STATIC_DIR, TEMPLATES_DIR
from opus.auth import session as web_session
from opus.server.render import iso
from opus.server.web import as_json, base_url, form_input, identity
HTML_TYPE = "text/html; charset=UTF-8"
#: Pages run only their own scripts and load nothing from elsewhere (data: for Bootstrap's icons).
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Type": HTML_TYPE, "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
#: What /web/lib serves of node_modules: the libraries' distributed files, nothing else.
LIBRARIES = ("bootstrap/dist/", "codemirror/lib/", "codemirror/mode/", "codemirror/addon/")


def install(app: Bottle, services) -> None:
    settings = services.settings

    def root() -> str:
        """The path prefix of this server ("" at the root of its host)."""
        return urlsplit(base_url(settings)).path.rstrip("/")

    def secure() -> bool:
        return request.environ.get("wsgi.url_scheme") == "https" or (settings.BASE_URL or "").startswith("https:")

    def cookie(name: str, value: str, max_age: int) -> str:
        same_site = "Strict" if name == web_session.SIGNIN_COOKIE else "Lax"
        return web_session.set_cookie_header(name, value, max_age, secure(), root() + "/", same_site)

    def render(template: str, title: str, status: int = 200, cookies: tuple = (), **data) -> HTTPResponse:
        who = request.environ.get("opus.identity")
        session = request.environ.get("opus.session")
        body = bottle.template(
            template, template_lookup=[str(TEMPLATES_DIR)], title=title, root=root(),
            user=who.name if who else None, admin=bool(who and who.is_admin), signed_in=session is not None,
            csrf=web_session.csrf_token(settings, session) if session else "", page=template, data=data, **data)
        response = HTTPResponse(body.encode("utf-8"), status=status, headers=PAGE_HEADERS)
        for value in cookies:
            response.add_header("Set-Cookie", value)
        return response

    def next_path(value: str | None) -> str:
        """Where to go after signing in: a page of this server only (no open redirect)."""
        value = (value or "").strip()
        if value.startswith(root() + "/web/") and not value.startswith("//") and "\\" not in value \
                and not any(ord(c) < 33 for c in value):
            return value
        return root() + "/web/"

    def signin_page(message: str = "", status: int = 200, name: str = "", next_url: str = "",
                    signed_out: bool = False) -> HTTPResponse:
        nonce = web_session.cookie_of(request.environ, web_session.SIGNIN_COOKIE)
        if not web_session.fresh_signin_nonce(nonce):  # reused while fresh: several tabs may sign in
            nonce = web_session.new_signin_nonce()
        cookies = [cookie(web_session.SIGNIN_COOKIE, nonce, web_session.SIGNIN_LIFETIME)]
        if web_session.cookie_of(request.environ) is not None and status == 401:
            cookies.append(cookie(web_session.COOKIE, "", 0))  # a stale session: forget it
        response = render("signin", "Sign in", status=status, cookies=tuple(cookies), message=message, name=name,
                          next_url=next_path(next_url), signin_csrf=web_session.signin_token(settings, nonce),
                          anonymous_ok=settings.ALLOW_ANONYMOUS, signed_out=signed_out)
        if status == 401:
            response.set_header("WWW-Authenticate", 'OPUS-Session realm="OPUS"')
        return response

    def unauthorized(exc: Unauthorized) -> HTTPResponse:
        """A page asked for without valid credentials: the sign-in form, then back here."""
        path = request.environ.get("SCRIPT_NAME", "") + request.path
        query = request.environ.get("QUERY_STRING", "")
        return signin_page(exc.message, 401, next_url=path + (f"?{query}" if query else ""))

    def page(rule: str, admin_only: bool = False):
        """Decorator: a page route; OPUS errors become HTML pages with their status."""
        def decorate(handler):
            def wrapper(*args, **kwargs):
                try:
                    if admin_only:
                        who = identity()
                        if who.anonymous:
                            raise Unauthorized("this page is for admins: sign in")
                        if not who.is_admin:
                            raise Forbidden("this page is for admins only")
                    return handler(*args, **kwargs)
                except Unauthorized as exc:
                    return unauthorized(exc)
                except OpusError as exc:
                    return render("error", f"Error {exc.status}", status=exc.status, message=exc.message)
            return app.get(rule, opus_unauthorized=unauthorized, name=handler.__name__)(wrapper)
        return decorate

    # ---- pages ------------------------------------------------------------------------------------
    @page("/web/")
    def web_home():
        return render("definitions", "Job definitions")

    @page("/web/jobs")
    def web_all_jobs():
        return render("jobs", "Jobs", jobname="")

    @page("/web/jobs/<jobname>")
    def web_jobs(jobname):
        jobdef = services.registry.get(jobname)
        return render("jobs", f"Jobs: {jobdef.name}", jobname=jobdef.name)

    @page("/web/jobs/<jobname>/<job_id>")
    def web_job(jobname, job_id):
        job = services.joblist.get(jobname, job_id, identity())
        return render("job", f"Job {job.job_id}", jobname=job.jobname, job_id=job.job_id)

    @page("/web/new/<jobname>")
    def web_new(jobname):
        jobdef = services.registry.get(jobname)
        if not identity().may_use(jobdef.name):
            raise Forbidden(f"you may not use the job definition {jobdef.name!r}")
        source = (request.query.get("from") or "").strip()
        if source:  # "run again": the job must be the caller's
            source = services.joblist.get(jobname, source, identity()).job_id
        return render("form", f"New {jobdef.name} job", jobname=jobdef.name, from_job=source)

    @page("/web/editor")
    def web_editor():
        return render("editor", "Definition editor", name=(request.query.get("name") or "")[:64])

    @page("/web/admin", admin_only=True)
    def web_admin():
        return render("admin", "Administration")

    @app.get("/web/session")
    def web_session_info():
        who = identity()
        session = request.environ.get("opus.session")
        return as_json({
            "user": who.name, "admin": who.is_admin, "anonymous": who.anonymous,
            "session": session is not None,
            "csrfToken": web_session.csrf_token(settings, session) if session else None,
            "expires": iso(_utc(session.expires)) if session else None,
            "signin": f"{base_url(settings)}/web/signin"})

    # ---- signing in and out ------------------------------------------------------------------------
    @app.get("/web/signin", opus_public=True)
    def web_signin_form():
        return signin_page(next_url=request.query.get("next"), signed_out=bool(request.query.get("signed_out")))

    @app.post("/web/signin", opus_public=True)
    def web_signin():
        fields, _files = form_input(settings)
        values = {k: v for k, v in fields if k in ("name", "token", "next", web_session.CSRF_FIELD)}
        name, token = values.get("name", "").strip(), values.get("token", "").strip()
        next_url = values.get("next", "")
        nonce = web_session.cookie_of(request.environ, web_session.SIGNIN_COOKIE)
        if not web_session.check_signin(settings, nonce, values.get(web_session.CSRF_FIELD)):
            return signin_page("The sign-in form had expired (or cookies are off): please try again.", 403,
                               name, next_url)
        if not name or not token:
            return signin_page("Give your user name and your token.", 400, name, next_url)
        try:
            user = services.auth.sign_in(name, token, request.environ.get("REMOTE_ADDR"))
        except Unauthorized:
            return signin_page("Wrong user name or token.", 401, name, next_url)
        except TooManyRequests as exc:  # failed sign-ins throttled (opus.auth.throttle): no check was made
            response = signin_page(f"Too many failed sign-ins: try again in {exc.retry_after} s.", 429, name,
                                   next_url)
            response.set_header("Retry-After", str(exc.retry_after))
            return response
        value, _session = web_session.issue(settings, user.name, user.session_stamp)
        response = HTTPResponse(status=303, headers={"Location": _absolute(next_path(next_url))})
        response.add_header("Set-Cookie", cookie(web_session.COOKIE, value, settings.SESSION_LIFETIME))
        response.add_header("Set-Cookie", cookie(web_session.SIGNIN_COOKIE, "", 0))
        return response

    @app.post("/web/signout", opus_public=True)
    def web_signout():
        fields, _files = form_input(settings)
        value = web_session.cookie_of(request.environ)
        session = web_session.parse(settings, value) if value else None
        if session is not None:
            presented = [v for k, v in fields if k == web_session.CSRF_FIELD]
            if len(presented) != 1 or not web_session.check_csrf(settings, session, presented[0]):
                raise Forbidden("signing out needs the page's CSRF token: use the Sign out button")
        response = HTTPResponse(status=303, headers={"Location": _absolute(f"{root()}/web/signin?signed_out=1")})
        response.add_header("Set-Cookie", cookie(web_session.COOKIE, "", 0))
        return response

    def _absolute(path: str) -> str:
        base = base_url(settings)
        return base[: len(base) - len(root())] + path

    # ---- assets --------------------------------------------------------------------------------------
    @app.get("/web/static/<path:path>", opus_public=True)
    def web_static(path):
        return _asset(path, STATIC_DIR, "no-cache")

    @app.get("/web/lib/<path:path>", opus_public=True)
    def web_lib(path):
        if not path.startswith(LIBRARIES) or ".." in path.split("/"):
            raise BadRequest(f"/web/lib serves only {', '.join(LIBRARIES)}")
        return _asset(path, settings.WEB_LIBRARIES_DIR, "public, max-age=86400",
                      missing=" (run `npm ci` at the top of OPUS: scripts/setup.sh does)")


def _asset(path: str, directory, cache: str, missing: str = "") -> HTTPResponse:
    if not path or any(ord(c) < 32 for c in path):
        raise BadRequest("bad asset path")
    response = static_file(path, root=str(directory))
    if response.status_code in (403, 404):
        return HTTPResponse(f"no such file: {quote(path)[:200]}{missing}\n", status=404,
                            headers={"Content-Type": "text/plain; charset=UTF-8"})
    if response.status_code < 400:
        response.set_header("Cache-Control", cache)
        response.set_header("X-Content-Type-Options", "nosniff")
    return response


def _utc(seconds: int):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, timezone.utc)
