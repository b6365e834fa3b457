"""The web client's HTML: pages from the templates, the sign-in form, its cookies and redirects.

Routes are in ``web_routes``; errors on page routes become these pages (``failures``).
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import bottle
from bottle import HTTPResponse, request

from opus.auth import session as web_session
from opus.errors import Unauthorized
from opus.server.routing import settings
from opus.server.web import base_url
from opus.settings import Settings
from opus.web import TEMPLATES_DIR

HTML_TYPE = "text/html; charset=UTF-8"
#: Pages run only their own scripts and load nothing from elsewhere (data: for Bootstrap's icons).
# connect-src: the SAMP Web Profile hub on the user's own computer ("Send to TOPCAT/Aladin", on click).
CSP = ("default-src 'self'; connect-src 'self' http://localhost:21012; img-src 'self' data: blob:; "
       "style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Type": HTML_TYPE, "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def root() -> str:
    """The path prefix of this server ("" at the root of its host)."""
    return urlsplit(base_url(settings())).path.rstrip("/")


def absolute(path: str) -> str:
    """The absolute URL of ``path``, a path on this server (``root()`` included)."""
    base = base_url(settings())
    return base[: len(base) - len(root())] + path


def _secure() -> bool:
    return request.environ.get("wsgi.url_scheme") == "https" or (settings().BASE_URL or "").startswith("https:")


def cookie(name: str, value: str, max_age: int) -> str:
    """A Set-Cookie value for this server's pages (the sign-in nonce: SameSite=Strict)."""
    same_site = "Strict" if name == web_session.SIGNIN_COOKIE else "Lax"
    return web_session.set_cookie_header(name, value, max_age, _secure(), root() + "/", same_site)


#: Where OPUS serves a SITE_LOGO that is a file: among the pages' assets (no file of opus/web/static has this name).
LOGO_ASSET = "site-logo"
LOGO_PATH = "/web/static/" + LOGO_ASSET


def logo_src(site: Settings) -> str:
    """The ``src`` of the site's logo on the pages: "" (none), OPUS's own logo route, or SITE_LOGO's URL."""
    if not site.SITE_LOGO:
        return ""
    if site.SITE_LOGO.startswith(("http://", "https://")):
        return site.SITE_LOGO
    # A logo file that is missing shows no logo (rather than a broken image and a 404 on every page).
    return root() + LOGO_PATH if os.path.isfile(site.SITE_LOGO) else ""


def page_headers(site: Settings) -> dict[str, str]:
    """The pages' headers; a SITE_LOGO given as a URL adds its origin (only) to the images allowed."""
    if not site.SITE_LOGO.startswith(("http://", "https://")):
        return PAGE_HEADERS
    parts = urlsplit(site.SITE_LOGO)
    origin = f"{parts.scheme}://{parts.netloc}"
    return {**PAGE_HEADERS, "Content-Security-Policy": CSP.replace("img-src 'self'", f"img-src 'self' {origin}")}


def home_paragraphs(text: str) -> list[str]:
    """SITE_HOME_TEXT as paragraphs (split at blank lines; the template escapes them)."""
    return [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]


def render(template: str, title: str, status: int = 200, cookies: tuple[str, ...] = (),
           **data: Any) -> HTTPResponse:
    """A page from ``template`` with the layout's common values (user, CSRF token, root, the site)."""
    who = request.environ.get("opus.identity")
    session = request.environ.get("opus.session")
    site = settings()
    body = bottle.template(
        template, template_lookup=[str(TEMPLATES_DIR)], title=title, root=root(),
        user=who.name if who else None, admin=bool(who and who.is_admin), signed_in=session is not None,
        editor=bool(who and who.may_edit_definitions),
        csrf=web_session.csrf_token(site, session) if session else "", page=template, data=data,
        site_title=site.SITE_TITLE or "OPUS", logo=logo_src(site), **data)
    response = HTTPResponse(body.encode("utf-8"), status=status, headers=page_headers(site))
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


def signin_page(message: str = "", status: int = 200, name: str = "", next_url: str | None = "",
                signed_out: bool = False) -> HTTPResponse:
    """The sign-in form, with a fresh (or still fresh) nonce cookie against login CSRF."""
    nonce = web_session.cookie_of(request.environ, web_session.SIGNIN_COOKIE)
    if nonce is None or not web_session.fresh_signin_nonce(nonce):  # reused while fresh: several tabs
        nonce = web_session.new_signin_nonce()
    cookies = [cookie(web_session.SIGNIN_COOKIE, nonce, web_session.SIGNIN_LIFETIME)]
    if web_session.cookie_of(request.environ) is not None and status == 401:
        cookies.append(cookie(web_session.COOKIE, "", 0))  # a stale session: forget it
    response = render("signin", "Sign in", status=status, cookies=tuple(cookies), message=message, name=name,
                      next_url=next_path(next_url), signin_csrf=web_session.signin_token(settings(), nonce),
                      anonymous_ok=settings().ALLOW_ANONYMOUS, signed_out=signed_out,
                      registration=settings().REGISTRATION != "off", **_single_sign_on(next_url))
    if status == 401:
        response.set_header("WWW-Authenticate", 'OPUS-Session realm="OPUS"')
    return response


def _single_sign_on(next_url: str | None) -> dict[str, str]:
    """The sign-in page's "Sign in with <provider>" button (docs/single-sign-on.md); none when not configured."""
    site = settings()
    if not site.OIDC_ISSUER:
        return {"oidc_name": "", "oidc_url": ""}
    return {"oidc_name": site.OIDC_PROVIDER_NAME,
            "oidc_url": f"{root()}/web/signin/oidc?{urlencode({'next': next_path(next_url)})}"}


def signin_required(exc: Unauthorized) -> HTTPResponse:
    """A page asked for without valid credentials: the sign-in form, then back here."""
    path = request.environ.get("SCRIPT_NAME", "") + request.path
    query = request.environ.get("QUERY_STRING", "")
    return signin_page(exc.message, 401, next_url=path + (f"?{query}" if query else ""))


def error_page(status: int, message: str) -> HTTPResponse:
    return render("error", f"Error {status}", status=status, message=message)
