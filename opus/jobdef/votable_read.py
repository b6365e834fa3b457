"""Reading the VOTable form of a job definition (the layout: ``votable.py``) into its JSON form.

Every problem raises ``ConfigurationError`` naming the element (and its line); the JSON form is then
checked by ``JobDefinition.from_dict`` like any other.
"""

from __future__ import annotations

import re

from lxml import etree

from opus.errors import ConfigurationError
from opus.jobdef.model import JSONObject
from opus.jobdef.original import ORIGINAL_RUN, Notes, keep_url
from opus.jobdef.votable import TEXT_TYPES, TOP_PARAMS, UWS_PARAMS
from opus.jobdef.xmltext import elements, local_name, parse_bool, parse_int, parse_number, text_of

_XTYPES = {"timestamp": "dateTime", "uri": "anyURI", "application/octet-stream": "file", "file": "file"}
_NUMERIC = {"short": "int", "int": "int", "long": "long", "unsignedByte": "int", "float": "float",
            "double": "double", "boolean": "boolean"}
_ARRAYSIZE = re.compile(r"^(?:\*|([0-9]+)\*?)\Z")


def _tag(el: etree._Element) -> str:
    ns = etree.QName(el).namespace or ""
    return local_name(el) if ns == "" or ns.startswith("http://www.ivoa.net/xml/VOTable/") else ""


def _children(el: etree._Element) -> list[etree._Element]:
    return [child for child in elements(el) if _tag(child)]


def _pname(el: etree._Element, where: str) -> str:
    name = el.get("name")
    if not name:
        raise ConfigurationError(f"{where}: a {_tag(el)} without a name (line {el.sourceline})")
    return name


def _params(group: etree._Element, where: str) -> list[tuple[str, str, etree._Element]]:
    """(name, value, element) of the PARAMs of a GROUP."""
    return [(_pname(p, where), p.get("value", ""), p) for p in _children(group) if _tag(p) == "PARAM"]


def read(root: etree._Element, sink: list[str] | None = None) -> JSONObject:
    """The JSON form of the ActivityDescription in a VOTable document.

    What the original OPUS wrote that the model has no place for is named in a warning (logged, and
    appended to ``sink`` when given): see ``opus.jobdef.original``."""
    if _tag(root) != "VOTABLE":
        raise ConfigurationError(f"VOTable: the root element is <{local_name(root)}> "
                                 f"(namespace {etree.QName(root).namespace!r}), not <VOTABLE>")
    resources = [r for r in root.iter() if isinstance(r.tag, str) and _tag(r) == "RESOURCE"]
    chosen = [r for r in resources if (r.get("utype") or "").lower() == "voprov:activitydescription"]
    if not chosen and len(resources) == 1:
        chosen = resources
    if not chosen:
        raise ConfigurationError('VOTable: no RESOURCE with utype="voprov:ActivityDescription"')
    res = chosen[0]
    top = {name: value for name, value, _ in _params(res, "VOTable RESOURCE")}
    name = res.get("name") or res.get("ID") or top.get("name")
    where = f"VOTable RESOURCE {name!r}"
    if top.get("name") and top["name"] != name:
        raise ConfigurationError(f"{where}: PARAM name is {top['name']!r}, not the RESOURCE name")
    doc: JSONObject = {"name": name}
    notes = Notes(str(name), sink)
    groups: dict[str, etree._Element] = {}
    for el in _children(res):
        tag = _tag(el)
        if tag == "DESCRIPTION":
            doc.setdefault("description", text_of(el))
        elif tag == "LINK" and el.get("href") and "doculink" not in top:
            doc["doculink"] = el.get("href")
        elif tag == "GROUP":
            key = (el.get("name") or "").lower()
            if key not in ("inputparams", "used", "generated", "slurm", "controlparams"):
                raise ConfigurationError(f"{where}: unknown GROUP {el.get('name')!r}; expected InputParams, "
                                         "Used, Generated, slurm or ControlParams")
            if key in groups:
                raise ConfigurationError(f"{where}: two GROUPs {el.get('name')!r}")
            groups[key] = el
    _read_top(top, doc, where)
    params, by_id = _read_inputs(groups.get("inputparams"), where)
    doc["used"] = _read_used(groups.get("used"), params, by_id, where, notes)
    doc["parameters"] = params
    doc["generated"] = _read_generated(groups.get("generated"), where, notes)
    if "slurm" in groups:
        doc["slurm"] = {n: v for n, v, _ in _params(groups["slurm"], f"{where}: GROUP slurm")}
    return doc


