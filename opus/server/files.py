"""Serving a job's files (results, uploads, stdout/stderr, /store entities) so that they cannot attack
the browser (SECURITY.md; issue 11, finding 3).

Whatever a file holds, its response carries:

- a Content-Type from ``opus.jobdef.content_types`` (the job definition or OPUS's extension table, filtered
  by ``served_type``), never one a job, a client or a remote server chose;
- ``X-Content-Type-Options: nosniff``, so that no browser guesses HTML or script from the bytes;
- ``Content-Security-Policy: sandbox; default-src 'none'``: if it is ever rendered as a document, it
  runs in an opaque origin with no script, no plugin and no subresource;
- ``Content-Disposition: attachment`` unless its type is on the short inline list, always with a file
  name (RFC 6266, with ``filename*`` for names beyond ASCII).

``RESULTS_BASE_URL`` moves the links to these files to another origin (docs/deployment.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

from bottle import HTTPError, HTTPResponse, static_file

from opus.jobdef.content_types import is_inline, served_type
from opus.server.web import base_url
from opus.settings import Settings

CSP = "sandbox; default-src 'none'"
#: What may stay in the quoted ASCII ``filename``; everything else becomes "_" (the exact name, in
#: UTF-8, goes in ``filename*``).
_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9 !#$&'()+,.=@\[\]^_`{}~-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def files_base_url(settings: Settings) -> str:
    """The base of the links to job files: RESULTS_BASE_URL when set, else the service's own base."""
    return settings.RESULTS_BASE_URL.rstrip("/") if settings.RESULTS_BASE_URL else base_url(settings)


def content_disposition(file_name: str, inline: bool) -> str:
    """``inline`` or ``attachment`` with the file's name, quoted safely (RFC 6266 / RFC 8187).

    Only the last path segment of ``file_name`` is kept, and control characters are dropped: the name
    a browser saves under is never a path, and no header can be split."""
    name = _CONTROL.sub("", re.split(r"[/\\]", file_name or "")[-1])[:255]
    if name in ("", ".", ".."):
        name = "file"
    fallback = _UNSAFE_ASCII.sub("_", name)
    value = f'{"inline" if inline else "attachment"}; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def protect(response: HTTPResponse, content_type: str, file_name: str) -> HTTPResponse:
    """Set the headers every served job file carries (type already filtered by ``served_type``)."""
    response.set_header("X-Content-Type-Options", "nosniff")
    response.set_header("Content-Security-Policy", CSP)
    response.set_header("Content-Disposition", content_disposition(file_name, is_inline(content_type)))
    return response


def serve_file(root: Path | str, relative: str, recorded_type: str, file_name: str) -> HTTPResponse:
    """``root/relative`` with Range, HEAD, conditional requests (bottle) and the protective headers.

    The answer's status says what happened: 404/403 (not there) and 416 (Range beyond the file) come
    back as bottle's HTTPError for the caller to turn into its own error."""
    ctype = served_type(recorded_type)
    # bottle adds "; charset=UTF-8" to text/* types; download=False: we set Content-Disposition.
    response: HTTPResponse = static_file(relative, root=str(root), mimetype=ctype, download=False)
    if isinstance(response, HTTPError) and response.status_code != 416:
        return response
    return protect(response, ctype, file_name)
