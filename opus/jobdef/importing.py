"""Importing a definition written for the original OPUS, or for this one, with what was not kept.

``import_definition`` reads every form ``opus.jobdef.formats`` reads, plus the original's JSON files
(its content dictionary) and WADL files, and returns the definition with the warnings of
``opus.jobdef.original``: each field of the original's file maps to the model or is named in one.
The original kept the script apart (``jdl/scripts/<name>.sh``): pass it as ``script`` when the
document has none.
"""

from __future__ import annotations

import json

from opus.errors import ConfigurationError
from opus.jobdef import formats, original, original_wadl, votable_read, wadl
from opus.jobdef.model import JSONObject
from opus.jobdef.original import Imported, Notes
from opus.safejson import MAX_JSON_DEPTH, json_depth


def import_definition(data: bytes | str, fmt: str | None = None, filename: str = "", content_type: str = "",
                      script: str | None = None) -> Imported:
    """The definition in ``data`` (any form; detected unless ``fmt``), with its import warnings."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > formats.MAX_SIZE:
        raise ConfigurationError(f"job definition: {len(raw)} bytes, more than the limit of {formats.MAX_SIZE} bytes")
    if not raw.strip():
        raise ConfigurationError("job definition: the document is empty")
    fmt = (fmt or "").strip().lower() or formats.detect_format(raw, content_type, filename)
    warnings: list[str] = []
    if fmt == "json":
        doc = _json(raw, warnings, script)
    elif fmt == "votable":
        doc = votable_read.read(formats.parse_xml(raw, fmt), warnings)
    elif fmt == "wadl":
        root = formats.parse_xml(raw, fmt)
        has_ours = root.find(f".//{{{wadl.OPUS}}}definition") is not None
        if not has_ours and original_wadl.is_original(root):
            doc = original_wadl.read(root, warnings, script if script is not None else "")
        else:
            doc = wadl.read(root)
    else:
        raise ConfigurationError(f"unknown job definition format {fmt!r}; use one of {', '.join(formats.FORMATS)}")
    if script is not None and not str(doc.get("script") or "").strip():
        doc["script"] = script
    return Imported(formats.build(doc), warnings)


def _json(raw: bytes, warnings: list[str], script: str | None) -> JSONObject:
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise ConfigurationError(f"JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigurationError(f"JSON: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigurationError("JSON: a job definition must be a JSON object")
    if original.is_original_json(doc):
        return original.to_json_form(doc, Notes(str(doc.get("name")), warnings), script)
    return doc
