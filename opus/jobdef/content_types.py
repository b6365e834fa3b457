"""Which content type a job's file has: decided by the server, never by a job, a client or a remote host.

A result's type comes from its job definition (a named result's ``content_type``); a result matched by
a glob pattern, an upload and an input fetched from a URL get the type of their file name's extension
in the small table below, which OPUS ships (not the operating system's ``mimetypes`` database, whose
contents vary between machines).  A job's report, a client's multipart header and a remote server's
``Content-Type`` are ignored: each would let a stranger choose ``text/html`` for a file that an admin
then opens (issue 11, finding 3).

``served_type`` is the last check before a type goes into a response header, so that records made
before these rules cannot carry a hostile type either.
"""

from __future__ import annotations

import re

from opus.jobdef.model import JobDefinition

OCTET_STREAM = "application/octet-stream"

#: File name extension (lower case, without the dot) -> content type.  Deliberately short, and with
#: nothing a browser runs or renders as a page (html, svg, xhtml, js): those are octet-stream.
EXTENSION_TYPES: dict[str, str] = {
    "fits": "application/fits", "fit": "application/fits", "fts": "application/fits",
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
    "tif": "image/tiff", "tiff": "image/tiff",
    "txt": "text/plain", "log": "text/plain", "dat": OCTET_STREAM,
    "csv": "text/csv", "tsv": "text/tab-separated-values",
    "json": "application/json", "yaml": "application/yaml", "yml": "application/yaml",
    "xml": "application/xml", "vot": "application/x-votable+xml", "votable": "application/x-votable+xml",
    "pdf": "application/pdf", "ps": "application/postscript",
    "gz": "application/gzip", "bz2": "application/x-bzip2", "xz": "application/x-xz",
    "zip": "application/zip", "tar": "application/x-tar",
    "hdf5": "application/x-hdf5", "h5": "application/x-hdf5", "nc": "application/x-netcdf",
    "parquet": "application/vnd.apache.parquet", "ecsv": "text/plain",
}

#: Types shown in the browser (``inline``): images a browser decodes without running anything, text
#: (served with its charset) and data that browsers display as text or download.  Everything else,
#: SVG, HTML and XML included, is served as an ``attachment``.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "text/plain", "application/fits",
                          "image/fits", "application/json"})

#: A bare media type: type "/" subtype, RFC 6838 restricted-name characters, no parameters.
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\Z")
#: Subtypes a browser would render as a scriptable page or run as a script, whatever the file holds.
_ACTIVE = re.compile(r"html|javascript|ecmascript|jscript|livescript")


def type_by_extension(file_name: str) -> str:
    """The type of ``file_name`` by OPUS's own extension table; unknown: application/octet-stream."""
    name = (file_name or "").rsplit("/", 1)[-1]
    if "." not in name.strip("."):
        return OCTET_STREAM
    return EXTENSION_TYPES.get(name.rsplit(".", 1)[1].lower(), OCTET_STREAM)


def checked_type(value: object) -> str:
    """``value`` as a bare lower-case media type (parameters dropped), or octet-stream when malformed."""
    if not isinstance(value, str):
        return OCTET_STREAM
    bare = value.split(";", 1)[0].strip().lower()
    return bare if _MEDIA_TYPE.match(bare) else OCTET_STREAM


def served_type(value: object) -> str:
    """The Content-Type to send for a file recorded with type ``value``: never one that a browser
    renders as a page or runs as a script (HTML, XHTML, JavaScript), never a malformed header."""
    bare = checked_type(value)
    return OCTET_STREAM if _ACTIVE.search(bare.split("/", 1)[1]) else bare


def is_inline(content_type: str) -> bool:
    """Whether a file of this (served) type may be shown in the browser rather than downloaded."""
    return checked_type(content_type) in INLINE_TYPES


def result_type(jobdef: JobDefinition | None, result_id: str, file_name: str) -> str:
    """The type of a job's result: its definition's declaration for a named result; the extension
    table for a result matched by a glob pattern, for one the definition does not know, and when the
    definition (``jobdef``, None when gone) cannot be read."""
    desc = jobdef.result_description(result_id, file_name) if jobdef is not None else None
    if desc is not None and not desc.is_pattern:
        return checked_type(desc.content_type)
    return type_by_extension(file_name)