def _read_top(top: dict[str, str], doc: JSONObject, where: str) -> None:
    """The top-level PARAMs of the RESOURCE into ``doc``."""
    contact = {}
    for pname, value in top.items():
        if pname == "annotation" and not value and "description" in doc:
            continue  # an empty annotation does not hide the RESOURCE DESCRIPTION
        if pname in TOP_PARAMS:
            key = TOP_PARAMS[pname][0]
            if key.startswith("contact."):
                contact[key[8:]] = value
            else:
                doc[key] = value
        elif pname in UWS_PARAMS or pname == "executionduration":  # lower case: the original's 2017 layout
            key = "executionDuration" if pname == "executionduration" else pname
            doc[key] = parse_int(value, f"{where}: PARAM {pname!r}") if value.strip() else None
        elif pname == "script":
            doc["script"] = value
        elif pname in ("network", "errexit"):
            doc[pname] = value.strip().lower() in ("true", "t", "1")
        elif pname == "shell":
            doc["shell"] = value.strip()
        elif pname not in ("accessURL", "standardID", "name"):
            raise ConfigurationError(f"{where}: unknown PARAM {pname!r}; expected " + ", ".join(
                [*TOP_PARAMS, *UWS_PARAMS, "script", "network", "errexit", "shell", "accessURL",
                 "standardID"]))
    if contact:
        doc["contact"] = contact
    if "standardID" not in top:  # not written by this OPUS: the original's, whose scripts ran so
        doc.update({key: value for key, value in ORIGINAL_RUN.items() if key not in doc})


def _read_inputs(group: etree._Element | None, where: str) -> tuple[dict[str, JSONObject], dict[str, str]]:
    params: dict[str, JSONObject] = {}
    by_id: dict[str, str] = {}
    if group is None:
        return params, by_id
    where = f"{where}: GROUP InputParams"
    extras = []
    for el in _children(group):
        if _tag(el) == "PARAM":
            name = _pname(el, where)
            if name in params:
                raise ConfigurationError(f"{where}: two PARAMs named {name!r}")
            params[name] = _read_parameter(el, f"{where}: PARAM {name!r}")
            ident = el.get("ID")
            if ident:
                by_id[ident] = name
        elif _tag(el) == "GROUP":
            extras.append(el)
    for extra in extras:
        target = by_id.get(extra.get("ref") or "")
        here = f"{where}: GROUP {extra.get('name')!r}"
        if target is None:
            raise ConfigurationError(f"{here}: ref {extra.get('ref')!r} names no PARAM of InputParams")
        for name, value, _ in _params(extra, here):
            if name == "multiplicity":
                params[target]["multiplicity"] = value or "1"
            elif name == "default":
                params[target]["default"] = value
            elif name in ("min", "max"):
                params[target][name] = parse_number(value, f"{here}: {name}")
            elif name == "prominent":
                params[target]["prominent"] = parse_bool(value, f"{here}: prominent")
            else:
                raise ConfigurationError(f"{here}: unknown PARAM {name!r}; expected multiplicity, default, "
                                         "min, max or prominent")
    return params, by_id


def _read_parameter(el: etree._Element, where: str) -> JSONObject:
    datatype, xtype = el.get("datatype"), el.get("xtype") or ""
    if datatype in TEXT_TYPES:
        ptype = _XTYPES.get(xtype, "string")
    elif datatype in _NUMERIC:
        ptype = _NUMERIC[datatype]
    else:
        raise ConfigurationError(f"{where}: datatype {datatype!r} is not supported; use char, unicodeChar, "
                                 "int, long, float, double or boolean")
    out: JSONObject = {"type": ptype, "required": el.get("type") != "no_query"}
    if el.get("value"):
        out["default"] = el.get("value")
    arraysize = el.get("arraysize")
    if arraysize and datatype not in TEXT_TYPES:
        match = _ARRAYSIZE.match(arraysize)
        if not match:
            raise ConfigurationError(f"{where}: arraysize {arraysize!r} is not supported (use N, N* or *)")
        if match.group(1) != "1":
            out["multiplicity"] = match.group(1) or "*"
    for attr in ("unit", "ucd", "utype"):
        if el.get(attr):
            out[attr] = el.get(attr)
    for child in _children(el):
        if _tag(child) == "DESCRIPTION":
            out["description"] = text_of(child)
        elif _tag(child) == "VALUES":
            for item in _children(child):
                tag = _tag(item)
                if tag in ("MIN", "MAX"):
                    out[tag.lower()] = parse_number(item.get("value", ""), f"{where}: {tag}")
                elif tag == "OPTION":
                    out.setdefault("options", []).append(item.get("value", ""))
    return out


