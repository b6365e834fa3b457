"""Bounded cost of a request body, before and while it is parsed (docs/deployment.md, "Request limits").

* Every route that reads a body has a ceiling (:func:`route_limits`): the public sign-in form and
  the job wrappers' reports take a few KiB, uploads take ``MAX_UPLOAD_SIZE``, the rest
  ``MAX_BODY_SIZE``.  :class:`BodyLimitPlugin` refuses a ``Content-Length`` over the ceiling with
  413 before authentication and before a byte is read.
* A chunked body has no length to check: :func:`bounded_body` reads at most limit + 1 bytes of it
  (after authentication, when a route asks for its body) and answers 413 beyond.
* Forms are parsed with a cap on their fields and parts (:func:`parse_form`), enforced while
  parsing: a 100,000-part body stops at the first part over the cap instead of building them all.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from itertools import islice
from typing import IO, Any, BinaryIO

import multipart
from bottle import Route, request

from opus.errors import BadRequest, PayloadTooLarge
from opus.service.submission import Upload, no_space_is_507
from opus.server.urls import JOB_LIST_RULE, JOB_RULE as JOB
from opus.settings import Settings

#: The sign-in and sign-out forms: a name, a token, a CSRF token and a local "next" URL.
SIGNIN_BODY_LIMIT = 8 * 1024
#: Where the route's ceiling is kept for the body helpers (bytes).
CEILING_KEY = "opus.body_limit"
#: Where bottle caches the body it read (reused, so that bottle reads nothing more itself).
BOTTLE_BODY_KEY = "bottle.request.body"
#: The largest job definition accepted (``POST /jdl``), as a body or a multipart part.
MAX_DEFINITION_SIZE = 1024 * 1024
_FIELD = re.compile(rb"[^&]+")
_CHUNK_LINE = 1024  # the longest chunk-size line accepted (size, extensions, CRLF)


def route_limits(settings: Settings) -> dict[tuple[str, str], int]:
    """The body ceiling of each route that differs from ``MAX_BODY_SIZE``, by (method, rule)."""
    upload = max(settings.MAX_UPLOAD_SIZE, settings.MAX_BODY_SIZE)  # their forms take MAX_BODY_SIZE
    # The public routes take the lower of their own limit and MAX_BODY_SIZE, the ceiling of all forms.
    small = min(SIGNIN_BODY_LIMIT, settings.MAX_BODY_SIZE)
    return {
        ("POST", "/web/signin"): small,
        ("POST", "/web/signout"): small,
        ("POST", "/handler/job_event"): min(settings.MAX_REPORT_SIZE, settings.MAX_BODY_SIZE),
        # Job creation and parameters: the only routes that take uploads.
        ("POST", JOB_LIST_RULE): upload,
        ("POST", JOB): upload,
        ("POST", JOB + "/parameters"): upload,
        ("PUT", JOB + "/parameters/<name>"): upload,
        # A proposed definition, as a body or a multipart part with its format beside it.
        ("POST", "/jdl"): MAX_DEFINITION_SIZE + 64 * 1024,
    }


def content_length(environ: dict[str, Any]) -> int:
    """The Content-Length (-1 when absent); 400 when it is not a non-negative number."""
    raw = environ.get("CONTENT_LENGTH") or ""
    if not raw.strip():
        return -1
    if not raw.strip().isdigit():
        raise BadRequest(f"malformed Content-Length {raw[:40]!r}")
    return int(raw)


def too_large(limit: int, size: int | None = None) -> PayloadTooLarge:
    """The 413 for a body over ``limit`` (``size``: its Content-Length; None: chunked, cut short)."""
    what = f"of {size} bytes" if size is not None else "(chunked)"
    return PayloadTooLarge(f"request body {what} is larger than the limit of {limit} bytes here")


class BodyLimitPlugin:
    """Refuses a body whose Content-Length is over its route's ceiling with 413, before the
    caller is identified and before the body is read; records the ceiling for the helpers that
    read the body later (chunked bodies are measured as they are read)."""

    name = "opus_body_limit"
    api = 2

    def __init__(self, settings: Settings):
        self.default = settings.MAX_BODY_SIZE
        self.limits = route_limits(settings)

    def apply(self, callback: Callable[..., Any], route: Route) -> Callable[..., Any]:
        if route.method not in ("POST", "PUT", "PATCH"):
            return callback  # no route reads the body of other methods
        limit = self.limits.get((route.method, route.rule), self.default)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            request.environ[CEILING_KEY] = limit
            length = content_length(request.environ)
            if length > limit:
                raise too_large(limit, length)
            return callback(*args, **kwargs)

        return wrapper


def effective_limit(limit: int) -> int:
    """``limit``, lowered to the route's ceiling."""
    ceiling: int = request.environ.get(CEILING_KEY, limit)
    return min(limit, ceiling)


def bounded_body(limit: int) -> None:
    """413 unless the body is at most ``limit`` bytes (and the route's ceiling).

    With a Content-Length, nothing is read.  A chunked body is read here, at most limit + 1
    bytes, into the copy that ``request.body`` then returns.
    """
    env = request.environ
    limit = effective_limit(limit)
    length = content_length(env)
    if length >= 0:
        if length > limit:
            raise too_large(limit, length)
        return
    if "chunked" not in env.get("HTTP_TRANSFER_ENCODING", "").lower():
        return  # no length and not chunked: no body
    body = env.get(BOTTLE_BODY_KEY)
    if body is not None:  # read before, under another limit: measure it
        body.seek(0, 2)
        size = body.tell()
        body.seek(0)
        if size > limit:
            raise too_large(limit, size)
        return
    body = _spool(env, limit)
    env[BOTTLE_BODY_KEY] = env["wsgi.input"] = body


