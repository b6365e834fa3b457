"""Every error response, rendered in one place and chosen by the route's kind.

* ``API`` routes (UWS, VOSI, the registry, the store, admin, the callback): the message as plain
  text, or JSON ``{error, status}`` when the client asks for JSON; 401 carries the challenge.
* ``PAGE`` routes (the web client's pages, declared with ``kind=PAGE``): an HTML page; 401 is
  the sign-in form, which brings the browser back to the page.
* Bottle's own errors (no such route, a method the route lacks, an unhandled exception): plain
  text, whatever the route.
* A database outage (``opus.storage.outage``: PostgreSQL stopped, a connection cut, SQLite locked)
  is a 503 with ``Retry-After`` on every kind of route, never a 500: the request may succeed later.

``ErrorPlugin`` is installed outermost, so that errors raised while the body is bounded or the
caller identified are rendered like the handler's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bottle import HTTPError, HTTPResponse, Route, request, response as bottle_response

from opus.auth.authenticate import CHALLENGE
from opus.errors import BadRequest, ConfigurationError, OpusError, ServiceUnavailable, Unauthorized
from opus.server import pages
from opus.server.web import TEXT_MEDIA, XML_MEDIA, as_json, header, text, wants_json
from opus.storage.outage import RETRY_AFTER, is_outage

log = logging.getLogger(__name__)
#: The challenge of a 401 to a page's script: no Basic (see _from_page_script).
BEARER_CHALLENGE = 'Bearer realm="OPUS"'
#: The route option that names a route's kind.
KIND = "opus_kind"
API = "api"
PAGE = "page"


def api_error(status: int, message: str) -> HTTPResponse:
    """An API error: plain text, or JSON for clients that ask for it."""
    # Errors are plain text unless JSON is preferred over both text and XML (Accept's q-values).
    response = as_json({"error": message, "status": status}, status) if wants_json(TEXT_MEDIA + XML_MEDIA) \
        else text(message + "\n", status)
    if status == 401:
        response.set_header("WWW-Authenticate", BEARER_CHALLENGE if _from_page_script() else CHALLENGE)
    return response


def _from_page_script() -> bool:
    """A web page's fetch(): a Basic challenge would make the browser hold the request behind its
    password prompt, so the page never sees the 401 and cannot offer its sign-in page."""
    return header("Sec-Fetch-Dest") == "empty" and header("Sec-Fetch-Mode") in ("cors", "same-origin")


def page_error(exc: OpusError) -> HTTPResponse:
    """A page's error: the sign-in form for 401, else an HTML page with the status."""
    if isinstance(exc, Unauthorized):
        return pages.signin_required(exc)
    return pages.error_page(exc.status, exc.message)


def render(kind: str, exc: OpusError) -> HTTPResponse:
    """The response to ``exc`` on a route of ``kind``, with the headers it carries (429's Retry-After)."""
    response = None
    if kind == PAGE:
        try:
            response = page_error(exc)
        except OpusError as inner:  # the page itself cannot be built (e.g. an unknown Host): plain text
            response = api_error(inner.status, inner.message)
    if response is None:
        response = api_error(exc.status, exc.message)
    for name, value in getattr(exc, "headers", {}).items():
        response.set_header(name, value)
    return response


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached now (503, with Retry-After)."""

    def __init__(self) -> None:
        super().__init__("the database is unavailable at the moment; retry in a few seconds")
        self.headers = {"Retry-After": str(RETRY_AFTER)}


def _log_outage(exc: BaseException) -> None:
    first = str(exc).strip().splitlines()
    log.warning("database unavailable on %s %s: %s", request.method, request.path,
                first[0] if first else type(exc).__name__)


def outage_response(kind: str, exc: BaseException) -> HTTPResponse:
    """The 503 for a database outage (logged once, without a traceback: it is not a bug)."""
    _log_outage(exc)
    try:
        return render(kind, DatabaseUnavailable())
    except Exception as inner:  # a page that needs the database itself: plain text
        if not is_outage(inner):
            raise
        return render(API, DatabaseUnavailable())


#: A path segment (a job id, a user or definition name...) holding U+0000: no name or id can, and
#: PostgreSQL cannot even be asked (psycopg2 refuses the string: it was a 500 on every such route).
NUL_IN_PATH = "the URL's path holds a NUL character (%00), which no name or identifier can contain"


class ErrorPlugin:
    """Turns OpusError into the response of its route's kind; a database outage into a 503 with
    Retry-After; a ConfigurationError into a 500 that says so (and logs it).  Anything else is
    bottle's 500 (``bottle_error``).  A NUL character in any of the route's path values is a 400
    before the route runs."""

    name = "opus_errors"
    api = 2

    def apply(self, callback: Callable[..., Any], route: Route) -> Callable[..., Any]:
        kind = route.config.get(KIND, API)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                if kwargs and any("\x00" in value for value in kwargs.values() if isinstance(value, str)):
                    raise BadRequest(NUL_IN_PATH)
                return callback(*args, **kwargs)
            except HTTPResponse:
                raise
            except OpusError as exc:
                return render(kind, exc)
            except ConfigurationError as exc:
                log.error("configuration error: %s", exc)
                return api_error(500, f"server configuration error: {exc}")
            except Exception as exc:
                if is_outage(exc):
                    return outage_response(kind, exc)
                raise

        return wrapper


def bottle_error(err: HTTPError) -> str:
    """Bottle's own errors, as plain text (the unhandled exception of a 500 is logged, not shown)."""
    status = err.status_code
    message = {404: "not found", 405: "method not allowed"}.get(status, err.body or err.status_line)
    if status == 500 and err.exception is not None and is_outage(err.exception):
        # Raised where no route's ErrorPlugin runs (a before_request hook, another plugin).
        _log_outage(err.exception)
        bottle_response.status = 503
        bottle_response.set_header("Retry-After", str(RETRY_AFTER))
        bottle_response.content_type = "text/plain; charset=UTF-8"
        return f"{DatabaseUnavailable().message}\n"
    if status == 500:
        log.error("unhandled error on %s %s: %s", request.method, request.path, err.exception,
                  exc_info=err.exception)
        message = "internal server error"
    if status == 405:
        allowed = err.headers.get("Allow", "")
        err.set_header("Allow", allowed)
        if allowed:  # what to use instead, not only what was wrong
            message = f"method {request.method[:16]} not allowed here: this URL accepts {', '.join(allowed.split(','))}"
    err.content_type = "text/plain; charset=UTF-8"
    return f"{message}\n"


#: The statuses bottle itself may answer with, each rendered by ``bottle_error``.
BOTTLE_STATUSES = (400, 404, 405, 413, 500)
