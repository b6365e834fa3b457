"""The WADL files of the original OPUS (``jdl/wadl/<name>.wadl``, e.g. its ``ctbin.wadl``).

The original filled a UWS 1.0 WADL template: the job list ``<resource id="joblist" path="<name>">``
(with ``doculink``, ``contact_name`` and ``contact_email`` attributes), its description in
``<doc title="description">``, the parameters in ``<request id="create_job_parameters">`` (``type``
an ``xs:`` name or ``file``, ``required``, ``default``, ``choices`` as ``a|b``, ``min``, ``max``, a
``<doc>``), the results as ``<option>``s of the ``result-id`` template parameter (``value``,
``mediaType`` or ``content_type``, ``default`` file name, ``<doc>``), the execution duration as the
default of ``EXECUTIONDURATION`` and the quote as the default of ``<representation id="quote">``.
Parameters of type ``xs:anyURI`` or ``file`` were also its inputs.  The script was not in the
WADL: it was ``jdl/scripts/<name>.sh``.

This module turns such a document into the original's content dictionary, which
``opus.jobdef.original`` maps to our model (with a warning for anything not kept).
"""

from __future__ import annotations

from lxml import etree

from opus.errors import ConfigurationError
from opus.jobdef.model import JSONObject
from opus.jobdef.original import Notes, to_json_form
from opus.jobdef.xmltext import elements, text_of

WADL = "http://wadl.dev.java.net/2009/02"
_PARAM_ATTRS = {"style", "name", "type", "required", "default", "min", "max", "choices", "fixed", "repeating"}
_RESULT_ATTRS = {"value", "mediaType", "content_type", "default"}


def _w(tag: str) -> str:
    return f"{{{WADL}}}{tag}"


def _find(root: etree._Element, tag: str, attr: str, value: str) -> etree._Element | None:
    return next((el for el in root.iter(_w(tag)) if el.get(attr) == value), None)


def _doc_text(el: etree._Element) -> str:
    """The original's annotation of a param or option: the text of its first child (a <doc>)."""
    first = next(iter(elements(el)), None)
    return text_of(first) if first is not None and first.tag == _w("doc") else ""


def is_original(root: etree._Element) -> bool:
    """Whether a WADL document is one the original OPUS wrote (its job list resource)."""
    return root.tag == _w("application") and _find(root, "resource", "id", "joblist") is not None


def content(root: etree._Element, notes: Notes) -> JSONObject:
    """The original's content dictionary described by its WADL document."""
    joblist = _find(root, "resource", "id", "joblist")
    if joblist is None:
        raise ConfigurationError('WADL: no <resource id="joblist">: not a WADL file of the original OPUS')
    name = joblist.get("path") or ""
    notes.name = name
    out: JSONObject = {"name": name, "parameters": {}, "used": {}, "generated": {}}
    description = _find(joblist, "doc", "title", "description")
    if description is not None and text_of(description):
        out["annotation"] = text_of(description)
    for key in ("doculink", "contact_name", "contact_email"):
        if joblist.get(key):
            out[key] = joblist.get(key)
    extra = sorted(set(joblist.attrib) - {"id", "path", "doculink", "contact_name", "contact_email"})
    for key in extra:
        notes.add(f"job list attribute {key}={joblist.get(key)!r} has no place here: not kept")
    request = _find(joblist, "request", "id", "create_job_parameters")
    for param in elements(request) if request is not None else []:
        _param(param, out, notes)
    results = _find(joblist, "param", "name", "result-id")
    for option in elements(results) if results is not None else []:
        _result(option, out, notes)
    duration = _find(joblist, "param", "name", "EXECUTIONDURATION")
    if duration is not None and duration.get("default"):
        out["executionduration"] = duration.get("default")
    quote = _find(joblist, "representation", "id", "quote")
    if quote is not None and quote.get("default"):
        out["quote"] = quote.get("default")
    return out


def read(root: etree._Element, sink: list[str] | None = None, script: str | None = None) -> JSONObject:
    """Our JSON form of the original's WADL document (``script``: its separate .sh file)."""
    notes = Notes("", sink)
    found = content(root, notes)
    if script is None:
        raise ConfigurationError(
            f"WADL of the original OPUS for {found['name']!r}: it holds no script (the original kept it in "
            "jdl/scripts/<name>.sh); import it with its script (opus.jobdef.importing.import_definition(..., "
            "script=...)), or convert it and add the script to the JSON form")
    return to_json_form(found, notes, script)


def _param(param: etree._Element, out: JSONObject, notes: Notes) -> None:
    if param.tag != _w("param"):
        return
    name = param.get("name")
    if name in (None, "PHASE"):
        return
    item: JSONObject = {"datatype": param.get("type") or "xs:string", "required": param.get("required"),
                        "default": param.get("default"), "annotation": _doc_text(param)}
    for attr in ("min", "max", "choices"):
        if param.get(attr):
            item[attr] = param.get(attr)
    for attr in sorted(set(param.attrib) - _PARAM_ATTRS):
        notes.add(f"parameter {name!r}: attribute {attr}={param.get(attr)!r} has no place here: not kept")
    options = [o.get("value") for o in param.iter(_w("option")) if o.get("value") is not None]
    if options and "choices" not in item:
        item["choices"] = "|".join(str(o) for o in options)
    out["parameters"][name] = item
    if item["datatype"] in ("xs:anyURI", "file"):
        out["used"][name] = {"default": item["default"], "content_type": "", "annotation": item["annotation"]}


def _result(option: etree._Element, out: JSONObject, notes: Notes) -> None:
    name = option.get("value")
    if option.tag != _w("option") or name is None:
        return
    out["generated"][name] = {"content_type": option.get("content_type") or option.get("mediaType"),
                              "default": option.get("default"), "annotation": _doc_text(option)}
    for attr in sorted(set(option.attrib) - _RESULT_ATTRS):
        notes.add(f"result {name!r}: attribute {attr}={option.get(attr)!r} has no place here: not kept")
