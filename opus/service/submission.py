"""Parsing job creation and update requests: control values and parameters checked against the
job definition, uploads streamed to disk and hashed, /store links recorded.

Plain functions with explicit arguments: ``parse_submission`` checks a request against a job
definition and the ``SubmissionRules`` (the few settings that bound a request); ``save_uploads``
and ``save_links`` write what it accepted into the job's files.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import BinaryIO

from opus.auth.identity import Identity
from opus.errors import BadRequest, OpusError, PayloadTooLarge
from opus.jobdef import JobDefinition
from opus.jobdef.model import multiplicity_range
from opus.jobdef.slurm_options import check_option, is_slurm_parameter
from opus.managers.staging import HTTP_URL
from opus.service.inputs import InputResolver
from opus.settings import Settings
from opus.storage.jobfiles import JobFiles, read_json, write_json
from opus.timeutil import parse_instant, parse_int
from opus.uws import NOT_XML_CHAR, Parameter, Phase

PARAM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}\Z")
CONTROL = {"PHASE", "RUNID", "EXECUTIONDURATION", "DESTRUCTION"}
#: Control parameters of the original OPUS that are accepted and not kept: its form sent the user's
#: guess of the duration as ``uws_quote``; here QUOTE is the server's own estimate (the definition's).
ORIGINAL_IGNORED = {"UWS_QUOTE"}
#: Control parameters asking for notifications (``opus.service.notifications``), kept as job parameters of
#: these names; a definition's own parameter of the same name takes precedence.
NOTIFICATION = {"NOTIFY", "WEBHOOK"}
#: Inputs given as entities of this server's store: {input name: {url: entity id}}.
Links = dict[str, dict[str, str]]
#: The errors of a write that found no room: the disk is full, or the owner's quota is.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class InsufficientStorage(OpusError):
    """The server has no room for what the request sends (507 Insufficient Storage)."""

    status = 507


@contextmanager
def no_space_is_507(what: str) -> Iterator[None]:
    """Turn "no space left on device" (or "quota exceeded") while writing ``what`` into a 507."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise InsufficientStorage(f"the server has no room to store {what} (its disk is full): "
                                      "try again later or with a smaller file") from None
        raise


@dataclass
class Upload:
    """A file sent as a multipart part: becomes a by-reference parameter named ``name``."""

    name: str
    stream: BinaryIO
    filename: str = ""


@dataclass
class Submission:
    """A creation or update request, split into control values and job parameters."""

    phase: Phase | None = None
    run_id: str | None = None
    execution_duration: int | None = None
    destruction: datetime | None = None
    parameters: list[Parameter] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    links: Links = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """Nothing to change: no parameter and no control value."""
        return not self.parameters and self.run_id is None and self.execution_duration is None \
            and self.destruction is None


@dataclass(frozen=True)
class SubmissionRules:
    """The settings that bound what one request may submit."""

    max_parameters: int
    max_parameter_value: int
    max_upload_size: int
    max_execution_duration: int
    max_destruction_interval: int
    slurm_partitions: tuple[str, ...] = ()
    ignore_unknown_parameters: bool = False
    mail: bool = False            # NOTIFY=email: an SMTP server is configured
    digest: bool = False          # NOTIFY=digest: MAIL_DIGEST_HOUR is set
    webhooks: bool = False        # WEBHOOK=<url>: WEBHOOKS is on and INPUT_URL_HOSTS lists hosts

    @classmethod
    def of(cls, settings: Settings) -> SubmissionRules:
        return cls(max_parameters=settings.MAX_PARAMETERS, max_parameter_value=settings.MAX_PARAMETER_VALUE,
                   max_upload_size=settings.MAX_UPLOAD_SIZE,
                   max_execution_duration=settings.MAX_EXECUTION_DURATION,
                   max_destruction_interval=settings.MAX_DESTRUCTION_INTERVAL,
                   slurm_partitions=tuple(settings.SLURM_PARTITIONS),
                   ignore_unknown_parameters=settings.IGNORE_UNKNOWN_PARAMETERS,
                   mail=bool(settings.SMTP_HOST),
                   digest=bool(settings.SMTP_HOST) and settings.MAIL_DIGEST_HOUR is not None,
                   webhooks=settings.WEBHOOKS and bool(settings.INPUT_URL_HOSTS))

    def cap_duration(self, seconds: int) -> int:
        """An execution duration within MAX_EXECUTION_DURATION (0, unlimited, is capped too)."""
        cap = self.max_execution_duration
        if cap and (seconds == 0 or seconds > cap):
            return cap
        return seconds

    def cap_destruction(self, creation: datetime, wanted: datetime) -> datetime:
        """A destruction time at most MAX_DESTRUCTION_INTERVAL after the job's creation."""
        return min(wanted, creation + timedelta(seconds=self.max_destruction_interval))


