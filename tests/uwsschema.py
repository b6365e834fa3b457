"""Validate UWS (and VOSI availability) documents offline with lxml.

``validate(doc)`` raises ``DocumentInvalid`` listing the schema errors; ``is_valid(doc)`` says yes
or no.  ``doc`` may be bytes, str, a path or an already parsed element.  The schemas are the
offline copies in ``tests/data/uws`` (no network).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lxml import etree

from conftest import UWS_DATA, UWS_XSD

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
VOSI_AVAILABILITY_XSD = UWS_DATA / "VOSIAvailability-v1.0.xsd"
SAMPLES = UWS_DATA / "samples"

#: Children of <uws:job> in schema order (UWS-64) and of <uws:jobref> (UWS-52).
JOB_ORDER = ["jobId", "runId", "ownerId", "phase", "quote", "creationTime", "startTime", "endTime",
             "executionDuration", "destruction", "parameters", "results", "errorSummary", "jobInfo"]
JOBREF_ORDER = ["phase", "runId", "ownerId", "creationTime"]


class DocumentInvalid(AssertionError):
    """A document that does not follow its schema."""


def uws(tag: str) -> str:
    """The Clark name of a UWS element: ``{ns}tag``."""
    return f"{{{UWS_NS}}}{tag}"


@lru_cache(maxsize=None)
def schema(path: str | Path = UWS_XSD) -> etree.XMLSchema:
    # no_network: the offline schema imports xlink.xsd from its own folder; nothing is fetched.
    parser = etree.XMLParser(no_network=True)
    return etree.XMLSchema(etree.parse(str(path), parser))


def parse(doc) -> etree._Element:
    """An element from bytes, str, a path or an element (entities and the network disabled)."""
    if isinstance(doc, etree._Element):
        return doc
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    if isinstance(doc, Path):
        return etree.parse(str(doc), parser).getroot()
    if isinstance(doc, str):
        doc = doc.encode("utf-8")
    return etree.fromstring(doc, parser)


def errors(doc, xsd: str | Path = UWS_XSD) -> list[str]:
    """The schema errors of ``doc`` (empty if valid)."""
    s = schema(str(xsd))
    root = parse(doc)
    if s.validate(root):
        return []
    return [f"line {e.line}: {e.message}" for e in s.error_log]


def is_valid(doc, xsd: str | Path = UWS_XSD) -> bool:
    return not errors(doc, xsd)


def validate(doc, xsd: str | Path = UWS_XSD) -> etree._Element:
    """Parse and validate ``doc``; return its root element, or raise DocumentInvalid."""
    root = parse(doc)
    problems = errors(root, xsd)
    if problems:
        text = doc if isinstance(doc, (str, bytes)) else etree.tostring(root)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        raise DocumentInvalid("schema errors:\n  " + "\n  ".join(problems) + "\ndocument:\n" + text)
    return root


def child_names(element: etree._Element) -> list[str]:
    """Local names of the element children (comments and processing instructions skipped)."""
    return [etree.QName(c).localname for c in element if isinstance(c.tag, str)]


def in_order(names: list[str], order: list[str]) -> bool:
    """True if ``names`` appear in the relative order of ``order`` (each at most once)."""
    positions = [order.index(n) for n in names]
    return positions == sorted(positions) and len(set(positions)) == len(positions)
