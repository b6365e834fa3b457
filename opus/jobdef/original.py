"""Definitions written for the original OPUS (2015-2025): its JSON files, its WADL files, and the
content dictionary both stood for, brought into our model with nothing lost silently.

The original kept one dictionary per definition (``jdl.content``) and wrote it as JSON
(``jdl/json/<name>.json``), as an ActivityDescription VOTable (``jdl/votable/<name>_vot.xml``,
read by ``votable_read.py``) or, in its first years, as WADL (``jdl/wadl/<name>.wadl``, read by
``original_wadl.py``); the script was a separate file (``jdl/scripts/<name>.sh``).  Here every key
of that dictionary either maps to a field of ``JobDefinition`` or is named in a warning saying what
was not kept and why (``Imported.warnings``; also logged).  docs/migration.md lists the mapping.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opus.errors import ConfigurationError
from opus.jobdef.model import ABSOLUTE_URI, JSONObject, JobDefinition

log = logging.getLogger("opus.jobdef.original")

#: The original's datatypes (XML Schema names, and its own "file") -> our parameter types.
DATATYPES = {"xs:string": "string", "xs:token": "string", "string": "string", "char": "string",
             "xs:int": "int", "xs:integer": "long", "xs:short": "int", "xs:unsignedByte": "int", "xs:long": "long",
             "int": "int", "long": "long", "xs:float": "float", "xs:double": "double", "float": "float",
             "double": "double", "xs:boolean": "boolean", "boolean": "boolean", "xs:anyURI": "anyURI",
             "xs:dateTime": "dateTime", "file": "file"}
#: Keys of the original's content that are the server's, not the definition's (copied into every
#: definition it served): not kept, without a warning.
SERVER_KEYS = ("control_parameters", "control_parameters_keys", "parameters_keys", "used_keys",
               "generated_keys")
#: How the original ran every script (``#!/bin/bash -l``, errors trapped): the default of a definition
#: imported from its files (docs/migration.md, "Job scripts").
ORIGINAL_RUN: JSONObject = {"errexit": True, "shell": "login"}
_TOP_KEYS = ("name", "annotation", "description", "version", "type", "subtype", "doculink", "url", "group",
             "contact_name", "contact_email", "executionDuration", "executionduration", "quote", "script",
             "parameters", "used", "generated", "errexit", "shell")


@dataclass
class Imported:
    """A definition read from the original's files, and what of them was not kept."""

    definition: JobDefinition
    warnings: list[str] = field(default_factory=list)


class Notes:
    """The warnings of one import, each prefixed with the definition's name and logged."""

    def __init__(self, name: str, sink: list[str] | None = None):
        self.name = name
        self.items: list[str] = [] if sink is None else sink

    def add(self, message: str) -> None:
        text = f"job definition {self.name!r}: {message}"
        self.items.append(text)
        log.warning("importing an original OPUS definition: %s", text)


def is_original_json(doc: object) -> bool:
    """Whether a JSON document is the original's content dictionary rather than our JSON form."""
    if not isinstance(doc, dict):
        return False
    if any(key in doc for key in ("annotation", "executionduration", "contact_name", "control_parameters",
                                  "parameters_keys")):
        return True
    sections = [doc.get(key) for key in ("parameters", "used", "generated")]
    entries = [entry for section in sections if isinstance(section, dict) for entry in section.values()]
    return any(isinstance(e, dict) and ("datatype" in e or "annotation" in e) for e in entries)


