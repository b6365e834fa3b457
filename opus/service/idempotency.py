"""Idempotent job creation: the ``Idempotency-Key`` request header.

A client that sends ``Idempotency-Key: <key>`` with a creation ``POST`` may send the same request
again (after a lost response, a timeout, a server restart): it gets the job the first request
created, not a second one.  The key is the client's, scoped to the caller (two users' keys never
meet), and it lives as long as the job it created: once that job is deleted or destroyed, the key
may create a new one.  The same key with a different request is refused with 422, as the IETF
draft "The Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header) says.

The key and a digest of the request are stored in the job's row by its INSERT
(``opus.storage.jobstore.CreationKey``): a job and its key exist together or not at all.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from opus.errors import BadRequest, OpusError
from opus.service.submission import Upload
from opus.storage.jobstore import CreationKey

#: The request header (IETF draft-ietf-httpapi-idempotency-key-header).
HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


class KeyReused(OpusError):
    """The idempotency key already created a job from a different request (422)."""

    status = 422


def parse_key(header: str) -> str:
    """The client's key from the header's value (a bare token or a quoted string); 400 if malformed."""
    value = header.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':  # a structured-field string, as the draft writes it
        value = value[1:-1]
    if not value or len(value) > MAX_KEY_LENGTH or not _KEY.fullmatch(value):
        raise BadRequest(f"{HEADER}: must be 1 to {MAX_KEY_LENGTH} printable ASCII characters "
                         "(for example a UUID)")
    return value


def creation_key(owner_key: str | None, key: str, jobname: str, form: Sequence[tuple[str, str]],
                 uploads: Sequence[Upload]) -> CreationKey:
    """The stored form of ``key`` for this owner, with the digest of this creation request."""
    scoped = hashlib.sha256(f"{owner_key or ''}\n{key}".encode()).hexdigest()
    return CreationKey(scoped, request_digest(jobname, form, uploads))


def request_digest(jobname: str, form: Sequence[tuple[str, str]], uploads: Sequence[Upload]) -> str:
    """SHA-256 of what a creation request asks for: the definition, the fields (names compared
    case-insensitively, the order of one name's values kept) and each upload's name and content."""
    fields = sorted(((name.strip().lower(), value) for name, value in form), key=lambda item: item[0])
    files = sorted((up.name.strip().lower(), up.filename, _content_digest(up)) for up in uploads)
    text = json.dumps([jobname, fields, files], ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _content_digest(up: Upload) -> str:
    """SHA-256 of an upload's content, read from where the stream is and rewound for saving."""
    stream = up.stream
    if not stream.seekable():  # pragma: no cover - form parts are spooled files
        raise BadRequest(f"{HEADER}: upload {up.name!r} cannot be read twice; retry without the key")
    start = stream.tell()
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    stream.seek(start)
    return digest.hexdigest()
