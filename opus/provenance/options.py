"""What a provenance request asks for: the query parameters of ``/provsap`` and of a job's
``/provenance``, checked once here (every bad value a BadRequest naming the allowed ones)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from opus import uws
from opus.errors import BadRequest

#: A request's query items: (name, value), names as sent.
Items = list[tuple[str, str]]
#: Canonical format name -> (Content-Type of the answer, accepted spellings: names and media types).
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "json": ("application/json", ("json", "prov-json", "application/json", "application/provenance+json")),
    "provn": ("text/provenance-notation; charset=UTF-8",
              ("provn", "prov-n", "text/provenance-notation")),
    "xml": ("application/provenance+xml", ("xml", "prov-xml", "application/provenance+xml", "application/xml",
                                           "text/xml")),
    "votable": ("application/x-votable+xml", ("votable", "prov-votable", "vot", "application/x-votable+xml")),
    "svg": ("image/svg+xml", ("svg", "prov-svg", "image/svg+xml")),
    "png": ("image/png", ("png", "prov-png", "image/png")),
}
_SPELLINGS = {spelling: name for name, (_ctype, spellings) in FORMATS.items() for spelling in spellings}
FORMAT_NAMES = "PROV-JSON (json, the default), PROV-N (provn), PROV-XML (xml), PROV-VOTABLE (votable), svg, png"
MODELS = ("IVOA", "W3C")
DIRECTIONS = ("BACK", "FORTH")
#: The original OPUS's spellings (deprecated, docs/migration.md): DIRECTION=FORWARD.
_DIRECTION_ALIASES = {"FORWARD": "FORTH"}
#: A job or entity id: 16 hexadecimal digits, or an id kept from the original OPUS by `opus migrate`.
ID_RE = uws.ID_RE
MAX_IDS = 100
MAX_DEPTH = 1_000_000
_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


@dataclass(frozen=True)
class ProvOptions:
    """``depth`` None means ALL."""

    ids: tuple[str, ...] = ()
    depth: int | None = 1
    direction: str = "BACK"
    model: str = "IVOA"
    agents: bool = True
    descriptions: bool = False
    configuration: bool = True
    format: str = "json"
    #: Graphs (svg, png) with each node's and relation's attributes drawn (ATTRIBUTES, as the original
    #: OPUS drew them by default); folded otherwise.
    attributes: bool = False

    @property
    def content_type(self) -> str:
        return FORMATS[self.format][0]


def _one(items: Items, name: str) -> str | None:
    """The value of a single-valued parameter (name case-insensitive), or None when absent."""
    values = {v.strip() for k, v in items if k.upper() == name}
    if len(values) > 1:
        raise BadRequest(f"{name} given more than once with different values")
    return values.pop() if values else None


def _choice(items: Items, name: str, allowed: tuple[str, ...], default: str,
            aliases: dict[str, str] | None = None) -> str:
    value = _one(items, name)
    if value is None:
        return default
    value = (aliases or {}).get(value.upper(), value)
    if value.upper() not in allowed:
        raise BadRequest(f"{name}={value[:40]!r}: use one of {', '.join(allowed)}")
    return value.upper()


def _boolean(items: Items, name: str, default: bool) -> bool:
    value = _one(items, name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise BadRequest(f"{name}={value[:40]!r}: use true or false")


def parse_format(value: str | None, name: str = "RESPONSEFORMAT") -> str:
    if value is None:
        return "json"
    key = value.split(";")[0].strip().lower()
    if key not in _SPELLINGS:
        raise BadRequest(f"{name}={value[:60]!r}: use one of {FORMAT_NAMES}, or their media types "
                         + ", ".join(sorted({FORMATS[f][0].split(';')[0] for f in FORMATS} |
                                            {"application/provenance+json"})))
    return _SPELLINGS[key]


def parse_depth(value: str | None, default: int | None = 1) -> int | None:
    if value is None:
        return default
    if value.upper() == "ALL":
        return None
    if not value.isdigit() or not value.isascii() or int(value) > MAX_DEPTH:
        raise BadRequest(f"DEPTH={value[:40]!r}: use a non-negative integer (at most {MAX_DEPTH}) or ALL")
    return int(value)


def parse_ids(items: Items) -> tuple[str, ...]:
    ids = [v.strip().lower() for k, v in items if k.upper() == "ID"]
    if not ids:
        raise BadRequest("ID is required: a job id or an entity id (16 hexadecimal digits), repeatable")
    if len(ids) > MAX_IDS:
        raise BadRequest(f"at most {MAX_IDS} ID values per request")
    for value in ids:
        if not ID_RE.match(value):
            raise BadRequest(f"ID={value[:40]!r}: a job id or an entity id is 16 hexadecimal digits")
    return tuple(dict.fromkeys(ids))


def provsap_options(items: Items) -> ProvOptions:
    """The options of ``GET /provsap`` from its (name, value) query items."""
    return ProvOptions(
        ids=parse_ids(items), depth=parse_depth(_one(items, "DEPTH")),
        direction=_choice(items, "DIRECTION", DIRECTIONS, "BACK", _DIRECTION_ALIASES), **_common(items),
        format=parse_format(_one(items, "RESPONSEFORMAT")))


def job_options(items: Items, job_id: str) -> ProvOptions:
    """The options of ``GET /rest/<jobname>/<id>/provenance`` (``format`` or ``RESPONSEFORMAT``)."""
    fmt = _one(items, "FORMAT")
    other = _one(items, "RESPONSEFORMAT")
    if fmt is not None and other is not None and parse_format(fmt, "format") != parse_format(other):
        raise BadRequest("format and RESPONSEFORMAT disagree: give one of them")
    return ProvOptions(ids=(job_id,), depth=parse_depth(_one(items, "DEPTH")), direction="BACK",
                       **_common(items), format=parse_format(fmt if fmt is not None else other,
                                                              "format" if fmt is not None else "RESPONSEFORMAT"))


class _Common(TypedDict):
    model: str
    agents: bool
    descriptions: bool
    configuration: bool
    attributes: bool


def _descriptions(items: Items) -> bool:
    """DESCRIPTIONS: a boolean, or the original OPUS's levels 0, 1 and 2.  Its 1 added the
    ActivityDescription, which every answer here holds; its 2 added the parameter, usage and
    generation descriptions too, which is what true adds here."""
    value = _one(items, "DESCRIPTIONS")
    if value == "2":
        return True
    if value not in (None, "0", "1") and value.lower() not in (*_TRUE, *_FALSE):
        raise BadRequest(f"DESCRIPTIONS={value[:40]!r}: use true or false (or the original OPUS's 0, 1, 2)")
    return _boolean(items, "DESCRIPTIONS", False)


def _common(items: Items) -> _Common:
    return {"model": _choice(items, "MODEL", MODELS, "IVOA"), "agents": _boolean(items, "AGENTS", True),
            "descriptions": _descriptions(items), "configuration": _boolean(items, "CONFIGURATION", True),
            "attributes": _boolean(items, "ATTRIBUTES", False)}