def _read_used(group: etree._Element | None, params: dict[str, JSONObject], by_id: dict[str, str],
               where: str, notes: Notes) -> dict[str, JSONObject]:
    """Each input: a GROUP (as written since 2018), or a PARAM with a LINK (the original's 2017 layout)."""
    used: dict[str, JSONObject] = {}
    if group is None:
        return used
    for el in _children(group):
        if _tag(el) not in ("GROUP", "PARAM"):
            continue
        name = _pname(el, f"{where}: GROUP Used")
        here = f"{where}: Used {_tag(el)} {name!r}"
        if name in used:
            raise ConfigurationError(f"{here}: given twice")
        entry = _referred(el, params, by_id, name, here)
        if _tag(el) == "PARAM":
            if el.get("value"):
                entry["default"] = el.get("value")
            if el.get("xtype"):
                entry["content_type"] = el.get("xtype")
        for child in _children(el):
            if _tag(child) == "DESCRIPTION":
                entry["description"] = text_of(child)
            elif _tag(child) == "LINK" and child.get("href"):
                # the original OPUS's form of the url: <LINK href="file://$ID"/> for an upload, else a template
                entry["url"] = keep_url(child.get("href") or "", f"input {name!r}: LINK", notes)
        for pname, value, _ in _params(el, here) if _tag(el) == "GROUP" else []:
            _used_param(entry, pname, value, here)
        used[name] = entry
    return used


def _referred(el: etree._Element, params: dict[str, JSONObject], by_id: dict[str, str], name: str,
              here: str) -> JSONObject:
    """What an input takes from the InputParams PARAM its ``ref`` names (the PARAM is then removed)."""
    ref = el.get("ref")
    if not ref:
        return {}
    pname = by_id.get(ref)
    if pname is None or pname not in params:
        raise ConfigurationError(f"{here}: ref {ref!r} names no PARAM of InputParams")
    if pname != name:
        raise ConfigurationError(f"{here}: refers to PARAM {pname!r}; the names must be the same")
    param = params.pop(pname)
    return {k: param[k] for k in ("description", "default", "required", "multiplicity") if k in param}


def _used_param(entry: JSONObject, pname: str, value: str, here: str) -> None:
    if pname in ("role", "content_type", "default"):
        entry[pname] = value
    elif pname == "multiplicity":
        if value:
            entry["multiplicity"] = value
    elif pname in ("url", "location"):  # the original OPUS wrote file://$ID for an upload
        if value or "url" not in entry:  # an empty PARAM does not hide a LINK
            entry["url"] = "" if value.startswith("file://") else value
    elif pname in ("required", "prominent"):
        entry[pname] = parse_bool(value, f"{here}: PARAM {pname}")
    else:
        raise ConfigurationError(f"{here}: unknown PARAM {pname!r}; expected role, content_type, "
                                 "multiplicity, default, url, required, prominent")


def _read_generated(group: etree._Element | None, where: str, notes: Notes) -> dict[str, JSONObject]:
    generated: dict[str, JSONObject] = {}
    if group is None:
        return generated
    for el in _children(group):
        if _tag(el) not in ("GROUP", "PARAM"):
            continue
        name = _pname(el, f"{where}: GROUP Generated")
        here = f"{where}: Generated {_tag(el)} {name!r}"
        if name in generated:
            raise ConfigurationError(f"{here}: given twice")
        entry: JSONObject = {}
        if _tag(el) == "PARAM":  # the original's 2017 layout: the file name and xtype on a PARAM
            entry["file"] = el.get("value") or name
            if el.get("xtype"):
                entry["content_type"] = el.get("xtype")
        for child in _children(el):
            if _tag(child) == "DESCRIPTION":
                entry["description"] = text_of(child)
            elif _tag(child) == "GROUP" and child.get("name") == "obscore":
                entry["obscore"] = {n: v for n, v, _ in _params(child, f"{here}: GROUP obscore")}
        for pname, value, _ in _params(el, here) if _tag(el) == "GROUP" else []:
            if pname in ("role", "content_type"):
                entry[pname] = value
            elif pname in ("default", "file"):
                entry["file"] = value
            elif pname == "required":
                entry["required"] = parse_bool(value, f"{here}: PARAM required")
            elif pname == "derived_from":
                entry["derived_from"] = value.split()
            elif pname == "multiplicity":  # written by the original OPUS; not in the model
                if value.strip() not in ("", "1"):
                    notes.add(f"result {name!r}: multiplicity {value!r} is not kept: a result of several "
                              "files is a glob pattern in its file name here")
            else:
                raise ConfigurationError(f"{here}: unknown PARAM {pname!r}; expected role, default, "
                                         "content_type, required, derived_from")
        generated[name] = entry
    return generated