def to_json_form(content: JSONObject, notes: Notes, script: str | None = None) -> JSONObject:
    """Our JSON form of the original's content dictionary (``script``: its separate .sh file)."""
    name = content.get("name")
    if isinstance(name, str):
        name = name.split("/")[-1]  # the original named definitions being edited "tmp/<name>"
    # How the script runs: as the original ran it, unless the file says (as GET /jdl/<name>/json may)
    doc: JSONObject = {"name": name, **ORIGINAL_RUN, **{k: content[k] for k in ORIGINAL_RUN if k in content}}
    for key in sorted(set(content) - set(_TOP_KEYS) - set(SERVER_KEYS)):
        notes.add(f"field {key!r} ({_short(content[key])}) is not part of a definition here: not kept")
    description = _text(content.get("annotation")) or _text(content.get("description"))
    if description:
        doc["description"] = description
    for key in ("version", "type", "subtype", "doculink"):
        if _text(content.get(key)):
            doc[key] = _text(content[key])
    _top_extras(content, doc, notes)
    link = doc.get("doculink")
    if link and not ABSOLUTE_URI.fullmatch(str(link)):  # a definition here takes only a followable link
        notes.add(f"doculink {_short(link)} is not an absolute URL: not kept")
        del doc["doculink"]
    contact = {k: _text(content.get(f"contact_{k}")) for k in ("name", "email")}
    if any(contact.values()):
        doc["contact"] = contact
    for key, sources in (("executionDuration", ("executionDuration", "executionduration")), ("quote", ("quote",))):
        value = next((content[s] for s in sources if _text(content.get(s))), None)
        if value is not None:
            doc[key] = _seconds(value, key, notes)
    text = content.get("script") if content.get("script") is not None else script
    if text is not None:
        doc["script"] = str(text)
    params = _ordered(content, "parameters")
    used = _ordered(content, "used")
    doc["parameters"], doc["used"] = {}, {}
    for pname, pdata in params.items():
        if pname in used or _datatype(pdata) == "file":
            continue  # an input: described below, with this parameter's default and description
        doc["parameters"][pname] = _parameter(pname, pdata, notes)
    for uname, udata in used.items():
        doc["used"][uname] = _used(uname, udata, params.get(uname), notes)
    for pname, pdata in params.items():
        if pname not in used and _datatype(pdata) == "file":
            doc["used"][pname] = _used(pname, {}, pdata, notes)
    doc["generated"] = {g: _generated(g, gdata, notes) for g, gdata in _ordered(content, "generated").items()}
    return doc


def read_json(data: bytes | str, script: str | None = None, sink: list[str] | None = None) -> JSONObject:
    """Our JSON form of one of the original's JSON definition files."""
    try:
        content = json.loads(data)
    except ValueError as exc:
        raise ConfigurationError(f"JSON: not valid JSON: {exc}") from None
    if not isinstance(content, dict):
        raise ConfigurationError("JSON: a job definition must be a JSON object")
    return to_json_form(content, Notes(str(content.get("name")), sink), script)


# ---- parts ------------------------------------------------------------------------------------------
def _top_extras(content: JSONObject, doc: JSONObject, notes: Notes) -> None:
    """The original's top-level fields our model has no place for."""
    if _text(content.get("group")):
        notes.add(f"group {content['group']!r} is not kept: definitions have no groups here")
    url = _text(content.get("url"))
    if url and not doc.get("doculink"):
        doc["doculink"] = url
        notes.add(f"url {url!r} is kept as the doculink")
    elif url and url != doc.get("doculink"):
        notes.add(f"url {url!r} is not kept: the doculink is {doc['doculink']!r}")


def _parameter(name: str, data: JSONObject, notes: Notes) -> JSONObject:
    where = f"parameter {name!r}"
    data = _dict(data, where)
    ptype = _type(name, data, notes)
    out: JSONObject = {"type": ptype, "required": _required(data.get("required"), where, notes)}
    default = data.get("default")
    if default is not None and (default != "" or ptype == "string"):
        out["default"] = str(default).lower() if isinstance(default, bool) else str(default)
    if _text(data.get("annotation")):
        out["description"] = _text(data["annotation"])
    for attr in ("unit", "ucd", "utype"):
        if _text(data.get(attr)):
            out[attr] = _text(data[attr])
    for bound in ("min", "max"):
        if _text(data.get(bound)):
            try:
                number = float(str(data[bound]))
                out[bound] = int(number) if number.is_integer() and "." not in str(data[bound]) else number
            except ValueError:
                notes.add(f"{where}: {bound} {data[bound]!r} is not a number: not kept")
    options = _options(data)
    if options and "default" in out and out["default"] not in options:
        notes.add(f"{where}: its choices {options} do not include its default {out['default']!r}: "
                  "not kept as allowed values")
    elif options:
        out["options"] = options
    known = {"datatype", "type", "required", "default", "annotation", "unit", "ucd", "utype", "min", "max",
             "options", "choices"}
    _unknown(data, known, where, notes)
    return out


def _used(name: str, data: JSONObject, param: JSONObject | None, notes: Notes) -> JSONObject:
    where = f"input {name!r}"
    data = _dict(data, where)
    out: JSONObject = {}
    if param is not None:
        param = _dict(param, f"parameter {name!r}")
        out["required"] = _required(param.get("required"), where, notes)
        if _text(param.get("annotation")):
            out["description"] = _text(param["annotation"])
        if param.get("default") not in (None, ""):
            out["default"] = str(param["default"])
        _unknown(param, {"datatype", "type", "required", "default", "annotation", "unit", "ucd", "utype",
                         "min", "max", "options", "choices"}, f"parameter {name!r}", notes)
    if _text(data.get("annotation")):
        out["description"] = _text(data["annotation"])
    for key in ("role", "content_type"):
        if _text(data.get(key)):
            out[key] = _text(data[key])
    if data.get("default") not in (None, ""):
        out["default"] = str(data["default"])
    multiplicity = _text(data.get("multiplicity"))
    if multiplicity and multiplicity != "1":
        out["multiplicity"] = multiplicity
    url = keep_url(_text(data.get("url")), where, notes)
    if url:
        out["url"] = url
    _unknown(data, {"datatype", "annotation", "role", "content_type", "default", "multiplicity", "url",
                    "isfile"}, where, notes)
    return out


