"""Read and write job definitions as JSON, VOTable (ProvDM ActivityDescription) or WADL, losslessly.

The entry point for the three forms documented in ``docs/job-definition-formats.md``:
``read_definition(write_definition(d, fmt)) == d`` for every format.  The VOTable layout is in
``votable.py`` (read by ``votable_read.py``), the WADL one in ``wadl.py``; both build a dict of the
JSON form, so the checks of ``JobDefinition.from_dict`` apply to every format.  Every problem with the input raises
``ConfigurationError`` saying where and why (the HTTP layer answers 400 with it).

XML is parsed without entity expansion, network or DTD loading, and any entity declaration or
reference is refused (XXE, "billion laughs").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import MISSING, asdict, fields

from lxml import etree

from opus.errors import ConfigurationError, OpusError
from opus.safejson import MAX_JSON_DEPTH, json_depth
from opus.jobdef import needs_xml, original, votable, votable_read, wadl
from opus.jobdef.model import JSONObject, JobDefinition, ParameterDescription
FORMATS = ("json", "votable", "wadl")
CONTENT_TYPES = {"json": "application/json", "votable": "application/x-votable+xml",
                 "wadl": "application/vnd.sun.wadl+xml"}
#: Largest definition read_definition accepts (bytes).
MAX_SIZE = 1 << 20

_BY_CONTENT_TYPE = {"application/json": "json", "text/json": "json",
                    "application/x-votable+xml": "votable", "application/votable+xml": "votable",
                    "application/vnd.sun.wadl+xml": "wadl", "application/wadl+xml": "wadl"}
_BY_SUFFIX = {".json": "json", ".vot": "votable", ".votable": "votable", ".wadl": "wadl"}
_FIRST_ELEMENT = re.compile(r"<(?![!?/])(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)")
_MARKUP_NOISE = re.compile(r"<!--.*?-->|<\?.*?\?>", re.DOTALL)
_ENTITY_DECLARATIONS = (b"<!ENTITY", "<!ENTITY".encode("utf-16-le"), "<!ENTITY".encode("utf-16-be"))
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


# ---- public API ---------------------------------------------------------------------------------
def detect_format(data: bytes, content_type: str = "", filename: str = "") -> str:
    """The format of a definition: from its Content-Type, else its file name, else its first bytes."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in _BY_CONTENT_TYPE:
        return _BY_CONTENT_TYPE[ctype]
    if ctype == "text/xml" and "x-votable" in content_type.lower():
        return "votable"
    name = (filename or "").lower()
    for suffix, fmt in _BY_SUFFIX.items():
        if name.endswith(suffix):
            return fmt
    sniffed = _sniff(bytes(data[:65536]))
    if sniffed is None:
        raise ConfigurationError(
            "cannot tell the format of the job definition: give a Content-Type ("
            + ", ".join(CONTENT_TYPES.values()) + ") or a file name ending in .json, .vot or .wadl")
    return sniffed


