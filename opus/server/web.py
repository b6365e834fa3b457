"""Request helpers shared by the routes: identity, input, URLs and responses."""

from __future__ import annotations

import json
import re
from typing import Any

from bottle import HTTPError, HTTPResponse, request, response
from bottle import _parse_qsl as bottle_parse_qsl  # bottle's own splitting and unquoting of a query

from opus import safejson
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
    return hosts.request_base_url(settings, request.environ)  # memoised there, per Host


# ---- content negotiation (RFC 9110 §12.5.1) ------------------------------------------------------
#: The media types that ask for each representation a route may send.
XML_MEDIA = ("application/xml", "text/xml")
JSON_MEDIA = ("application/json",)
TEXT_MEDIA = ("text/plain",)
HTML_MEDIA = ("text/html", "application/xhtml+xml")
#: Set in the environ by ``negotiate``: the response varies with Accept (``vary_on_accept``).
NEGOTIATED = "opus.negotiated"
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+\Z")
#: Media ranges read from one Accept header at most (a longer header costs no more).
MAX_RANGES = 64


def accept_ranges(header: str) -> list[tuple[str, str, float]]:
    """The (type, subtype, q) of each media range of an Accept header, lower-cased; a range or q-value
    that is malformed is skipped (a client's typo must not cost it every other range)."""
    ranges = []
    for item in header.split(",")[:MAX_RANGES]:
        media, *params = item.split(";")
        kind, slash, sub = media.strip().lower().partition("/")
        if not slash or not _TOKEN.match(kind) or not _TOKEN.match(sub) or (kind == "*" and sub != "*"):
            continue
        q: float | None = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                q = float(value.strip()) if _QVALUE.match(value.strip()) else None
                break  # what follows q are accept-extensions, not media type parameters
        if q is not None:
            ranges.append((kind, sub, q))
    return ranges


def quality(ranges: list[tuple[str, str, float]], media: str) -> float:
    """The q-value ``ranges`` give ``media``: that of the most specific matching range (the highest of
    equally specific ones), 0 when none matches."""
    kind, _, sub = media.partition("/")
    best, q_best = -1, 0.0
    for r_kind, r_sub, q in ranges:
        specificity = 2 if (r_kind, r_sub) == (kind, sub) else 1 if (r_kind, r_sub) == (kind, "*") \
            else 0 if r_kind == "*" else -1
        if specificity > best or (specificity == best and q > q_best):
            best, q_best = specificity, q
    return q_best if best >= 0 else 0.0


def negotiate(*offers: tuple[str, ...]) -> int | None:
    """The index of the representation this request's Accept prefers among ``offers`` (each the media
    types that ask for it, the server's preference first): the highest q-value, ties to the earlier
    offer; 0 without an Accept header (or with none that can be read); None when the header refuses
    every offer.  The response is marked to carry ``Vary: Accept``."""
    request.environ[NEGOTIATED] = True
    ranges = accept_ranges(request.environ.get("HTTP_ACCEPT", ""))
    if not ranges:
        return 0
    scores = [max(quality(ranges, media) for media in offer) for offer in offers]
    best = max(scores)
    return scores.index(best) if best > 0 else None


def preferred(*offers: tuple[str, ...]) -> int:
    """``negotiate``, with the first offer when the client accepts none of them: UWS resources answer
    XML whatever the client says (UWS-09), and HTTP allows a default in place of 406."""
    return negotiate(*offers) or 0


def wants_json(alternative: tuple[str, ...] = XML_MEDIA) -> bool:
    """Whether this request prefers JSON to ``alternative`` (UWS XML by default; plain text for
    errors), the alternative winning ties and refusals."""
    return preferred(alternative, JSON_MEDIA) == 1


def vary_on_accept() -> None:
    """An after_request hook: a response whose representation was negotiated says so
    (``Vary: Accept``, added to any Vary already set, e.g. Origin by opus.server.cors)."""
    if not request.environ.get(NEGOTIATED):
        return
    present = [v.strip() for v in response.headers.get("Vary", "").split(",") if v.strip()]
    if "accept" not in (v.lower() for v in present) and "*" not in present:
        response.set_header("Vary", ", ".join([*present, "Accept"]))


