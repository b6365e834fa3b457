"""The WADL form of a job definition: the UWS resource tree of its job list, with the rest in an extension.

The job list resource (``<resources base>`` + ``<resource path>`` = the job list URL) has a POST
whose request parameters are the definition's parameters (``type`` an ``xs:`` QName, ``required``,
``default``, ``repeating``, ``<option>``, ``<doc>``), its inputs (marked ``opus:used="true"``) and,
for clients only, the control parameters (``opus:control="true"``, ignored on reading).  What WADL
cannot say is kept in the ``opus`` namespace (``http://opus.obspm.fr/ns/jobdef``): attributes
``opus:min``, ``opus:max``, ``opus:unit``, ``opus:ucd``, ``opus:utype``, ``opus:multiplicity``,
``opus:role``, ``opus:contentType``, ``opus:url``, ``opus:prominent`` on the params, and an ``<opus:definition>`` element
(the last child of the job list resource, as WADL allows foreign elements) with the description
fields, the results, the SLURM defaults, how the script runs (``errexit``, ``shell``) and the script.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from opus.errors import ConfigurationError
from opus.jobdef import original_wadl
from opus.jobdef.xmltext import elements, multiple, number_text, parse_bool, parse_int, parse_number, text_of
from opus.jobdef.model import CONTROL_PARAMETERS, JSONObject, JobDefinition, ParameterDescription, UsedDescription

WADL = "http://wadl.dev.java.net/2009/02"
XSD = "http://www.w3.org/2001/XMLSchema"
OPUS = "http://opus.obspm.fr/ns/jobdef"
UWS = "http://www.ivoa.net/xml/UWS/v1.0"
#: model type -> XML Schema type (a file is opus:file)
XS_TYPES = {"string": "string", "int": "int", "long": "long", "float": "float", "double": "double",
            "boolean": "boolean", "anyURI": "anyURI", "dateTime": "dateTime"}
_FROM_XS = {**{v: k for k, v in XS_TYPES.items()}, "integer": "long", "short": "int", "token": "string"}
#: the children of a job: path, media type of GET, POST parameter (name, type, options) or None
_JOB_CHILDREN = (
    ("phase", "text/plain", ("PHASE", "xs:string", ("RUN", "ABORT"))),
    ("executionduration", "text/plain", ("EXECUTIONDURATION", "xs:int", ())),
    ("destruction", "text/plain", ("DESTRUCTION", "xs:dateTime", ())),
    ("error", "text/plain", None), ("quote", "text/plain", None), ("owner", "text/plain", None),
    ("parameters", "application/xml", None), ("stdout", "text/plain", None), ("stderr", "text/plain", None),
)
_PHASES = ("PENDING", "QUEUED", "EXECUTING", "COMPLETED", "ERROR", "ABORTED", "UNKNOWN", "HELD",
           "SUSPENDED", "ARCHIVED")


def _w(parent: etree._Element, tag: str, **attrs: str | None) -> etree._Element:
    return etree.SubElement(parent, f"{{{WADL}}}{tag}", {k: v for k, v in attrs.items() if v is not None})


def _o(name: str) -> str:
    return f"{{{OPUS}}}{name}"


def _doc(parent: etree._Element, text: str, title: str | None = None) -> None:
    if text:
        _w(parent, "doc", title=title).text = text


def _get(parent: etree._Element, media_type: str, element: str | None = None, doc: str = "") -> etree._Element:
    method = _w(parent, "method", name="GET")
    _doc(method, doc)
    _w(_w(method, "response", status="200"), "representation", mediaType=media_type, element=element)
    return method


def _post(parent: etree._Element, name: str, xs_type: str, options: Sequence[str] = (), doc: str = "") -> None:
    method = _w(parent, "method", name="POST")
    _doc(method, doc)
    param = _w(_w(method, "request"), "param", name=name, style="query", type=xs_type, required="true")
    for option in options:
        _w(param, "option", value=option)
    _w(method, "response", status="303")


def _base(access_url: str, name: str) -> tuple[str, str]:
    """(resources base, job list path) of the job list URL."""
    url = (access_url or f"/rest/{name}").rstrip("/")
    head, sep, last = url.rpartition("/")
    if not sep or not head or head.endswith((":", "/")):
        return url + "/", ""
    return head + "/", last


# ---- writing ------------------------------------------------------------------------------------
def write(d: JobDefinition, access_url: str = "",
          control: Sequence[ParameterDescription] = ()) -> etree._Element:
    root = etree.Element(f"{{{WADL}}}application", nsmap={None: WADL, "xs": XSD, "uws": UWS, "opus": OPUS})
    base, path = _base(access_url, d.name)
    joblist = _w(_w(root, "resources", base=base), "resource", path=path or None)
    _doc(joblist, d.description, d.name)
    listing = _get(joblist, "application/xml", "uws:jobs", "The jobs of the list, newest first")
    request = etree.Element(f"{{{WADL}}}request")
    listing.insert(len(listing.findall(f"{{{WADL}}}doc")), request)  # after <doc>, before <response>
    phase = _w(request, "param", name="PHASE", style="query", type="xs:string", repeating="true")
    for value in _PHASES:
        _w(phase, "option", value=value)
    _w(request, "param", name="AFTER", style="query", type="xs:dateTime")
    _w(request, "param", name="LAST", style="query", type="xs:int")
    create = _w(joblist, "method", name="POST", id="createJob")
    _doc(create, "Create a job; PHASE=RUN starts it. Answers 303 to the new job.")
    media = "multipart/form-data" if d.used else "application/x-www-form-urlencoded"
    form = _w(_w(create, "request"), "representation", mediaType=media)
    for p in d.parameters.values():
        _write_param(form, p, f"parameter {p.name!r}")
    for u in d.used.values():
        _write_input(form, u)
    for p in control:
        _write_param(form, p, f"control parameter {p.name!r}").set(_o("control"), "true")
    _w(create, "response", status="303")
    job = _w(joblist, "resource", path="{job-id}")
    _w(job, "param", name="job-id", style="template", type="xs:string", required="true")
    _get(job, "application/xml", "uws:job", "The job")
    _post(job, "ACTION", "xs:string", ("DELETE",), "Delete the job")
    _w(_w(job, "method", name="DELETE"), "response", status="303")
    for child, media_type, post in _JOB_CHILDREN:
        resource = _w(job, "resource", path=child)
        _get(resource, media_type)
        if post:
            _post(resource, *post)
    results = _w(job, "resource", path="results")
    _get(results, "application/xml", "uws:results", "The results of the job")
    result = _w(results, "resource", path="{result-id}")
    _w(result, "param", name="result-id", style="template", type="xs:string", required="true")
    method = _w(result, "method", name="GET")
    response = _w(method, "response", status="200")
    for media_type in dict.fromkeys(g.content_type for g in d.generated.values() if g.content_type):
        _w(response, "representation", mediaType=media_type)
    _write_definition(joblist, d)
    return root


def _write_param(parent: etree._Element, p: ParameterDescription, where: str) -> etree._Element:
    if p.type != "file" and p.type not in XS_TYPES:
        raise ConfigurationError(f"{where}: type {p.type!r} has no XML Schema type")
    high = multiple(p.multiplicity, where)[1]
    param = _w(parent, "param", name=p.name, style="query",
               type="opus:file" if p.type == "file" else f"xs:{XS_TYPES[p.type]}",
               required=str(p.required).lower(), default=p.default, repeating="true" if high != 1 else None)
    for attr, value in (("min", p.min), ("max", p.max)):
        if value is not None:
            param.set(_o(attr), number_text(value, f"{where}: {attr}"))
    for attr in ("unit", "ucd", "utype"):
        if getattr(p, attr):
            param.set(_o(attr), getattr(p, attr))
    if p.multiplicity != "1":
        param.set(_o("multiplicity"), p.multiplicity)
    if p.prominent:
        param.set(_o("prominent"), "true")
    _doc(param, p.description)
    for option in p.options:
        _w(param, "option", value=option)
    return param


def _write_input(parent: etree._Element, u: UsedDescription) -> None:
    high = multiple(u.multiplicity, f"input {u.name!r}")[1]
    param = _w(parent, "param", name=u.name, style="query", type="xs:anyURI" if u.url else "opus:file",
               required=str(u.required).lower(), default=u.default, repeating="true" if high != 1 else None)
    param.set(_o("used"), "true")
    for attr, value in (("role", u.role), ("contentType", u.content_type), ("url", u.url)):
        if value:
            param.set(_o(attr), value)
    if u.multiplicity != "1":
        param.set(_o("multiplicity"), u.multiplicity)
    if u.prominent:
        param.set(_o("prominent"), "true")
    _doc(param, u.description)


def _write_definition(parent: etree._Element, d: JobDefinition) -> None:
    el = etree.SubElement(parent, _o("definition"), name=d.name, version=d.version)
    for attr, value in (("type", d.type), ("subtype", d.subtype), ("doculink", d.doculink)):
        if value:
            el.set(attr, value)
    for attr, number in (("executionDuration", d.execution_duration), ("quote", d.quote)):
        if number is not None:
            el.set(attr, str(number))
    if d.network:
        el.set("network", "true")
    if d.errexit:
        el.set("errexit", "true")
    if d.shell:
        el.set("shell", d.shell)
    if d.contact_name or d.contact_email:
        etree.SubElement(el, _o("contact"), name=d.contact_name, email=d.contact_email)
    for g in d.generated.values():
        result = etree.SubElement(el, _o("result"), name=g.name, file=g.file, contentType=g.content_type)
        if g.role:
            result.set("role", g.role)
        if g.required is not None:
            result.set("required", str(g.required).lower())
        if g.derived_from:
            result.set("derivedFrom", " ".join(g.derived_from))
        if g.description:
            etree.SubElement(result, _o("description")).text = g.description
        for key, value in g.obscore.items():
            etree.SubElement(result, _o("obscore"), name=key, value=str(value))
    for option, value in d.slurm.items():
        etree.SubElement(el, _o("slurm"), option=option, value=value)
    etree.SubElement(el, _o("script")).text = d.script


# ---- reading ------------------------------------------------------------------------------------
def read(root: etree._Element) -> JSONObject:
    """The JSON form of the definition described by a WADL document."""
    if root.tag != f"{{{WADL}}}application":
        raise ConfigurationError(f"WADL: the root element is <{etree.QName(root).localname}> (namespace "
                                 f"{etree.QName(root).namespace!r}), not <application> in {WADL}")
    for joblist in root.iter(f"{{{WADL}}}resource"):
        definition = joblist.find(_o("definition"))
        if definition is not None:
            break
    else:
        if original_wadl.is_original(root):  # a WADL file of the original OPUS (opus.jobdef.original_wadl)
            return original_wadl.read(root)
        raise ConfigurationError(f"WADL: no <opus:definition> element (namespace {OPUS}): the document does "
                                 "not describe an OPUS job definition")
    name = definition.get("name")
    where = f"WADL definition {name!r}"
    doc: JSONObject = {"name": name, "description": text_of(joblist.find(f"{{{WADL}}}doc"))}
    for attr in ("version", "type", "subtype", "doculink"):
        if definition.get(attr) is not None:
            doc[attr] = definition.get(attr)
    for attr in ("executionDuration", "quote"):
        number = definition.get(attr)
        if number is not None:
            doc[attr] = parse_int(number, f"{where}: {attr}")
    for flag in ("network", "errexit"):
        if definition.get(flag) is not None:
            doc[flag] = definition.get(flag) in ("true", "1")
    if definition.get("shell") is not None:
        doc["shell"] = definition.get("shell")
    doc["generated"], doc["slurm"] = {}, {}
    for el in elements(definition):
        tag = etree.QName(el)
        if tag.namespace != OPUS:
            continue
        if tag.localname == "contact":
            doc["contact"] = {"name": el.get("name", ""), "email": el.get("email", "")}
        elif tag.localname == "result":
            _read_result(el, doc["generated"], where)
        elif tag.localname == "slurm":
            doc["slurm"][el.get("option", "")] = el.get("value", "")
        elif tag.localname == "script":
            doc["script"] = text_of(el)
        else:
            raise ConfigurationError(f"{where}: unknown element <opus:{tag.localname}>")
    doc["parameters"], doc["used"] = {}, {}
    for param in _request_params(joblist):
        pname = param.get("name")
        if not pname:
            raise ConfigurationError(f"{where}: a request <param> without a name (line {param.sourceline})")
        if param.get(_o("control")) == "true" or pname.upper() in CONTROL_PARAMETERS:
            continue
        if pname in doc["parameters"] or pname in doc["used"]:
            continue  # the same param in another representation
        here = f"{where}: param {pname!r}"
        if param.get(_o("used")) == "true":
            doc["used"][pname] = _read_input(param, here)
        else:
            doc["parameters"][pname] = _read_param(param, here)
    return doc


def _request_params(joblist: etree._Element) -> list[etree._Element]:
    params: list[etree._Element] = []
    for method in joblist.findall(f"{{{WADL}}}method"):
        if method.get("name") != "POST":
            continue
        for request in method.findall(f"{{{WADL}}}request"):
            params += request.findall(f"{{{WADL}}}param")
            params += request.findall(f"{{{WADL}}}representation/{{{WADL}}}param")
    return params


def _common(param: etree._Element, where: str) -> JSONObject:
    out: JSONObject = {"required": parse_bool(param.get("required", "false"), f"{where}: required")}
    if param.get("default") is not None:
        out["default"] = param.get("default")
    repeating = parse_bool(param.get("repeating", "false"), f"{where}: repeating")
    multiplicity = param.get(_o("multiplicity")) or ("*" if repeating else "1")
    if multiplicity != "1":
        out["multiplicity"] = multiplicity
    if param.get(_o("prominent")) is not None:
        out["prominent"] = parse_bool(param.get(_o("prominent"), ""), f"{where}: opus:prominent")
    description = text_of(param.find(f"{{{WADL}}}doc"))
    if description:
        out["description"] = description
    return out


def _read_param(param: etree._Element, where: str) -> JSONObject:
    qname = param.get("type", "xs:string")
    prefix, _, local = qname.rpartition(":")
    namespace = param.nsmap.get(prefix or None)
    if namespace == XSD and local in _FROM_XS:
        ptype = _FROM_XS[local]
    elif namespace == OPUS and local == "file":
        ptype = "file"
    else:
        raise ConfigurationError(f"{where}: type {qname!r} is not supported; use xs:string, xs:int, xs:long, "
                                 "xs:float, xs:double, xs:boolean, xs:anyURI, xs:dateTime or opus:file")
    out = {"type": ptype, **_common(param, where)}
    for attr in ("min", "max"):
        bound = param.get(_o(attr))
        if bound is not None:
            out[attr] = parse_number(bound, f"{where}: opus:{attr}")
    for attr in ("unit", "ucd", "utype"):
        if param.get(_o(attr)):
            out[attr] = param.get(_o(attr))
    options = [option.get("value", "") for option in param.findall(f"{{{WADL}}}option")]
    if options:
        out["options"] = options
    return out


def _read_input(param: etree._Element, where: str) -> JSONObject:
    out = _common(param, where)
    for attr, key in (("role", "role"), ("contentType", "content_type"), ("url", "url")):
        if param.get(_o(attr)):
            out[key] = param.get(_o(attr))
    return out


def _read_result(el: etree._Element, generated: dict[str, JSONObject], where: str) -> None:
    name = el.get("name")
    if not name or name in generated:
        raise ConfigurationError(f"{where}: <opus:result> without a name or given twice (line {el.sourceline})")
    here = f"{where}: result {name!r}"
    entry: JSONObject = {"file": el.get("file", name)}
    if el.get("contentType") is not None:
        entry["content_type"] = el.get("contentType")
    if el.get("role"):
        entry["role"] = el.get("role")
    required, derived_from = el.get("required"), el.get("derivedFrom")
    if required is not None:
        entry["required"] = parse_bool(required, f"{here}: required")
    if derived_from:
        entry["derived_from"] = derived_from.split()
    description = el.find(_o("description"))
    if description is not None:
        entry["description"] = text_of(description)
    obscore = {o.get("name", ""): o.get("value", "") for o in el.findall(_o("obscore"))}
    if obscore:
        entry["obscore"] = obscore
    generated[name] = entry
