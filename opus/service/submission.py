"""Parsing job creation and update requests: control values and parameters checked against the
job definition, uploads streamed to disk and hashed, /store links recorded.

``SubmissionParsing`` is a part of ``JobList`` (which it is mixed into), kept apart for size: it
uses the job list's ``settings`` and ``inputs`` (an ``opus.service.inputs.InputResolver``).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from opus.errors import BadRequest, PayloadTooLarge
from opus.jobdef import JobDefinition
from opus.jobdef.model import multiplicity_range
from opus.storage.jobfiles import JobFiles, read_json, write_json
from opus.jobdef.slurm_options import check_option, is_slurm_parameter
from opus.auth.identity import Identity
from opus.timeutil import parse_instant, parse_int
from opus.uws import NOT_XML_CHAR, Parameter, Phase
PARAM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}\Z")
CONTROL = {"PHASE", "RUNID", "EXECUTIONDURATION", "DESTRUCTION"}

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
    parameters: list[Parameter] | None = None
    uploads: list[Upload] | None = None
    #: Inputs given as entities of this server's store: {input name: {url: entity id}}.
    links: dict | None = None


class SubmissionParsing:
    """Input parsing for JobList (see the module's docstring)."""

    # ---- input parsing -------------------------------------------------------------------------
    def parse(self, jobdef: JobDefinition, form: Sequence[tuple[str, str]], uploads: Sequence[Upload] = (),
              allow_phase: bool = False, identity: Identity | None = None, base: str | None = None) -> Submission:
        """Split form fields into control values (names case-insensitive) and checked parameters.

        ``base``: this server's URL as the client sees it (recognises inputs given as /store URLs).
        """
        sub = Submission(parameters=[], uploads=[], links={})
        declared = {n.lower(): n for n in (*jobdef.parameters, *jobdef.used)}
        seen: set[str] = set()
        values: dict[str, list[str]] = {}
        if len(form) + len(uploads) > self.settings.MAX_PARAMETERS:
            raise BadRequest(f"too many parameters: at most {self.settings.MAX_PARAMETERS} per request")
        for raw_name, value in form:
            if len(value) > self.settings.MAX_PARAMETER_VALUE or \
                    len(value.encode()) > self.settings.MAX_PARAMETER_VALUE:
                raise PayloadTooLarge(f"{raw_name}: values are limited to {self.settings.MAX_PARAMETER_VALUE} "
                                      "bytes; send larger content as a file upload")
            if NOT_XML_CHAR.search(value):
                raise BadRequest(f"{raw_name}: the value holds characters XML cannot carry; "
                                 "send such content as a file (multipart upload)")
            upper = raw_name.strip().upper()
            if upper in CONTROL:
                if upper in seen:
                    raise BadRequest(f"{upper} given more than once")
                seen.add(upper)
                if upper == "PHASE":
                    phase = value.strip().upper()
                    if not allow_phase or phase != "RUN":
                        raise BadRequest(f"PHASE={value!r} is not allowed here; only PHASE=RUN at creation")
                    sub.phase = Phase.QUEUED
                elif upper == "RUNID":
                    if len(value) > 64:
                        raise BadRequest("RUNID: at most 64 characters")
                    sub.run_id = value
                elif upper == "EXECUTIONDURATION":
                    sub.execution_duration = self.cap_duration(parse_int(value, "EXECUTIONDURATION", 0))
                else:
                    sub.destruction = parse_instant(value, "DESTRUCTION")
                continue
            if is_slurm_parameter(raw_name):
                option = raw_name.lower()[len("slurm_"):]
                name = raw_name.lower()
                if name in seen:
                    raise BadRequest(f"{name} given more than once")
                seen.add(name)
                sub.parameters.append(Parameter(name, check_option(option, value, name)))
                if option == "partition" and self.settings.SLURM_PARTITIONS and \
                        value.strip() not in self.settings.SLURM_PARTITIONS:
                    raise BadRequest(f"{name}: {value!r} is not one of the partitions offered here: "
                                     + ", ".join(self.settings.SLURM_PARTITIONS))
                continue
            name = declared.get(raw_name.lower())
            if name is None:
                if self.settings.IGNORE_UNKNOWN_PARAMETERS:
                    continue
                raise BadRequest(self._unknown(jobdef, raw_name))
            if name in seen and not self._multiple(jobdef, name):
                raise BadRequest(f"parameter {name!r} given more than once (it takes one value)")
            seen.add(name)
            values.setdefault(name, []).append(value)
        for name, given in values.items():
            if name in jobdef.parameters:
                sub.parameters.append(Parameter(name, jobdef.check_value(name, " ".join(given))))
            else:
                sub.parameters.append(self.inputs.check(jobdef.used[name], given, identity, base, sub.links))
        for up in uploads:
            name = declared.get(up.name.lower())
            if name is None:
                if self.settings.IGNORE_UNKNOWN_PARAMETERS:
                    continue
                raise BadRequest(self._unknown(jobdef, up.name, "upload"))
            if name in jobdef.parameters and jobdef.parameters[name].type != "file":
                raise BadRequest(f"parameter {name!r} is a {jobdef.parameters[name].type}, not a file: "
                                 "send it as a form value, not as a file")
            if name in seen:
                raise BadRequest(f"parameter {name!r} given more than once")
            seen.add(name)
            sub.parameters.append(Parameter(name, f"param:{name}", by_reference=True))
            sub.uploads.append(Upload(name, up.stream, up.filename))
        return sub

    @staticmethod
    def _multiple(jobdef: JobDefinition, name: str) -> bool:
        desc = jobdef.parameters.get(name) or jobdef.used.get(name)
        return multiplicity_range(desc.multiplicity)[1] != 1

    @staticmethod
    def _unknown(jobdef: JobDefinition, raw_name: str, what: str = "parameter") -> str:
        known = sorted((*jobdef.parameters, *jobdef.used), key=str.lower)
        return (f"{what} {raw_name[:64]!r}: job definition {jobdef.name!r} has no such parameter; "
                + (f"its parameters are {', '.join(known)}" if known else "it takes no parameters")
                + "; control parameters: RUNID, EXECUTIONDURATION, DESTRUCTION, PHASE and slurm_* options")

    def cap_duration(self, seconds: int) -> int:
        cap = self.settings.MAX_EXECUTION_DURATION
        if cap and (seconds == 0 or seconds > cap):
            return cap
        return seconds

    def cap_destruction(self, creation: datetime, wanted: datetime) -> datetime:
        latest = creation + timedelta(seconds=self.settings.MAX_DESTRUCTION_INTERVAL)
        return min(wanted, latest)

    @staticmethod
    def _save_links(files: JobFiles, links: dict | None) -> None:
        if not links:
            return
        files.root.mkdir(parents=True, exist_ok=True)
        record = read_json(files.store_links, {})
        for name, urls in links.items():
            record.setdefault(name, {}).update(urls)
        write_json(files.store_links, record)

    def _save_uploads(self, files: JobFiles, uploads: Sequence[Upload]) -> None:
        if not uploads:
            return
        files.uploads.mkdir(parents=True, exist_ok=True)
        limit = self.settings.MAX_UPLOAD_SIZE
        saved = {}
        for up in uploads:
            size = 0
            digest = hashlib.sha256()
            tmp = files.uploads / f".{up.name}.{secrets.token_hex(4)}.part"
            try:
                with open(tmp, "wb") as out:
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
        record = read_json(files.inputs_record, {})
        record.update(saved)
        write_json(files.inputs_record, record)