#: Where ``query_items`` keeps the decoded query of a request (it is read several times per request).
QUERY_ITEMS = "opus.query_items"


#: A query value holding U+0000: no parameter can, and PostgreSQL cannot be asked about it (psycopg2
#: refuses the string: a job id to copy, an OIDC subject were 500s there).
NUL_IN_QUERY = "the query string holds a NUL character (%00), which no parameter can contain"


def query_items() -> list[tuple[str, str]]:
    """The query string's (name, value) pairs, percent-decoded as UTF-8: 400 when they are not UTF-8
    (``%ff``), rather than bottle's UnicodeDecodeError (a 500) or its Latin-1 reading (mojibake),
    and 400 when they hold a NUL character.  The only way routes read the query; parsed once per
    request."""
    items: list[tuple[str, str]] | None = request.environ.get(QUERY_ITEMS)
    if items is None:
        try:
            items = [(key.encode("latin1").decode("utf-8"), value.encode("latin1").decode("utf-8"))
                     for key, value in request.query.allitems()]
        except UnicodeError:
            raise BadRequest("the query string is not UTF-8: percent-encode the UTF-8 bytes of each "
                             "character (é is %C3%A9)") from None
        if any("\x00" in key or "\x00" in value for key, value in items):
            raise BadRequest(NUL_IN_QUERY)
        request.environ[QUERY_ITEMS] = items
    return items


def query_get(name: str) -> str | None:
    """The last value of the query parameter ``name`` (its exact name), None when absent: what
    bottle's ``request.query.get`` returns, decoded as ``query_items`` does."""
    value = None
    for key, item in query_items():
        if key == name:
            value = item
    return value


def header(name: str) -> str | None:
    """A request header's value as the client sent it (WSGI gives it as Latin-1 text; nothing is
    decoded, so no byte makes an error here), None when absent.  Callers check its syntax."""
    value: str | None = request.environ.get("HTTP_" + name.upper().replace("-", "_"))
    return value


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


def json_object(settings: Settings, example: str = "") -> dict[str, Any]:
    """The body as a JSON object ({} when empty); 400 for anything else, naming ``example``; 413
    over MAX_BODY_SIZE; 400 nested deeper than safejson allows."""
    raw = read_body(settings.MAX_BODY_SIZE)
    if not raw:
        return {}
    wanted = f"send a JSON object{': ' + example if example else ''}"
    try:
        data = safejson.loads(raw)
    except ValueError:
        raise BadRequest(wanted) from None
    if not isinstance(data, dict):
        raise BadRequest(wanted)
    return data


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
        if not multipart:
            return _urlencoded(limit, settings.max_form_parts), []
        return limits.parse_form(limit, settings.max_form_parts)
    except (UnicodeError, ValueError) as exc:
        raise BadRequest(f"malformed form body: {exc}") from None
    except HTTPError as exc:  # bottle's own 413 (a form over MEMFILE_MAX)
        if exc.status_code == 413:
            raise PayloadTooLarge("request body too large") from None
        raise BadRequest(f"malformed request body: {exc.body}") from None


def _urlencoded(limit: int, max_parts: int) -> list[tuple[str, str]]:
    """The fields of an urlencoded body, parsed straight from the bytes (bottle's FormsDict, built
    and then decoded into a second one, cost more than the rest of a job creation's parsing).
    Same result as bottle's ``request.forms.decode().allitems()``: bottle's own splitting and
    unquoting, the values of one name together in the order of the names' first appearance,
    UTF-8 (UnicodeError: 400), bodies over MEMFILE_MAX refused (413)."""
    raw: bytes = request.body.read(limit + 1)
    if content_length() > request.MEMFILE_MAX or len(raw) > request.MEMFILE_MAX:
        raise PayloadTooLarge("request body too large")
    if sum(1 for field in raw.split(b"&") if field) > max_parts:
        raise BadRequest(limits.too_many(max_parts, "fields"))
    grouped: dict[str, list[str]] = {}
    for key, value in bottle_parse_qsl(raw.decode("latin1")):
        grouped.setdefault(key, []).append(value)
    return [(key.encode("latin1").decode("utf-8"), value.encode("latin1").decode("utf-8"))
            for key, values in grouped.items() for value in values]


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
