"""A ProvDocument in every format: PROV-N, PROV-JSON, PROV-XML (``prov``'s serializers),
PROV-VOTABLE (written here) and graphs as SVG or PNG (``prov.dot`` + Graphviz ``dot``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime
from xml.etree import ElementTree as ET

from prov.constants import PROV_LABEL, PROV_N_MAP
from prov.identifier import QualifiedName
from prov.model import ProvDocument
from prov.serializers.provjson import ProvJSONEncoder

from opus.errors import BadRequest, ServiceUnavailable
from opus.provenance.model import VOPROV
VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"
#: Graphs larger than this are refused as images (Graphviz would take minutes): ask for less DEPTH.
MAX_GRAPH_RECORDS = 3000
DOT_TIMEOUT = 60
_BARE_AMPERSAND = re.compile(rb"&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def serialize(doc: ProvDocument, fmt: str, attributes: bool = False) -> bytes:
    """The document in ``fmt`` (a canonical name of ``options.FORMATS``); ``attributes``: draw the
    attribute boxes in SVG/PNG (ProvSAP ``ATTRIBUTES=1``, as the original OPUS did)."""
    if fmt == "json":
        # What doc.serialize(format="json") writes, through json.dumps (its C encoder: 2x faster).
        return json.dumps(doc, cls=ProvJSONEncoder).encode("utf-8")
    if fmt in ("provn", "xml"):
        text = doc.serialize(format=fmt)  # no destination: the text itself, never None
        if text is None:
            raise RuntimeError(f"prov wrote no {fmt} text")
        return text.encode("utf-8")
    if fmt == "votable":
        return to_votable(doc)
    if fmt in ("svg", "png"):
        return to_image(doc, fmt, attributes)
    raise ValueError(f"unknown format {fmt!r}")


# ---- PROV-VOTABLE ----------------------------------------------------------------------------------
def _text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "value") and not isinstance(value, QualifiedName):  # prov Literal
        value = value.value
    return _NOT_XML.sub("\ufffd", str(value))


def _utype(name: str, table: str, ivoa: bool) -> str | None:
    if not ivoa:
        return None
    local = name.split(":", 1)[-1]
    return f"voprov:{table[0].upper()}{table[1:]}.{local}"


def to_votable(doc: ProvDocument) -> bytes:
    """One TABLE per PROV class present (activity, entity, agent, used, wasGeneratedBy, ...), and a
    TABLE ``prefix`` of the namespaces.  Columns: ``id``, the class's formal attributes (``activity``,
    ``entity``, ``time``...), then each other attribute by its qualified name; an attribute with
    several values (e.g. two ``prov:type``) holds them separated by ``|``."""
    ivoa = any(ns.uri == VOPROV for ns in doc.namespaces)
    flat = doc.flattened() if doc.bundles else doc
    tables: dict[str, tuple[list[str], list[dict[str, str]]]] = {}
    for record in flat.get_records():
        name = PROV_N_MAP[record.get_type()]
        columns, rows = tables.setdefault(name, (["id"], []))
        row: dict[str, str] = {"id": "" if record.identifier is None else str(record.identifier)}
        for attr, value in record.formal_attributes:
            key = attr.localpart
            if key not in columns:
                columns.append(key)
            row[key] = "" if value is None else _text(value)
        for attr, value in record.extra_attributes:
            key = str(attr)
            if key not in columns:
                columns.append(key)
            row[key] = f"{row[key]}|{_text(value)}" if key in row else _text(value)
        rows.append(row)
    root = ET.Element("VOTABLE", {"version": "1.4", "xmlns": VOTABLE_NS})
    resource = ET.SubElement(root, "RESOURCE", {"type": "results", "name": "provenance"})
    ET.SubElement(resource, "DESCRIPTION").text = (
        "A provenance document (PROV-VOTABLE): one table per PROV class; ids are qualified names whose "
        "prefixes the table 'prefix' declares")
    prefixes = [{"id": ns.prefix, "uri": ns.uri} for ns in sorted(doc.namespaces, key=lambda n: n.prefix)]
    _table(resource, "prefix", ["id", "uri"], prefixes, ivoa=False)
    for name, (columns, rows) in tables.items():
        _table(resource, name, columns, rows, ivoa)
    ET.indent(root, space=" ")
    body: bytes = ET.tostring(root, encoding="utf-8")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def _table(resource: ET.Element, name: str, columns: list[str], rows: list[dict[str, str]], ivoa: bool) -> None:
    attrs = {"name": name}
    if ivoa and name != "prefix":
        attrs["utype"] = f"voprov:{name[0].upper()}{name[1:]}"
    table = ET.SubElement(resource, "TABLE", attrs)
    for column in columns:
        field = {"name": column, "datatype": "unicodeChar", "arraysize": "*"}
        utype = _utype(column, name, ivoa) if ivoa and name != "prefix" else None
        if utype:
            field["utype"] = utype
        if column in ("startTime", "endTime", "time"):
            field["xtype"] = "timestamp"
        ET.SubElement(table, "FIELD", field)
    data = ET.SubElement(ET.SubElement(table, "DATA"), "TABLEDATA")
    for row in rows:
        tr = ET.SubElement(data, "TR")
        for column in columns:
            ET.SubElement(tr, "TD").text = row.get(column, "")


# ---- graphs ---------------------------------------------------------------------------------------
def dot_available() -> bool:
    return shutil.which("dot") is not None


def to_image(doc: ProvDocument, fmt: str, attributes: bool = False) -> bytes:
    """SVG or PNG of the graph, readable: labels, no attribute boxes (unless ``attributes``), inputs on
    the left and results on the right.  ServiceUnavailable (503) without Graphviz, BadRequest when too large."""
    records = len(list(doc.get_records()))
    if records > MAX_GRAPH_RECORDS:
        raise BadRequest(f"the graph has {records} records; images are drawn up to {MAX_GRAPH_RECORDS}: "
                         "ask for a smaller DEPTH, or for PROV-JSON, PROV-N, PROV-XML or PROV-VOTABLE")
    dot = shutil.which("dot")
    if dot is None:
        raise ServiceUnavailable("graphs need Graphviz's 'dot', which is not installed on this server "
                                 "(Debian: apt-get install graphviz); the other formats work")
    try:
        from prov.dot import prov_to_dot
    except ImportError as exc:
        raise ServiceUnavailable(f"graphs need pydot and networkx, not installed on this server: {exc}") from None
    # Readable: attributes folded (they are in every other format), names instead of ids, and laid
    # out with the data flowing left to right (PROV's arrows point back in time, hence "RL").
    _label_parameters(doc)
    source = prov_to_dot(doc, use_labels=True, direction="RL", show_element_attributes=attributes,
                         show_relation_attributes=attributes).to_string()
    try:
        done = subprocess.run([dot, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True,
                              timeout=DOT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ServiceUnavailable(f"Graphviz took more than {DOT_TIMEOUT} s to draw the graph: "
                                 "ask for a smaller DEPTH") from None
    except OSError as exc:
        raise ServiceUnavailable(f"cannot run Graphviz's dot: {exc}") from None
    if done.returncode != 0 or not done.stdout:
        raise ServiceUnavailable("Graphviz's dot failed: " + done.stderr.decode("utf-8", "replace").strip()[-300:])
    if fmt == "svg":
        # Graphviz copies URLs (node URL, HREF in labels) into the SVG unescaped: an '&' (as in
        # ``opus_jdl:dummy?version=1.0&parameter=text``) would make it ill-formed XML.
        return _BARE_AMPERSAND.sub(b"&amp;", done.stdout)
    return done.stdout


def _label_parameters(doc: ProvDocument) -> None:
    """Give the parameter entities of a graph (built for this answer only) a label "name = value"."""
    for record in doc.get_records():
        attrs = {str(k): v for k, v in record.attributes}
        if "prov:label" not in attrs and "voprov:name" in attrs and "prov:value" in attrs:
            record.add_attributes({PROV_LABEL: f"{_text(attrs['voprov:name'])} = {_text(attrs['prov:value'])}"[:80]})
