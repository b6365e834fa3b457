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

Reading is in ``votable_read.py``; this module holds the layout and writes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lxml import etree

from opus.errors import ConfigurationError
from opus.jobdef.model import JobDefinition, ParameterDescription
from opus.jobdef.xmltext import multiple, number_text

NS = "http://www.ivoa.net/xml/VOTable/v1.3"
STANDARD_ID = "ivo://ivoa.net/std/UWS#async-1.1"
#: model type -> (VOTable datatype, xtype)
DATATYPES = {"string": ("char", None), "int": ("int", None), "long": ("long", None), "float": ("float", None),
             "double": ("double", None), "boolean": ("boolean", None), "dateTime": ("char", "timestamp"),
             "anyURI": ("char", "uri"), "file": ("char", "application/octet-stream")}
TEXT_TYPES = ("char", "unicodeChar")
#: top-level PARAM -> (JSON key, utype)
TOP_PARAMS = {"type": ("type", "voprov:ActivityDescription.type"),
        "subtype": ("subtype", "voprov:ActivityDescription.subtype"),
        "annotation": ("description", "voprov:ActivityDescription.annotation"),
        "version": ("version", "voprov:ActivityDescription.version"),
        "doculink": ("doculink", "voprov:ActivityDescription.doculink"),
        "contact_name": ("contact.name", "voprov:Agent.name"),
        "contact_email": ("contact.email", "voprov:Agent.email")}
UWS_PARAMS = ("executionDuration", "quote")
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


# ---- writing ------------------------------------------------------------------------------------
def _el(parent: etree._Element, tag: str, **attrs: str | None) -> etree._Element:
    return etree.SubElement(parent, f"{{{NS}}}{tag}", {k: v for k, v in attrs.items() if v is not None})


def _text(parent: etree._Element, name: str, value: str, utype: str | None = None,
          **attrs: str | None) -> etree._Element:
    datatype = "char" if value.isascii() else "unicodeChar"
    return _el(parent, "PARAM", **attrs, name=name, datatype=datatype, arraysize="*", value=value, utype=utype)


def _boolean(parent: etree._Element, name: str, value: bool, utype: str | None = None) -> etree._Element:
    return _el(parent, "PARAM", name=name, datatype="boolean", value=str(value).lower(), utype=utype)


def write(d: JobDefinition, access_url: str = "",
          control: Sequence[ParameterDescription] = ()) -> etree._Element:
    root = etree.Element(f"{{{NS}}}VOTABLE", {"version": "1.3"}, nsmap={None: NS})
    res = _el(root, "RESOURCE", ID=d.name, name=d.name, type="meta", utype="voprov:ActivityDescription")
    if d.description:
        _el(res, "DESCRIPTION").text = d.description
    _text(res, "accessURL", access_url or "")
    _text(res, "standardID", STANDARD_ID)
    _text(res, "name", d.name, "voprov:ActivityDescription.name")
    values = {"type": d.type, "subtype": d.subtype, "annotation": d.description, "version": d.version,
              "doculink": d.doculink, "contact_name": d.contact_name, "contact_email": d.contact_email}
    for key, (_, utype) in TOP_PARAMS.items():
        _text(res, key, values[key], utype)
    for key, value in (("executionDuration", d.execution_duration), ("quote", d.quote)):
        if value is not None:
            _el(res, "PARAM", name=key, datatype="int" if value < 2 ** 31 else "long", value=str(value),
                utype=f"uws:Job.{key}")
    if d.network:
        _el(res, "PARAM", name="network", datatype="boolean", value="true")
    if d.errexit:
        _el(res, "PARAM", name="errexit", datatype="boolean", value="true")
    if d.shell:
        _text(res, "shell", d.shell)
    _text(res, "script", d.script)
    refs = _write_inputs(res, d)
    _write_used(res, d, refs)
    _write_generated(res, d)
    if d.slurm:
        group = _el(res, "GROUP", name="slurm")
        for option, setting in d.slurm.items():
            _text(group, option, setting)
    if control:
        group = _el(res, "GROUP", name="ControlParams")
        for p in control:
            _write_parameter(group, p, None, f"control parameter {p.name!r}")
    return root


def _write_inputs(res: etree._Element, d: JobDefinition) -> dict[str, str]:
    """The GROUP InputParams: parameters and inputs as PARAMs, each with an ID unique in the
    document; returns the IDs of the inputs' PARAMs (their Used GROUPs refer to them)."""
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
    return refs


def _write_used(res: etree._Element, d: JobDefinition, refs: dict[str, str]) -> None:
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
        if u.prominent:
            _boolean(entity, "prominent", True)


def _write_generated(res: etree._Element, d: JobDefinition) -> None:
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


def _write_parameter(group: etree._Element, p: ParameterDescription, ident: str | None, where: str) -> None:
    if p.type not in DATATYPES:
        raise ConfigurationError(f"{where}: type {p.type!r} has no VOTable datatype")
    datatype, xtype = DATATYPES[p.type]
    texts = [p.default or "", *p.options]
    if datatype == "char" and not all(t.isascii() for t in texts):
        datatype = "unicodeChar"
    high = multiple(p.multiplicity, where)[1]
    arraysize: str | None
    if datatype in TEXT_TYPES:
        arraysize = "*"
    else:
        arraysize = None if high == 1 else (f"{high}*" if high else "*")
    param = _el(group, "PARAM", ID=ident, name=p.name, datatype=datatype, arraysize=arraysize, xtype=xtype,
                value=p.default or "", unit=p.unit or None, ucd=p.ucd or None, utype=p.utype or None,
                type=None if p.required else "no_query")
    if p.description:
        _el(param, "DESCRIPTION").text = p.description
    extras: dict[str, str] = {"multiplicity": p.multiplicity} if p.multiplicity != "1" else {}
    if p.default == "":
        extras["default"] = ""
    if p.prominent:
        extras["prominent"] = "true"
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
