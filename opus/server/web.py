"""Request helpers shared by the routes: identity, input, URLs and responses."""

from __future__ import annotations

import json
from typing import Any

from bottle import HTTPError, HTTPResponse, request

from opus.errors import BadRequest, Forbidden, PayloadTooLarge, Unauthorized
from opus.service.submission import Upload
from opus.auth.identity import ANONYMOUS, Identity
from opus.server import hosts, limits
from opus.settings import Settings

XML_TYPE = "text/xml; charset=UTF-8"
TEXT_TYPE = "text/plain; charset=UTF-8"
JSON_TYPE = "application/json"


def identity() -> Identity:
    """The caller, as resolved by the identity plugin."""
    who: Identity = request.environ.get("opus.identity", ANONYMOUS)
    return who


def require_admin(who: Identity, what: str) -> None:
    """401 for an anonymous caller (who may still sign in as an admin), 403 for other non-admins;
    ``what`` names what is asked for ("the admin API")."""
    if who.anonymous:
        raise Unauthorized(f"{what} needs an admin's credentials")
    if not who.is_admin:
        raise Forbidden(f"{what} is for admins only")


def base_url(settings: Settings) -> str:
    """The public base URL for Location and links: BASE_URL, else this request's Host only when it is
    allowed (ALLOWED_HOSTS, the listening address), else the listening address (opus.server.hosts).
    The URL jobs call back is not this: it never comes from a request (opus.listen.callback_base)."""
    if settings.BASE_URL:
        return settings.BASE_URL.rstrip("/")
    return hosts.request_base_url(settings, request.environ)


def wants_json() -> bool:
    accept = request.environ.get("HTTP_ACCEPT", "")
    return "application/json" in accept and "xml" not in accept.split("application/json")[0]


def query_items() -> list[tuple[str, str]]:
    return list(request.query.decode().allitems())


def query_values(name: str) -> list[str]:
    """All values of a query parameter, its name matched case-insensitively (DALI)."""
    upper = name.upper()
    return [v for k, v in query_items() if k.upper() == upper]


def content_length() -> int:
    """The Content-Length (-1 when absent, i.e. chunked); 400 when it is not a number."""
    try:
        length: int = request.content_length
        return length
    except ValueError:
        raise BadRequest(f"malformed Content-Length {request.environ.get('CONTENT_LENGTH')!r}") from None


def check_body_size(limit: int) -> None:
    """413 for a body over ``limit`` (or the route's lower ceiling, opus.server.limits): by its
    Content-Length before reading, or (chunked) after reading at most limit + 1 bytes."""
    limits.bounded_body(limit)


def read_body(limit: int) -> bytes:
    """The raw body, or 413 when it is over ``limit`` bytes."""
    check_body_size(limit)
    body: bytes = request.body.read(limit + 1)
    return body


def form_input(settings: Settings) -> tuple[list[tuple[str, str]], list[Upload]]:
    """The (name, value) fields and the uploaded files of a form POST (urlencoded or multipart).

    Multipart bodies may be up to MAX_UPLOAD_SIZE where the route takes uploads (its ceiling,
    opus.server.limits), others MAX_BODY_SIZE; at most MAX_FORM_PARTS fields or parts either way.
    """
    ctype = request.content_type.split(";")[0].strip().lower()
    multipart = ctype == "multipart/form-data"
    limit = limits.effective_limit(settings.MAX_UPLOAD_SIZE if multipart else settings.MAX_BODY_SIZE)
    check_body_size(limit)
    if content_length() == 0 and "chunked" not in request.environ.get("HTTP_TRANSFER_ENCODING", ""):
        return [], []
    if ctype not in ("", "application/x-www-form-urlencoded", "multipart/form-data"):
        raise BadRequest(f"unsupported Content-Type {request.content_type!r}: send "
                         "application/x-www-form-urlencoded or multipart/form-data")
    try:
        return limits.parse_form(limit, settings.max_form_parts)
    except (UnicodeError, ValueError) as exc:
        raise BadRequest(f"malformed form body: {exc}") from None
    except HTTPError as exc:  # bottle's own 413 (a form over MEMFILE_MAX)
        if exc.status_code == 413:
            raise PayloadTooLarge("request body too large") from None
        raise BadRequest(f"malformed request body: {exc.body}") from None


def form_values(fields: list[tuple[str, str]], name: str) -> list[str]:
    upper = name.upper()
    return [v for k, v in fields if k.upper() == upper]


def single(fields: list[tuple[str, str]], name: str, required: bool = True) -> str | None:
    values = form_values(fields, name)
    if len(values) > 1:
        raise BadRequest(f"{name} given more than once")
    if not values:
        if required:
            raise BadRequest(f"{name} is required")
        return None
    return values[0]


def required(fields: list[tuple[str, str]], name: str) -> str:
    """The one value of a required field: 400 when it is missing or given more than once."""
    value = single(fields, name, required=False)
    if value is None:
        raise BadRequest(f"{name} is required")
    return value


def see_other(url: str) -> HTTPResponse:
    """The 303 every state change answers with (absolute Location, CHECKLIST CLI-03/05)."""
    return HTTPResponse(status=303, headers={"Location": url, "Content-Type": TEXT_TYPE}, body="")


def xml(body: str) -> HTTPResponse:
    return HTTPResponse(body=body.encode("utf-8"), headers={"Content-Type": XML_TYPE})


def text(body: str, status: int = 200) -> HTTPResponse:
    return HTTPResponse(status=status, body=body.encode("utf-8"), headers={"Content-Type": TEXT_TYPE})


def as_json(data: Any, status: int = 200) -> HTTPResponse:
    return HTTPResponse(status=status, body=json.dumps(data).encode("utf-8"), headers={"Content-Type": JSON_TYPE})