def parse_submission(jobdef: JobDefinition, form: Sequence[tuple[str, str]],
                     uploads: Sequence[Upload] = (), *, rules: SubmissionRules, inputs: InputResolver,
                     allow_phase: bool = False, identity: Identity | None = None,
                     base: str | None = None) -> Submission:
    """Split form fields into control values (names case-insensitive) and checked parameters.

    ``allow_phase``: PHASE=RUN is accepted (at creation only).  ``base``: this server's URL as the
    client sees it (recognises inputs given as /store URLs).
    """
    if len(form) + len(uploads) > rules.max_parameters:
        raise BadRequest(f"too many parameters: at most {rules.max_parameters} per request")
    parser = _Parser(jobdef, rules, allow_phase)
    for raw_name, value in form:
        parser.field(raw_name, value)
    sub = parser.sub
    checked: dict[str, str] = {}
    wrong: list[str] = []  # every bad value at once, not one per attempt (the web form shows them all too)
    for name, given in parser.values.items():
        if name in jobdef.parameters:
            try:
                checked[name] = jobdef.check_value(name, " ".join(given))
            except BadRequest as exc:
                wrong.append(exc.message)
    if wrong:
        raise BadRequest("; ".join(wrong))
    for name, given in parser.values.items():  # in the order given
        if name in checked:
            sub.parameters.append(Parameter(name, checked[name]))
        else:
            sub.parameters.append(inputs.check(jobdef.used[name], given, identity, base, sub.links))
    for up in uploads:
        parser.upload(up)
    hook = next((p.value for p in sub.parameters if p.name == "WEBHOOK"), None)
    if hook:
        inputs.check_url("WEBHOOK", hook)  # the SSRF rules of URL inputs (INPUT_URL_HOSTS)
    return sub


class _Parser:
    """The state of one ``parse_submission``: what was seen, the values of each parameter."""

    def __init__(self, jobdef: JobDefinition, rules: SubmissionRules, allow_phase: bool) -> None:
        self.jobdef = jobdef
        self.rules = rules
        self.allow_phase = allow_phase
        self.sub = Submission()
        self.declared = {n.lower(): n for n in (*jobdef.parameters, *jobdef.used)}
        self.seen: set[str] = set()
        self.values: dict[str, list[str]] = {}

    def field(self, raw_name: str, value: str) -> None:
        limit = self.rules.max_parameter_value
        if len(value) > limit or len(value.encode()) > limit:
            raise PayloadTooLarge(f"{raw_name}: values are limited to {limit} "
                                  "bytes; send larger content as a file upload")
        if NOT_XML_CHAR.search(value):
            raise BadRequest(f"{raw_name}: the value holds characters XML cannot carry; "
                             "send such content as a file (multipart upload)")
        upper = raw_name.strip().upper()
        if upper in ORIGINAL_IGNORED:
            return
        if upper in NOTIFICATION and raw_name.lower() not in self.declared:
            self._once(upper, f"{upper} given more than once")
            self.sub.parameters.append(Parameter(upper, self._notification(upper, value.strip())))
            return
        if upper in CONTROL:
            self._once(upper, f"{upper} given more than once")
            self._control(upper, value)
        elif is_slurm_parameter(raw_name):
            self._slurm_option(raw_name, value)
        else:
            name = self.declared.get(raw_name.lower())
            if name is None:
                if self.rules.ignore_unknown_parameters:
                    return
                raise BadRequest(_unknown(self.jobdef, raw_name))
            if name in self.seen and not _multiple(self.jobdef, name):
                raise BadRequest(f"parameter {name!r} given more than once (it takes one value)")
            self.seen.add(name)
            self.values.setdefault(name, []).append(value)

    def _once(self, name: str, message: str) -> None:
        if name in self.seen:
            raise BadRequest(message)
        self.seen.add(name)

    def _control(self, upper: str, value: str) -> None:
        if upper == "PHASE":
            if not self.allow_phase or value.strip().upper() != "RUN":
                raise BadRequest(f"PHASE={value!r} is not allowed here; only PHASE=RUN at creation")
            self.sub.phase = Phase.QUEUED
        elif upper == "RUNID":
            if len(value) > 64:
                raise BadRequest("RUNID: at most 64 characters")
            self.sub.run_id = value
        elif upper == "EXECUTIONDURATION":
            self.sub.execution_duration = self.rules.cap_duration(parse_int(value, "EXECUTIONDURATION", 0))
        else:
            self.sub.destruction = parse_instant(value, "DESTRUCTION")

    def _notification(self, upper: str, value: str) -> str:
        """The checked value of NOTIFY (email, digest or none) or WEBHOOK (an http(s) URL)."""
        if upper == "NOTIFY":
            mode = value.lower()
            if mode not in ("email", "digest", "none", ""):
                raise BadRequest(f"NOTIFY={value[:40]!r}: give email, digest or none")
            if mode == "email" and not self.rules.mail:
                raise BadRequest("NOTIFY=email: this server sends no e-mail (no SMTP_HOST is configured)")
            if mode == "digest" and not self.rules.digest:
                raise BadRequest("NOTIFY=digest: this server sends no daily digest (no MAIL_DIGEST_HOUR)")
            return mode or "none"
        if not value:
            return ""
        if not self.rules.webhooks:
            raise BadRequest("WEBHOOK: this server calls no webhooks (WEBHOOKS off or no INPUT_URL_HOSTS)")
        if len(value) > 2048 or not HTTP_URL.match(value):
            raise BadRequest(f"WEBHOOK: {value[:80]!r} is not an http(s) URL (at most 2048 characters)")
        return value

    def _slurm_option(self, raw_name: str, value: str) -> None:
        option = raw_name.lower()[len("slurm_"):]
        name = raw_name.lower()
        self._once(name, f"{name} given more than once")
        self.sub.parameters.append(Parameter(name, check_option(option, value, name)))
        partitions = self.rules.slurm_partitions
        if option == "partition" and partitions and value.strip() not in partitions:
            raise BadRequest(f"{name}: {value!r} is not one of the partitions offered here: "
                             + ", ".join(partitions))

    def upload(self, up: Upload) -> None:
        name = self.declared.get(up.name.lower())
        if name is None:
            if self.rules.ignore_unknown_parameters:
                return
            raise BadRequest(_unknown(self.jobdef, up.name, "upload"))
        described = self.jobdef.parameters.get(name)
        if described is not None and described.type != "file":
            raise BadRequest(f"parameter {name!r} is a {described.type}, not a file: "
                             "send it as a form value, not as a file")
        self._once(name, f"parameter {name!r} given more than once")
        self.sub.parameters.append(Parameter(name, f"param:{name}", by_reference=True))
        self.sub.uploads.append(Upload(name, up.stream, up.filename))


