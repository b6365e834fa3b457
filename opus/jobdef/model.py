"""The JobDefinition model and the checks applied to submitted parameter values.

The model follows the IVOA ProvDM ActivityDescription used by the original OPUS: top-level
description fields, parameters (``InputParams``), used entities (``Used``) and generated entities
(``Generated``).  The JSON form read here is documented in ``docs/job-definitions.md``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from opus.errors import BadRequest, ConfigurationError
from opus.jobdef.envnames import PARAM_NAME_RE, RESERVED_NAMES, reserved_reason  # noqa: F401 (re-exported)
from opus.jobdef import needs as _needs
# Re-exported: callers import them from here too.
from opus.jobdef.multiplicity import describe_multiplicity as describe_multiplicity
from opus.jobdef.multiplicity import multiplicity_range as multiplicity_range
from opus.jobdef.slurm_options import check_option
from opus.timeutil import parse_instant

#: A definition's JSON form, as parsed (checked field by field by ``JobDefinition.from_dict``).
JSONObject = dict[str, Any]

#: A definition's name: its URL (/rest/<name>, /jdl/<name>) and its file names in JDL_DIR (<name>.json,
#: versions/<name>/, proposals/<name>.json and <name>.meta.json).  No dots, so that no name can be
#: another's file ("x.meta") and a name is one path segment everywhere.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
#: A result's id (the last part of .../results/<id>): a name in the job's result list, never a path.
RESULT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
_INTEGER = re.compile(r"^[+-]?[0-9]+\Z")
_NUMBER = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")
TYPES = ("string", "int", "long", "float", "double", "boolean", "anyURI", "dateTime", "file")
#: Job-control parameters (UWS/DALI); never part of a definition, matched case-insensitively.
CONTROL_PARAMETERS = frozenset({"PHASE", "ACTION", "RUNID", "EXECUTIONDURATION", "DESTRUCTION", "WAIT",
                                "QUOTE", "OWNER"})
#: How the script's bash starts: "" (the server's JOB_SHELL), "plain" (a non-login bash, fixed PATH) or
#: "login" (``bash -l``: /etc/profile and /etc/profile.d, as the original OPUS ran scripts).
SHELLS = ("", "plain", "login")


@dataclass
class ParameterDescription:
    """One parameter of a definition (ProvDM ParameterDescription)."""

    name: str
    type: str = "string"
    default: str | None = None
    required: bool = False
    description: str = ""
    options: list[str] = field(default_factory=list)
    min: float | None = None
    max: float | None = None
    unit: str = ""
    ucd: str = ""
    utype: str = ""
    #: How many values: "1" (default), "N" (at most N), "M..N", "M..*" or "*" (any number).
    multiplicity: str = "1"
    #: Shown at once in the web form, whether required or not (without any, the form shows the
    #: required fields and the first few).
    prominent: bool = False

    @property
    def multiple(self) -> bool:
        return multiplicity_range(self.multiplicity)[1] != 1

    def check(self, value: str) -> str:
        """Return the value if it fits this description, else raise BadRequest naming the parameter.

        A multi-valued parameter's value is a whitespace-separated list; each item is checked and
        the list is returned with single spaces.
        """
        if not self.multiple:
            return self._check_one(value)
        items = value.split()
        low, high = multiplicity_range(self.multiplicity)
        if len(items) < max(low, 1 if self.required else 0) or (high is not None and len(items) > high):
            raise BadRequest(f"parameter {self.name!r}: {len(items)} value(s) given; it takes "
                             f"{describe_multiplicity(self.multiplicity)} (separated by spaces)")
        return " ".join(self._check_one(item) for item in items)

    def _check_one(self, value: str) -> str:
        where = f"parameter {self.name!r}"
        number: float | None = None
        if self.type in ("int", "long"):
            if not _INTEGER.match(value.strip()):
                raise BadRequest(f"{where}: {value!r} is not an integer")
            number = int(value.strip())
            bits = 31 if self.type == "int" else 63
            if not -(2 ** bits) <= number < 2 ** bits:
                raise BadRequest(f"{where}: {value} does not fit a {bits + 1}-bit {self.type}")
        elif self.type in ("float", "double"):
            if not _NUMBER.match(value.strip()):
                raise BadRequest(f"{where}: {value!r} is not a number")
            number = float(value.strip())
            if math.isinf(number):
                raise BadRequest(f"{where}: {value!r} is out of range")
        elif self.type == "boolean":
            if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise BadRequest(f"{where}: {value!r} is not a boolean (true or false)")
        elif self.type == "dateTime":
            parse_instant(value, where)
        elif self.type == "anyURI" and not value.strip():
            raise BadRequest(f"{where}: an empty URI")
        if self.options and value not in self.options:
            raise BadRequest(f"{where}: {value!r} is not one of the allowed values "
                             + ", ".join(repr(o) for o in self.options))
        if number is not None:
            if self.min is not None and number < self.min:
                raise BadRequest(f"{where}: {value} is below the minimum {self.min:g}")
            if self.max is not None and number > self.max:
                raise BadRequest(f"{where}: {value} is above the maximum {self.max:g}")
        return value


@dataclass
class UsedDescription:
    """An input entity the job uses (ProvDM UsedDescription): an uploaded file, a URL or an id."""

    name: str
    description: str = ""
    role: str = ""
    content_type: str = ""
    multiplicity: str = "1"
    default: str | None = None
    required: bool = True
    #: URL template with ``$ID`` resolving an identifier to a file to fetch ("" = the script resolves it).
    url: str = ""
    #: Shown at once in the web form (as for parameters).
    prominent: bool = False


@dataclass
class GeneratedDescription:
    """A result the job generates (ProvDM GenerationDescription): a file name or a glob pattern."""

    name: str
    file: str
    content_type: str = "application/octet-stream"
    description: str = ""
    role: str = ""
    #: None: required unless ``file`` is a glob pattern; True for a pattern: at least one file.
    required: bool | None = None
    #: ObsCore metadata of the product (dataproduct_type, calib_level, obs_collection, ...).
    obscore: dict[str, str] = field(default_factory=dict)
    #: Names of the inputs (``used``) this result is derived from (provenance wasDerivedFrom).
    derived_from: list[str] = field(default_factory=list)

    @property
    def is_pattern(self) -> bool:
        return any(c in self.file for c in "*?[")

    @property
    def is_required(self) -> bool:
        return (not self.is_pattern) if self.required is None else self.required


@dataclass
class JobDefinition:
    """Everything OPUS knows about one kind of job."""

    name: str
    script: str
    description: str = ""
    version: str = "1"
    type: str = ""
    subtype: str = ""
    doculink: str = ""
    contact_name: str = ""
    contact_email: str = ""
    execution_duration: int | None = None
    quote: int | None = None
    parameters: dict[str, ParameterDescription] = field(default_factory=dict)
    used: dict[str, UsedDescription] = field(default_factory=dict)
    generated: dict[str, GeneratedDescription] = field(default_factory=dict)
    #: Default SLURM resources (options of ``opus.jobdef.slurm_options``), e.g. {"mem": "2G"}.
    slurm: dict[str, str] = field(default_factory=dict)
    #: Whether the job's script may use the network (its sandbox has none by default).  Inputs are
    #: fetched outside the sandbox either way.
    network: bool = False
    #: What the script needs on the host: {"python": [modules], "commands": [names]} (opus.jobdef.needs).
    needs: dict[str, list[str]] = field(default_factory=dict)
    #: A failing command ends the script, and the job in ERROR (bash ``set -e``, as the original's
    #: wrapper trapped errors); False: only the script's exit status counts.
    errexit: bool = False
    #: The shell environment (one of SHELLS).
    shell: str = ""

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: JSONObject) -> JobDefinition:
        """Build from the JSON form; raise ConfigurationError with the offending field."""
        if not isinstance(data, dict):
            raise ConfigurationError("a job definition must be a JSON object")
        # Written for clients alongside the model (the job list's URL, the control parameters): not part of it.
        data = {k: v for k, v in data.items() if k not in ("accessURL", "controlParameters", "limits")}
        name = data.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigurationError(f"job definition name {name!r}: a letter, then letters, digits, '_' or '-' "
                                     "(at most 64; no dots)")
        ctx = f"job definition {name!r}"
        script = data.get("script")
        if not isinstance(script, str) or not script.strip():
            raise ConfigurationError(f"{ctx}: 'script' (the bash script to run) is required")
        contact = data.get("contact") or {}
        params = {pname: _parameter(ctx, pname, pdata or {})
                  for pname, pdata in (data.get("parameters") or {}).items()}
        used = _used(ctx, data.get("used") or {}, params)
        generated = _generated(ctx, data.get("generated") or {}, used)
        for key in ("executionDuration", "quote"):
            value = data.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConfigurationError(f"{ctx}: {key} must be a non-negative integer (seconds)")
        for key in ("network", "errexit"):
            if not isinstance(data.get(key, False), bool):
                raise ConfigurationError(f"{ctx}: {key} must be true or false")
        doculink = data.get("doculink") or ""
        if not isinstance(doculink, str) or (doculink and not ABSOLUTE_URI.fullmatch(doculink)):
            # Published in /jdl, the VOTable's LINK and provenance: a link clients can follow.
            raise ConfigurationError(f"{ctx}: doculink must be an absolute URL (e.g. https://example.org/doc), "
                                     f"not {str(doculink)[:80]!r}")
        if data.get("shell", "") not in SHELLS:
            raise ConfigurationError(f"{ctx}: shell must be \"plain\" or \"login\" (or absent: the server's "
                                     f"JOB_SHELL), not {str(data.get('shell'))[:40]!r}")
        return cls(
            slurm=_slurm(ctx, data.get("slurm") or {}), name=name, script=script, description=str(data.get("description", "")),
            version=str(data.get("version", "1")), type=str(data.get("type", "")),
            subtype=str(data.get("subtype", "")), doculink=doculink,
            contact_name=str(contact.get("name", "")), contact_email=str(contact.get("email", "")),
            execution_duration=data.get("executionDuration"), quote=data.get("quote"),
            parameters=params, used=used, generated=generated, network=data.get("network", False),
            needs=_needs.parse(ctx, data.get("needs")), errexit=data.get("errexit", False),
            shell=data.get("shell", ""),
        )

    def to_dict(self) -> JSONObject:
        """The JSON form (the inverse of from_dict)."""
        parameters = {n: {**_strip(p), "required": p.required} for n, p in self.parameters.items()}
        used = {n: {**_strip(u), "required": u.required} for n, u in self.used.items()}
        generated = {n: _strip(g) for n, g in self.generated.items()}
        for name, g in self.generated.items():
            if g.required is not None:
                generated[name]["required"] = g.required
        return {
            "name": self.name, "description": self.description, "version": self.version,
            "type": self.type, "subtype": self.subtype, "doculink": self.doculink,
            "contact": {"name": self.contact_name, "email": self.contact_email},
            "executionDuration": self.execution_duration, "quote": self.quote,
            "parameters": parameters,
            "used": used,
            "generated": generated,
            "slurm": dict(self.slurm),
            "network": self.network,
            **({"needs": {k: list(v) for k, v in self.needs.items()}} if self.needs else {}),
            **({"errexit": True} if self.errexit else {}), **({"shell": self.shell} if self.shell else {}),
            "script": self.script,
        }

    # ---- checks on submitted values ----------------------------------------------------------
    def check_value(self, name: str, value: str) -> str:
        """Check one submitted value for a known parameter (unknown names pass unchanged)."""
        desc = self.parameters.get(name)
        return desc.check(value) if desc is not None else value

    def result_description(self, result_id: str, file_name: str) -> GeneratedDescription | None:
        """The declared result a published result comes from (by name, or by its pattern)."""
        if result_id in self.generated:
            return self.generated[result_id]
        for gen in self.generated.values():
            if gen.is_pattern and fnmatch.fnmatchcase(file_name, gen.file):
                return gen
        return None

    def missing_required(self, present: set[str]) -> list[str]:
        """Names of required parameters and inputs that have no value and no default."""
        missing = [n for n, p in self.parameters.items() if p.required and p.default is None and n not in present]
        missing += [n for n, u in self.used.items() if u.required and u.default is None and n not in present]
        return missing


#: A URI with a scheme (https://..., ivo://...), no spaces: what a doculink may be.
ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]+")


def _check_name(ctx: str, name: str) -> None:
    if not isinstance(name, str) or not PARAM_NAME_RE.match(name):
        raise ConfigurationError(f"{ctx}: parameter name {str(name)[:80]!r}: a letter first, then letters, "
                                 "digits or '_' (at most 64)")
    reason = reserved_reason(name)
    if reason is not None:
        raise ConfigurationError(f"{ctx}: parameter name {name!r} is {reason} (see docs/job-definitions.md)")
    if name.upper() in CONTROL_PARAMETERS:
        raise ConfigurationError(f"{ctx}: {name!r} is a UWS control parameter name")


def _check_multiplicity(ctx: str, name: str, text: object) -> None:
    try:
        multiplicity_range(str(text))
    except ValueError as exc:
        raise ConfigurationError(f"{ctx}: {name!r}: {exc}") from None


_Description = ParameterDescription | UsedDescription | GeneratedDescription


def _strip(obj: _Description) -> JSONObject:
    """The fields that differ from their defaults (so "" survives where the default is None)."""
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if f.name != "name" and value != default:
            out[f.name] = value
    return out


def _used(ctx: str, data: JSONObject, params: dict[str, ParameterDescription]) -> dict[str, UsedDescription]:
    used = {}
    for uname, udata in data.items():
        _check_name(ctx, uname)
        if uname in params:
            raise ConfigurationError(f"{ctx}: {uname!r} is both a parameter and an input")
        used[uname] = UsedDescription(name=uname, **_known(ctx, uname, udata or {}, UsedDescription))
        _check_multiplicity(ctx, uname, used[uname].multiplicity)
        template = used[uname].url
        if template and not (template.startswith(("http://", "https://")) and "$ID" in template):
            raise ConfigurationError(f"{ctx}: input {uname!r}: url must be an http(s) URL template "
                                     "holding $ID")
    return used


def _generated(ctx: str, data: JSONObject, used: dict[str, UsedDescription]) -> dict[str, GeneratedDescription]:
    generated = {}
    for gname, gdata in data.items():
        if not RESULT_NAME_RE.match(gname):
            raise ConfigurationError(f"{ctx}: result name {gname!r} is not valid")
        gdata = dict(gdata or {})
        gdata.setdefault("file", gname)
        if "/" in gdata["file"] or gdata["file"].startswith("."):
            raise ConfigurationError(f"{ctx}: result {gname!r}: file must be a name in the work directory")
        gen = GeneratedDescription(name=gname, **_known(ctx, gname, gdata, GeneratedDescription))
        if not isinstance(gen.obscore, dict) or not all(
                isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in gen.obscore.items()):
            raise ConfigurationError(f"{ctx}: result {gname!r}: obscore must map names to values")
        gen.obscore = {k: str(v) for k, v in gen.obscore.items()}
        gen.derived_from = [str(u) for u in gen.derived_from or []]
        unknown = [u for u in gen.derived_from if u not in used]
        if unknown:
            raise ConfigurationError(f"{ctx}: result {gname!r}: derived_from names unknown input(s) "
                                     f"{unknown}; inputs are {sorted(used)}")
        if gen.required is not None and not isinstance(gen.required, bool):
            raise ConfigurationError(f"{ctx}: result {gname!r}: required must be true or false")
        generated[gname] = gen
    return generated


def _slurm(ctx: str, data: JSONObject) -> dict[str, str]:
    slurm = {}
    for option, value in data.items():
        try:
            slurm[option] = check_option(option, str(value), f"slurm option {option!r}")
        except BadRequest as exc:
            raise ConfigurationError(f"{ctx}: {exc.message}") from None
    return slurm


def _known(ctx: str, name: str, data: JSONObject, cls: type[_Description]) -> JSONObject:
    allowed = {f.name for f in fields(cls)} - {"name"}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigurationError(f"{ctx}: {name!r}: unknown field(s) {sorted(unknown)}; allowed {sorted(allowed)}")
    if not isinstance(data.get("prominent", False), bool):
        raise ConfigurationError(f"{ctx}: {name!r}: prominent must be true or false")
    return dict(data)


def _parameter(ctx: str, name: str, data: JSONObject) -> ParameterDescription:
    _check_name(ctx, name)
    data = _known(ctx, name, data, ParameterDescription)
    if data.get("type", "string") not in TYPES:
        raise ConfigurationError(f"{ctx}: parameter {name!r}: type {data.get('type')!r} is not one of {TYPES}")
    if data.get("default") is not None:
        data["default"] = str(data["default"]).lower() if isinstance(data["default"], bool) else str(data["default"])
    data["options"] = [str(o) for o in data.get("options") or []]
    for bound in ("min", "max"):
        value = data.get(bound)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or math.isnan(value) or math.isinf(value)):
            raise ConfigurationError(f"{ctx}: parameter {name!r}: {bound} must be a number, not {value!r}")
    desc = ParameterDescription(name=name, **data)
    _check_multiplicity(ctx, name, desc.multiplicity)
    if desc.default is not None:
        try:
            desc.check(desc.default)
        except BadRequest as exc:
            raise ConfigurationError(f"{ctx}: default does not fit: {exc.message}") from None
    return desc
