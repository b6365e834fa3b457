"""A definition in the shape the original OPUS served it as JSON (``GET /jdl/<name>/json`` and
the ``details`` of its ``GET /jdl``), for the clients and scripts written against it.

The original answered its content dictionary: top-level ``annotation``, ``contact_name``,
``executionDuration`` and ``quote`` as text, parameters with an ``xs:`` ``datatype``, ``required``
as ``"true"``/``"false"``, ``annotation`` and comma-separated ``options``; inputs (``used``) with a
``url`` (``file://$ID`` for an upload) and results (``generated``) with their file name as
``default``; the ``*_keys`` lists giving the order, and the server's control parameters.
``opus.jobdef.original`` reads this shape back.
"""

from __future__ import annotations

from collections.abc import Sequence

from opus.jobdef.model import JSONObject, JobDefinition, ParameterDescription

#: our parameter types -> the original's datatypes
DATATYPES = {"string": "xs:string", "int": "xs:int", "long": "xs:long", "float": "xs:float", "double": "xs:double",
             "boolean": "xs:boolean", "anyURI": "xs:anyURI", "dateTime": "xs:dateTime", "file": "file"}


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(value)


def _parameter(p: ParameterDescription) -> JSONObject:
    out: JSONObject = {"datatype": DATATYPES.get(p.type, "xs:string"), "required": str(p.required).lower(),
                       "default": p.default if p.default is not None else "", "unit": p.unit, "ucd": p.ucd,
                       "utype": p.utype, "annotation": p.description}
    if p.min is not None:
        out["min"] = _number(p.min)
    if p.max is not None:
        out["max"] = _number(p.max)
    if p.options:
        out["options"] = ",".join(p.options)
    return out


def to_original(jobdef: JobDefinition, control: Sequence[ParameterDescription] = ()) -> JSONObject:
    """The original's content dictionary of ``jobdef`` (``control``: the server's control parameters)."""
    used = {u.name: {"datatype": "xs:anyURI" if u.url else "file", "annotation": u.description,
                     "url": u.url or "file://$ID", "role": u.role,
                     "multiplicity": "" if u.multiplicity == "1" else u.multiplicity,
                     "default": u.default or "", "content_type": u.content_type}
            for u in jobdef.used.values()}
    generated = {g.name: {"annotation": g.description, "role": g.role, "multiplicity": "",
                          "default": g.file, "content_type": g.content_type}
                 for g in jobdef.generated.values()}
    return {
        "control_parameters": {p.name: p.description for p in control},
        "control_parameters_keys": [p.name for p in control],
        "name": jobdef.name, "annotation": jobdef.description, "doculink": jobdef.doculink,
        "type": jobdef.type, "subtype": jobdef.subtype, "version": jobdef.version,
        "contact_name": jobdef.contact_name, "contact_email": jobdef.contact_email,
        "executionDuration": "" if jobdef.execution_duration is None else str(jobdef.execution_duration),
        "quote": "" if jobdef.quote is None else str(jobdef.quote),
        "script": jobdef.script,
        # Not the original's keys: how this server runs the script (read back by opus.jobdef.original).
        "errexit": jobdef.errexit, "shell": jobdef.shell,
        "parameters": {p.name: _parameter(p) for p in jobdef.parameters.values()},
        "used": used, "generated": generated,
        "parameters_keys": list(jobdef.parameters), "used_keys": list(jobdef.used),
        "generated_keys": list(jobdef.generated),
    }