def _multiple(jobdef: JobDefinition, name: str) -> bool:
    desc = jobdef.parameters.get(name) or jobdef.used[name]
    return multiplicity_range(desc.multiplicity)[1] != 1


def _unknown(jobdef: JobDefinition, raw_name: str, what: str = "parameter") -> str:
    known = sorted((*jobdef.parameters, *jobdef.used), key=str.lower)
    lowered = {n.lower(): n for n in known}
    near = [lowered[n] for n in difflib.get_close_matches(raw_name[:64].lower(), list(lowered), n=2, cutoff=0.75)]
    guess = f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""
    return (f"{what} {raw_name[:64]!r}: job definition {jobdef.name!r} has no such parameter{guess}; "
            + (f"its parameters are {', '.join(known)}" if known else "it takes no parameters")
            + "; control parameters: RUNID, EXECUTIONDURATION, DESTRUCTION, PHASE and slurm_* options")


def save_links(files: JobFiles, links: Links) -> None:
    """Record the inputs given as /store URLs (the dispatcher links their files into the job)."""
    if not links:
        return
    with no_space_is_507("the job's inputs"):
        files.root.mkdir(parents=True, exist_ok=True)
        record = read_json(files.store_links, {})
        for name, urls in links.items():
            record.setdefault(name, {}).update(urls)
        write_json(files.store_links, record)


def save_uploads(files: JobFiles, uploads: Sequence[Upload], limit: int) -> None:
    """Stream each upload into the job's ``uploads/`` (at most ``limit`` bytes each), hashing it.

    PayloadTooLarge (413) over the limit, InsufficientStorage (507) when the disk is full; either
    way the upload's partial file is removed."""
    if not uploads:
        return
    with no_space_is_507("the job's uploads"):
        files.uploads.mkdir(parents=True, exist_ok=True)
    saved = {}
    for up in uploads:
        size = 0
        digest = hashlib.sha256()
        tmp = files.uploads / f".{up.name}.{secrets.token_hex(4)}.part"
        try:
            with no_space_is_507(f"the upload {up.name!r}"), open(tmp, "wb") as out:
                for block in iter(lambda: up.stream.read(1 << 20), b""):
                    size += len(block)
                    if size > limit:
                        raise PayloadTooLarge(f"upload {up.name!r} is larger than {limit} bytes")
                    digest.update(block)
                    out.write(block)
            os.replace(tmp, files.upload(up.name))  # a refused upload leaves the previous one intact
        finally:
            tmp.unlink(missing_ok=True)
        saved[up.name] = {"file_name": up.filename[:255], "size": size, "sha256": digest.hexdigest()}
    with no_space_is_507("the job's uploads"):
        record = read_json(files.inputs_record, {})
        record.update(saved)
        write_json(files.inputs_record, record)
