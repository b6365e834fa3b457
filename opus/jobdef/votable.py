"""The VOTable form of a job definition: an IVOA ProvDM ActivityDescription, as the original OPUS wrote it.

One ``RESOURCE type="meta" utype="voprov:ActivityDescription"`` (a DataLink service descriptor)
holds top-level PARAMs and the GROUPs ``InputParams``, ``Used``, ``Generated``, ``slurm`` and,
for clients only, ``ControlParams``.  The mapping is documented in ``docs/job-definition-formats.md``.

What a VOTable PARAM cannot say is said the VOTable way:
- an optional parameter has ``type="no_query"`` (the original OPUS convention; required otherwise);
- no default is an empty ``value`` (VOTable 1.3: an empty value is null);
- a multiplicity other than "1" (and a default that is the empty string) go in a
  ``GROUP ref="<param ID>"`` next to the PARAM, holding PARAMs ``multiplicity`` / ``default``;
  non-text parameters also get ``arraysize`` ("*" or "N*") so the value parses as an array.
Text with non-ASCII characters is ``unicodeChar`` (``char`` is ASCII only).
"""

from __future__ import annotations

import math
import re

from lxml import etree

from opus.errors import ConfigurationError
from opus.jobdef.xmltext import elements, local_name, multiple, number_text, parse_bool, parse_int, parse_number, text_of
from opus.jobdef.model import JobDefinition, ParameterDescription
NS = "http://www.ivoa.net/xml/VOTable/v1.3"
STANDARD_ID = "ivo://ivoa.net/std/UWS#async-1.1"
#: model type -> (VOTable datatype, xtype)
DATATYPES = {"string": ("char", None), "int": ("int", None), "long": ("long", None), "float": ("float", None),
             "double": ("double", None), "boolean": ("boolean", None), "dateTime": ("char", "timestamp"),
             "anyURI": ("char", "uri"), "file": ("char", "application/octet-stream")}
_XTYPES = {"timestamp": "dateTime", "uri": "anyURI", "application/octet-stream": "file", "file": "file"}
_NUMERIC = {"short": "int", "int": "int", "long": "long", "unsignedByte": "int", "float": "float",
            "double": "double", "boolean": "boolean"}
_TEXT = ("char", "unicodeChar")
#: top-level PARAM -> (JSON key, utype)
_TOP = {"type": ("type", "voprov:ActivityDescription.type"),
        "subtype": ("subtype", "voprov:ActivityDescription.subtype"),
        "annotation": ("description", "voprov:ActivityDescription.annotation"),
        "version": ("version", "voprov:ActivityDescription.version"),
        "doculink": ("doculink", "voprov:ActivityDescription.doculink"),
        "contact_name": ("contact.name", "voprov:Agent.name"),
        "contact_email": ("contact.email", "voprov:Agent.email")}
_UWS = ("executionDuration", "quote")
#: ObsCore 1.1 utypes of the usual columns (others are written without a utype).
OBSCORE_UTYPES = {
    "dataproduct_type": "obscore:ObsDataset.dataProductType", "calib_level": "obscore:ObsDataset.calibLevel",
    "obs_collection": "obscore:DataID.Collection", "obs_id": "obscore:DataID.observationID",
    "obs_title": "obscore:DataID.Title", "obs_publisher_did": "obscore:Curation.PublisherDID",
    "access_format": "obscore:Access.Format", "target_name": "obscore:Target.Name",
    "facility_name": "obscore:Provenance.ObsConfig.Facility.name",
    "instrument_name": "obscore:Provenance.ObsConfig.Instrument.name",
    "o_ucd": "obscore:Char.ObservableAxis.ucd",
}
_ARRAYSIZE = re.compile(r"^(?:\*|([0-9]+)\*?)\Z")


# ---- writing ------------------------------------------------------------------------------------
def _el(parent, tag: str, **attrs) -> etree._Element:
    return etree.SubElement(parent, f"{{{NS}}}{tag}", {k: v for k, v in attrs.items() if v is not None})


def _text(parent, name: str, value: str, utype: str | None = None, **attrs) -> etree._Element:
    datatype = "char" if value.isascii() else "unicodeChar"
    return _el(parent, "PARAM", **attrs, name=name, datatype=datatype, arraysize="*", value=value, utype=utype)