def keep_url(url: str, where: str, notes: Notes) -> str:
    """The original's URL of an input, as our ``url`` template ("" for an upload, ``file://$ID``)."""
    if not url or url.startswith("file://"):
        return ""
    if url.startswith(("http://", "https://")) and "$ID" in url:
        return url
    if url.startswith(("http://", "https://")):
        notes.add(f"{where}: url {url!r} holds no $ID (the original fetched that one URL whatever the value): "
                  "not kept; give the URL as the input's value or default")
    else:
        notes.add(f"{where}: url {url!r} is not an http(s) template holding $ID: not kept")
    return ""


def _generated(name: str, data: JSONObject, notes: Notes) -> JSONObject:
    where = f"result {name!r}"
    data = _dict(data, where)
    out: JSONObject = {"file": _text(data.get("default")) or name}
    if _text(data.get("content_type")):
        out["content_type"] = _text(data["content_type"])
    if _text(data.get("annotation")):
        out["description"] = _text(data["annotation"])
    if _text(data.get("role")):
        out["role"] = _text(data["role"])
    multiplicity = _text(data.get("multiplicity"))
    if multiplicity not in ("", "1"):
        notes.add(f"{where}: multiplicity {multiplicity!r} is not kept: a result of several files is a "
                  "glob pattern in 'file' here")
    if _text(data.get("url")):
        notes.add(f"{where}: url {data['url']!r} is not kept: results are served by OPUS")
    _unknown(data, {"default", "content_type", "annotation", "role", "multiplicity", "url", "datatype"},
             where, notes)
    return out


# ---- values -----------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    """A text field: None is empty; strings as they are (descriptions keep their spacing)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _dict(value: Any, where: str) -> JSONObject:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where}: a JSON object was expected, not {_short(value)}")
    return value


def _ordered(content: JSONObject, section: str) -> JSONObject:
    """A section in the order of its ``<section>_keys`` list, when the original wrote one."""
    entries = _dict(content.get(section), section)
    keys = content.get(f"{section}_keys")
    if not isinstance(keys, list):
        return entries
    order = [k for k in keys if k in entries]
    return {**{k: entries[k] for k in order}, **{k: v for k, v in entries.items() if k not in order}}


def _datatype(data: Any) -> str:
    if not isinstance(data, dict):
        return "string"
    raw = str(data.get("datatype") or data.get("type") or "xs:string")
    return DATATYPES.get(raw, "?")


def _type(name: str, data: JSONObject, notes: Notes) -> str:
    raw = str(data.get("datatype") or data.get("type") or "xs:string")
    if raw in DATATYPES:
        return DATATYPES[raw]
    notes.add(f"parameter {name!r}: datatype {raw!r} is unknown: read as a string")
    return "string"


def _required(value: Any, where: str, notes: Notes) -> bool:
    if value is None or value == "":
        return True  # the original: required unless said otherwise (type="no_query")
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    notes.add(f"{where}: required {value!r} is not a boolean: read as true")
    return True


def _options(data: JSONObject) -> list[str]:
    """Allowed values: ``options`` (comma-separated, as its VOTable reader joined them) or
    ``choices`` ("|"-separated, as its WADL files and .par import wrote them)."""
    raw = data.get("options")
    if isinstance(raw, list):
        return [str(o) for o in raw]
    if _text(raw):
        return [o for o in str(raw).split(",")]
    if _text(data.get("choices")):
        return [o for o in str(data["choices"]).split("|")]
    return []


def _seconds(value: Any, key: str, notes: Notes) -> int | None:
    try:
        return max(0, int(float(str(value).strip())))
    except ValueError:
        notes.add(f"{key} {value!r} is not a number of seconds: not kept")
        return None


def _unknown(data: JSONObject, known: Iterable[str], where: str, notes: Notes) -> None:
    for key in sorted(set(data) - set(known)):
        if data[key] not in (None, ""):
            notes.add(f"{where}: field {key!r} ({_short(data[key])}) has no place here: not kept")