def read_definition(data: bytes | str, fmt: str | None = None, content_type: str = "",
                    filename: str = "") -> JobDefinition:
    """Parse and check a definition in any of FORMATS (detected unless ``fmt`` is given)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_SIZE:
        raise ConfigurationError(f"job definition: {len(data)} bytes, more than the limit of {MAX_SIZE} bytes")
    if not bytes(data).strip():
        raise ConfigurationError("job definition: the document is empty")
    fmt = _check_format(fmt) if fmt else detect_format(data, content_type, filename)
    if fmt == "json":
        doc = _load_json(bytes(data))
        if original.is_original_json(doc):  # the original OPUS's JSON file: imported, warnings logged
            doc = original.to_json_form(doc, original.Notes(str(doc.get("name"))))
        return build(doc)
    reader = votable_read.read if fmt == "votable" else wadl.read
    root = parse_xml(bytes(data), fmt)
    needs = needs_xml.take(root, fmt)
    doc = reader(root)
    if needs is not None:
        doc["needs"] = needs
    return build(doc)


def write_definition(jobdef: JobDefinition, fmt: str, access_url: str = "",
                     control: Sequence[ParameterDescription] = (), limits: JSONObject | None = None) -> bytes:
    """The definition as a document of format ``fmt``; ``access_url`` (the job list URL),
    ``control`` (the UWS control parameters) and, in JSON only, ``limits`` (``opus.jobdef.limits``:
    the server's bounds on its jobs) are written for clients and ignored on reading."""
    fmt = _check_format(fmt)
    control = list(control)
    if fmt == "json":
        out = json_dict(jobdef)
        if access_url:
            out["accessURL"] = access_url
        if control:
            out["controlParameters"] = [_control_dict(p) for p in control]
        if limits:
            out["limits"] = limits
        try:
            text = json.dumps(out, indent=2, ensure_ascii=False)
            return (text + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: only \u escapes can carry it
            return (json.dumps(out, indent=2) + "\n").encode("ascii")
    _check_xml_chars(jobdef.to_dict(), "job definition")
    _check_xml_chars(access_url, "accessURL")
    _check_xml_chars([asdict(p) for p in control], "control parameters")
    root = (votable.write if fmt == "votable" else wadl.write)(jobdef, access_url, control)
    needs_xml.add(root, fmt, jobdef.needs)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def convert(data: bytes, to: str, src: str | None = None) -> bytes:
    """Read a definition in format ``src`` (detected when None) and write it as ``to``."""
    to = _check_format(to)
    return write_definition(read_definition(data, src), to)


# ---- helpers shared by votable.py and wadl.py ---------------------------------------------------
def build(doc: JSONObject) -> JobDefinition:
    """JobDefinition.from_dict, with every failure turned into ConfigurationError."""
    try:
        return JobDefinition.from_dict(doc)
    except ConfigurationError:
        raise
    except OpusError as exc:
        raise ConfigurationError(f"job definition: {exc.message}") from None
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise ConfigurationError(f"job definition: malformed content ({type(exc).__name__}: {exc})") from None


def json_dict(jobdef: JobDefinition) -> JSONObject:
    """``to_dict()``, plus the empty values it leaves out that differ from the field's default.

    (``to_dict`` drops every ``""``: a default of ``""`` would come back as None.)
    """
    out = jobdef.to_dict()
    for section in ("parameters", "used", "generated"):
        for name, obj in getattr(jobdef, section).items():
            for f in fields(obj):
                value = getattr(obj, f.name)
                if f.name == "name" or f.name in out[section][name] or value not in ("", [], {}):
                    continue
                default = f.default if f.default is not MISSING else (
                    f.default_factory() if f.default_factory is not MISSING else MISSING)
                if value != default:
                    out[section][name][f.name] = value
    return out


def parse_xml(data: bytes, fmt: str) -> etree._Element:
    """The root element of a well-formed document without entities, or ConfigurationError."""
    what = "VOTable" if fmt == "votable" else "WADL"
    if any(marker in data for marker in _ENTITY_DECLARATIONS):
        raise ConfigurationError(f"{what}: the document declares XML entities (<!ENTITY>); "
                                 "entity declarations are refused")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             remove_comments=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ConfigurationError(f"{what}: not well-formed XML: {exc}") from None
    except ValueError as exc:  # e.g. an unsupported encoding declaration
        raise ConfigurationError(f"{what}: cannot parse the document: {exc}") from None
    if root is None:
        raise ConfigurationError(f"{what}: the document has no root element")
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise ConfigurationError(f"{what}: the DOCTYPE declares entities; entity declarations are refused")
    for node in root.iter(etree.Entity):
        raise ConfigurationError(f"{what}: entity reference {node.text} at line {node.sourceline} "
                                 "is refused (only the five predefined XML entities are allowed)")
    return root



# ---- private ------------------------------------------------------------------------------------
def _check_format(fmt: str) -> str:
    name = (fmt or "").strip().lower()
    if name not in FORMATS:
        raise ConfigurationError(f"unknown job definition format {fmt!r}; use one of {', '.join(FORMATS)}")
    return name


def _sniff(head: bytes) -> str | None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", errors="replace")
    else:
        text = head.decode("utf-8", errors="replace")
    text = text.lstrip("\ufeff \t\r\n")
    if text.startswith(("{", "[")):
        return "json"
    if not text.startswith("<"):
        return None
    match = _FIRST_ELEMENT.search(_MARKUP_NOISE.sub("", text))
    root = match.group(1) if match else ""
    return {"VOTABLE": "votable", "application": "wadl"}.get(root)


def _load_json(data: bytes) -> JSONObject:
    if json_depth(data) > MAX_JSON_DEPTH:  # before json recurses into it (opus.safejson)
        raise ConfigurationError(f"JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"JSON: not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:
        raise ConfigurationError(f"JSON: not valid JSON: {exc}") from None
    except RecursionError:
        raise ConfigurationError("JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ConfigurationError("JSON: a job definition must be a JSON object")
    return doc


def _control_dict(p: ParameterDescription) -> JSONObject:
    return {k: v for k, v in asdict(p).items()
            if k in ("name", "type", "required") or (v not in (None, "", [], {}) and k != "prominent")}


def _check_xml_chars(value: object, where: str) -> None:
    """Refuse text XML 1.0 cannot hold (control characters other than tab, newline, return)."""
    if isinstance(value, str):
        bad = _NOT_XML.search(value)
        if bad:
            raise ConfigurationError(f"{where}: character U+{ord(bad.group()):04X} cannot be written in XML "
                                     "(use the JSON form)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_xml_chars(key, where)
            _check_xml_chars(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_xml_chars(item, f"{where}[{index}]")