def _boolean(parent, name: str, value: bool, utype: str | None = None) -> etree._Element:
    return _el(parent, "PARAM", name=name, datatype="boolean", value=str(value).lower(), utype=utype)


def write(d: JobDefinition, access_url: str = "", control=()) -> etree._Element:
    root = etree.Element(f"{{{NS}}}VOTABLE", {"version": "1.3"}, nsmap={None: NS})
    res = _el(root, "RESOURCE", ID=d.name, name=d.name, type="meta", utype="voprov:ActivityDescription")
    if d.description:
        _el(res, "DESCRIPTION").text = d.description
    _text(res, "accessURL", access_url or "")
    _text(res, "standardID", STANDARD_ID)
    _text(res, "name", d.name, "voprov:ActivityDescription.name")
    values = {"type": d.type, "subtype": d.subtype, "annotation": d.description, "version": d.version,
              "doculink": d.doculink, "contact_name": d.contact_name, "contact_email": d.contact_email}
    for key, (_, utype) in _TOP.items():
        _text(res, key, values[key], utype)
    for key, value in (("executionDuration", d.execution_duration), ("quote", d.quote)):
        if value is not None:
            _el(res, "PARAM", name=key, datatype="int" if value < 2 ** 31 else "long", value=str(value),
                utype=f"uws:Job.{key}")
    if d.network:
        _el(res, "PARAM", name="network", datatype="boolean", value="true")
    _text(res, "script", d.script)

    ids = {d.name}

    def new_id(name: str) -> str:
        ident = name
        while ident in ids:
            ident = "param_" + ident
        ids.add(ident)
        return ident

    group = _el(res, "GROUP", name="InputParams")
    for p in d.parameters.values():
        _write_parameter(group, p, new_id(p.name), f"parameter {p.name!r}")
    refs = {}
    for u in d.used.values():
        refs[u.name] = new_id(u.name)
        param = _text(group, u.name, u.default or "", ID=refs[u.name])
        if not u.required:
            param.set("type", "no_query")
        if u.description:
            _el(param, "DESCRIPTION").text = u.description
    group = _el(res, "GROUP", name="Used")
    for u in d.used.values():
        multiple(u.multiplicity, f"input {u.name!r}")
        entity = _el(group, "GROUP", name=u.name, ref=refs[u.name], utype="voprov:UsedDescription")
        _text(entity, "role", u.role, "voprov:UsedDescription.role")
        _text(entity, "content_type", u.content_type, "voprov:EntityDescription.content_type")
        _text(entity, "multiplicity", u.multiplicity, "voprov:UsedDescription.multiplicity")
        if u.default is not None:
            _text(entity, "default", u.default, "voprov:Entity.id")
        _text(entity, "url", u.url, "voprov:EntityDescription.url")
        _boolean(entity, "required", u.required)
    group = _el(res, "GROUP", name="Generated", utype="voprov:WasGeneratedBy")
    for g in d.generated.values():
        entity = _el(group, "GROUP", name=g.name, utype="voprov:EntityDescription")
        if g.description:
            _el(entity, "DESCRIPTION").text = g.description
        _text(entity, "role", g.role, "voprov:WasGeneratedByDescription.role")
        _text(entity, "default", g.file, "voprov:Entity.id")
        _text(entity, "content_type", g.content_type, "voprov:EntityDescription.content_type")
        if g.required is not None:
            _boolean(entity, "required", g.required)
        if g.derived_from:
            _text(entity, "derived_from", " ".join(g.derived_from), "voprov:WasDerivedFrom.usedEntity")
        if g.obscore:
            obscore = _el(entity, "GROUP", name="obscore")
            for key, value in g.obscore.items():
                _text(obscore, key, str(value), OBSCORE_UTYPES.get(key))
    if d.slurm:
        group = _el(res, "GROUP", name="slurm")
        for option, value in d.slurm.items():
            _text(group, option, value)
    if control:
        group = _el(res, "GROUP", name="ControlParams")
        for p in control:
            _write_parameter(group, p, None, f"control parameter {p.name!r}")
    return root


