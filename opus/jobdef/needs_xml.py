"""A definition's ``needs`` in its VOTable and WADL forms, kept apart from their readers.

* VOTable: ``<GROUP name="needs">`` in the ActivityDescription RESOURCE, after the ``script``
  PARAM, holding ``<PARAM name="python"|"commands" datatype="char" arraysize="*" value="a b c"/>``;
* WADL: ``<opus:needs python="a b" commands="c"/>`` in ``<opus:definition>``, before ``<opus:script>``.

``formats.write_definition`` adds them; ``formats.read_definition`` takes them out of the parsed
document before the VOTable or WADL reader sees it (a document without them needs nothing).
"""

from __future__ import annotations

from lxml import etree

from opus.errors import ConfigurationError
from opus.jobdef.needs import KINDS

_WADL_NEEDS = "{http://opus.obspm.fr/ns/jobdef}needs"


def _local(el: etree._Element | None) -> str:
    return etree.QName(el).localname if el is not None and isinstance(el.tag, str) else ""


def add(root: etree._Element, fmt: str, needs: dict[str, list[str]]) -> None:
    """Write ``needs`` into a VOTable or WADL document made by its writer."""
    if not needs:
        return
    if fmt == "votable":
        res = next(el for el in root.iter() if _local(el) == "RESOURCE")
        ns = etree.QName(res).namespace
        group = etree.Element(f"{{{ns}}}GROUP" if ns else "GROUP", name="needs")
        for kind in KINDS:
            if needs.get(kind):
                etree.SubElement(group, f"{{{ns}}}PARAM" if ns else "PARAM", name=kind, datatype="char",
                                 arraysize="*", value=" ".join(needs[kind]))
        script = [el for el in res if _local(el) == "PARAM" and el.get("name") == "script"]
        (script[0].addnext if script else res.append)(group)
    else:
        definition = next(el for el in root.iter() if _local(el) == "definition")
        el = etree.Element(_WADL_NEEDS, {k: " ".join(v) for k, v in needs.items() if v})
        script = [e for e in definition if _local(e) == "script"]
        (script[0].addprevious if script else definition.append)(el)


def take(root: etree._Element, fmt: str) -> dict[str, list[str]] | None:
    """Remove the needs written by ``add`` from a parsed document; their JSON form (None: absent)."""
    if fmt == "votable":
        found = [el for el in root.iter() if _local(el) == "GROUP" and el.get("name") == "needs"
                 and _local(el.getparent()) == "RESOURCE"]
        pairs = [[(p.get("name", ""), p.get("value", "")) for p in el if _local(p) == "PARAM"] for el in found]
    else:
        found = list(root.iter(_WADL_NEEDS))
        pairs = [list(el.attrib.items()) for el in found]
    if len(found) > 1:
        raise ConfigurationError(f"{'VOTable' if fmt == 'votable' else 'WADL'}: needs given twice")
    for el in found:
        parent = el.getparent()
        if parent is not None:
            parent.remove(el)
    if not found:
        return None
    return {str(kind): str(value).split() for kind, value in pairs[0]}