def _spool(env: dict[str, Any], limit: int) -> IO[bytes]:
    stream = env["wsgi.input"]
    # gunicorn and mod_wsgi remove the chunked framing themselves and say so with
    # wsgi.input_terminated; wsgiref passes it on.
    blocks = _until_eof(stream.read, limit) if env.get("wsgi.input_terminated") else _dechunk(stream, limit)
    body = tempfile.SpooledTemporaryFile(max_size=request.MEMFILE_MAX)
    size = 0
    for block in blocks:
        size += len(block)
        if size > limit:
            body.close()
            raise too_large(limit)
        body.write(block)
    body.seek(0)
    return body


def _until_eof(read: Callable[[int], bytes], limit: int) -> Iterator[bytes]:
    left = limit + 1
    while left > 0:
        block = read(min(left, 1 << 16))
        if not block:
            return
        left -= len(block)
        yield block


def _dechunk(stream: BinaryIO, limit: int) -> Iterator[bytes]:
    """The data of a chunked body (RFC 9112 §7.1), reading no more than limit + 1 bytes of it."""
    left = limit + 1
    while left > 0:
        line = stream.readline(_CHUNK_LINE)
        if not line.endswith(b"\r\n"):
            raise BadRequest("malformed chunked body: bad chunk-size line")
        size_text = line[:-2].split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or size_text.strip(b"0123456789abcdefABCDEF"):
            raise BadRequest("malformed chunked body: bad chunk size")
        size = int(size_text, 16)
        if size == 0:
            return  # trailers, if any, are left unread (as bottle does)
        while size > 0 and left > 0:
            block = stream.read(min(size, left, 1 << 16))
            if not block:
                raise BadRequest("malformed chunked body: it ends inside a chunk")
            size -= len(block)
            left -= len(block)
            yield block
        if left > 0 and stream.read(2) != b"\r\n":
            raise BadRequest("malformed chunked body: a chunk does not end with CRLF")


# ---- forms ---------------------------------------------------------------------------------------------
def parse_form(limit: int, max_parts: int) -> tuple[list[tuple[str, str]], list[Upload]]:
    """The fields and uploads of the form in this request's body (at most ``limit`` bytes, at
    most ``max_parts`` fields or parts: 400 beyond, found while parsing)."""
    ctype, options = multipart.parse_options_header(request.environ.get("CONTENT_TYPE", ""))
    if ctype == "multipart/form-data":
        return _parse_multipart(options, max_parts)
    raw = request.body.read(limit + 1)
    if sum(1 for _ in islice(_FIELD.finditer(raw), max_parts + 1)) > max_parts:
        raise BadRequest(too_many(max_parts, "fields"))
    return list(request.forms.decode().allitems()), []


def too_many(max_parts: int, what: str) -> str:
    return (f"the form has more than {max_parts} {what}, the most this server accepts in one request "
            "(MAX_FORM_PARTS)")


def _parse_multipart(options: dict[str, str], max_parts: int) -> tuple[list[tuple[str, str]], list[Upload]]:
    boundary = options.get("boundary")
    if not boundary:
        raise BadRequest("malformed multipart body: the Content-Type has no boundary")
    memory = request.MEMFILE_MAX  # short fields are kept in memory, up to this much in all
    fields: list[tuple[str, str]] = []
    files: list[Upload] = []
    parts = []
    try:
        # Parts are spooled to temporary files: a full disk there is a 507, not a 500.
        with no_space_is_507("the request's files"):
            parser = multipart.MultipartParser(request.body, boundary, content_length(request.environ),
                                               charset=options.get("charset") or "utf8", part_limit=max_parts,
                                               spool_limit=memory, memory_limit=memory)
            for part in parser:
                parts.append(part)
                # As bottle did: a part without a file name is a field, unless too long to keep in
                # memory (then an upload without a name).
                if part.filename is None and part.is_buffered():
                    fields.append((part.name, part.value))
                else:
                    files.append(Upload(part.name, part.file, part.filename or ""))
    except multipart.ParserLimitReached as exc:
        _close(parts)
        if len(parts) == max_parts:
            raise BadRequest(too_many(max_parts, "parts")) from None
        if "memory" in str(exc).lower():
            raise PayloadTooLarge(f"the form's fields are larger than {memory} bytes in all: "
                                  "send long values as files") from None
        raise BadRequest(f"malformed multipart body: {exc}") from None
    except (multipart.MultipartError, UnicodeError, LookupError) as exc:  # LookupError: an unknown charset
        _close(parts)
        raise BadRequest(f"malformed multipart body: {_reason(exc)}") from None
    return fields, files


def _reason(exc: Exception) -> str:
    """What is wrong with a multipart body, in words (the parser wraps a decoding error in a tuple)."""
    if isinstance(exc, UnicodeError) or any(isinstance(arg, UnicodeError) for arg in exc.args):
        return "a part's headers or a field's value are not UTF-8"
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def _close(parts: list[multipart.MultipartPart]) -> None:
    for part in parts:
        part.close()