def _write_parameter(group, p: ParameterDescription, ident: str | None, where: str) -> None:
    if p.type not in DATATYPES:
        raise ConfigurationError(f"{where}: type {p.type!r} has no VOTable datatype")
    datatype, xtype = DATATYPES[p.type]
    texts = [p.default or "", *p.options]
    if datatype == "char" and not all(t.isascii() for t in texts):
        datatype = "unicodeChar"
    high = multiple(p.multiplicity, where)[1]
    if datatype in _TEXT:
        arraysize = "*"
    else:
        arraysize = None if high == 1 else (f"{high}*" if high else "*")
    param = _el(group, "PARAM", ID=ident, name=p.name, datatype=datatype, arraysize=arraysize, xtype=xtype,
                value=p.default or "", unit=p.unit or None, ucd=p.ucd or None, utype=p.utype or None,
                type=None if p.required else "no_query")
    if p.description:
        _el(param, "DESCRIPTION").text = p.description
    extras = {"multiplicity": p.multiplicity} if p.multiplicity != "1" else {}
    if p.default == "":
        extras["default"] = ""
    if p.min is not None or p.max is not None or p.options:
        values = _el(param, "VALUES")
        for tag, bound, rounding in (("MIN", p.min, math.ceil), ("MAX", p.max, math.floor)):
            if bound is None:
                continue
            text = number_text(bound, f"{where}: {tag.lower()}", integral=p.type in ("int", "long"))
            if p.type in ("int", "long") and isinstance(bound, float) and not bound.is_integer():
                # an integer PARAM takes integer bounds: the same for integer values; the exact one goes aside
                extras[tag.lower()] = text
                text = str(rounding(bound))
            _el(values, tag, value=text)
        for option in p.options:
            _el(values, "OPTION", value=option)
    if ident and extras:
        extra = _el(group, "GROUP", name=p.name, ref=ident, utype="voprov:ParameterDescription")
        for key, value in extras.items():
            _text(extra, key, value)


# ---- reading ------------------------------------------------------------------------------------
def _tag(el) -> str:
    ns = etree.QName(el).namespace or ""
    return local_name(el) if ns == "" or ns.startswith("http://www.ivoa.net/xml/VOTable/") else ""


def _children(el) -> list:
    return [child for child in elements(el) if _tag(child)]


def _pname(el, where: str) -> str:
    name = el.get("name")
    if not name:
        raise ConfigurationError(f"{where}: a {_tag(el)} without a name (line {el.sourceline})")
    return name


def _params(group, where: str) -> list[tuple[str, str, etree._Element]]:
    """(name, value, element) of the PARAMs of a GROUP."""
    return [(_pname(p, where), p.get("value", ""), p) for p in _children(group) if _tag(p) == "PARAM"]


def read(root) -> dict:
    """The JSON form of the ActivityDescription in a VOTable document."""
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
    doc: dict = {"name": name}
    contact = {}
    groups = {}
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
    for pname, value in top.items():
        if pname == "annotation" and not value and "description" in doc:
            continue  # an empty annotation does not hide the RESOURCE DESCRIPTION
        if pname in _TOP:
            key = _TOP[pname][0]
            if key.startswith("contact."):
                contact[key[8:]] = value
            else:
                doc[key] = value
        elif pname in _UWS:
            doc[pname] = parse_int(value, f"{where}: PARAM {pname!r}") if value.strip() else None
        elif pname == "script":
            doc["script"] = value
        elif pname == "network":
            doc["network"] = value.strip().lower() in ("true", "t", "1")
        elif pname not in ("accessURL", "standardID", "name"):
            raise ConfigurationError(f"{where}: unknown PARAM {pname!r}; expected "
                                     + ", ".join([*_TOP, *_UWS, "script", "network", "accessURL", "standardID"]))
    if contact:
        doc["contact"] = contact
    params, by_id = _read_inputs(groups.get("inputparams"), where)
    doc["used"] = _read_used(groups.get("used"), params, by_id, where)
    doc["parameters"] = params
    doc["generated"] = _read_generated(groups.get("generated"), where)
    if "slurm" in groups:
        doc["slurm"] = {n: v for n, v, _ in _params(groups["slurm"], f"{where}: GROUP slurm")}
    return doc


def _read_inputs(group, where: str) -> tuple[dict, dict]:
    params: dict[str, dict] = {}
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
            if el.get("ID"):
                by_id[el.get("ID")] = name
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
            else:
                raise ConfigurationError(f"{here}: unknown PARAM {name!r}; expected multiplicity, default, "
                                         "min or max")
    return params, by_id


def _read_parameter(el, where: str) -> dict:
    datatype, xtype = el.get("datatype"), el.get("xtype") or ""
    if datatype in _TEXT:
        ptype = _XTYPES.get(xtype, "string")
    elif datatype in _NUMERIC:
        ptype = _NUMERIC[datatype]
    else:
        raise ConfigurationError(f"{where}: datatype {datatype!r} is not supported; use char, unicodeChar, "
                                 "int, long, float, double or boolean")
    out: dict = {"type": ptype, "required": el.get("type") != "no_query"}
    if el.get("value"):
        out["default"] = el.get("value")
    arraysize = el.get("arraysize")
    if arraysize and datatype not in _TEXT:
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


def _read_used(group, params: dict, by_id: dict, where: str) -> dict:
    used: dict[str, dict] = {}
    if group is None:
        return used
    for el in _children(group):
        if _tag(el) != "GROUP":
            continue
        name = _pname(el, f"{where}: GROUP Used")
        here = f"{where}: Used GROUP {name!r}"
        if name in used:
            raise ConfigurationError(f"{here}: given twice")
        entry: dict = {}
        if el.get("ref"):
            pname = by_id.get(el.get("ref"))
            if pname is None or pname not in params:
                raise ConfigurationError(f"{here}: ref {el.get('ref')!r} names no PARAM of InputParams")
            if pname != name:
                raise ConfigurationError(f"{here}: refers to PARAM {pname!r}; the names must be the same")
            param = params.pop(pname)
            entry = {k: param[k] for k in ("description", "default", "required", "multiplicity") if k in param}
        for child in _children(el):
            if _tag(child) == "DESCRIPTION":
                entry["description"] = text_of(child)
        for pname, value, _ in _params(el, here):
            if pname in ("role", "content_type", "default"):
                entry[pname] = value
            elif pname == "multiplicity":
                if value:
                    entry["multiplicity"] = value
            elif pname in ("url", "location"):  # the original OPUS wrote file://$ID for an upload
                entry["url"] = "" if value.startswith("file://") else value
            elif pname == "required":
                entry["required"] = parse_bool(value, f"{here}: PARAM required")
            else:
                raise ConfigurationError(f"{here}: unknown PARAM {pname!r}; expected role, content_type, "
                                         "multiplicity, default, url, required")
        used[name] = entry
    return used


def _read_generated(group, where: str) -> dict:
    generated: dict[str, dict] = {}
    if group is None:
        return generated
    for el in _children(group):
        if _tag(el) != "GROUP":
            continue
        name = _pname(el, f"{where}: GROUP Generated")
        here = f"{where}: Generated GROUP {name!r}"
        if name in generated:
            raise ConfigurationError(f"{here}: given twice")
        entry: dict = {}
        for child in _children(el):
            if _tag(child) == "DESCRIPTION":
                entry["description"] = text_of(child)
            elif _tag(child) == "GROUP" and child.get("name") == "obscore":
                entry["obscore"] = {n: v for n, v, _ in _params(child, f"{here}: GROUP obscore")}
        for pname, value, _ in _params(el, here):
            if pname in ("role", "content_type"):
                entry[pname] = value
            elif pname in ("default", "file"):
                entry["file"] = value
            elif pname == "required":
                entry["required"] = parse_bool(value, f"{here}: PARAM required")
            elif pname == "derived_from":
                entry["derived_from"] = value.split()
            elif pname != "multiplicity":  # written by the original OPUS; not in the model
                raise ConfigurationError(f"{here}: unknown PARAM {pname!r}; expected role, default, "
                                         "content_type, required, derived_from")
        generated[name] = entry
    return generated
