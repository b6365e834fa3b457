"""Reading one stored definition file (live, kept or proposed), and the error a broken one raises."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from opus.errors import ConfigurationError, ServiceUnavailable
from opus.jobdef.model import JobDefinition

log = logging.getLogger("opus.jobdef.registry")


class InvalidDefinitionFile(ServiceUnavailable, ConfigurationError):
    """A stored definition that cannot be used (unreadable, not JSON, invalid): clients get 503 with
    ``message``, which names no file; ``path`` and ``reason`` are for admins (``opus check``, the
    admin page) and the log.  A ConfigurationError too, so that callers that skip a broken
    definition (job pages of old jobs, the dispatcher) still do."""

    def __init__(self, message: str, path: Path, reason: str):
        super().__init__(message)
        self.path = path
        self.reason = reason


def parse_proposal(data: bytes, path: Path, name: str) -> JobDefinition:
    """The stored proposal ``name`` (checked when proposed: invalid only if edited by hand)."""
    try:
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise ConfigurationError(f"not a JSON job definition: {exc}") from None
        jobdef = JobDefinition.from_dict(parsed)
        if jobdef.name != name:
            raise ConfigurationError(f"the document's 'name' is {jobdef.name!r}")
        return jobdef
    except ConfigurationError as exc:
        log.error("proposal file %s cannot be used: %s", path, exc)
        raise InvalidDefinitionFile(f"the proposal {name!r} cannot be used: its stored document is invalid "
                                    "(see the server log)", path, str(exc)) from None


def load_file(path: Path) -> JobDefinition:
    """Read one definition file: JSON, or an ActivityDescription VOTable (``.vot``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc}") from None
    try:
        if path.suffix == ".vot":
            from opus.jobdef.formats import read_definition
            return read_definition(data, "votable")
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise ConfigurationError(f"not a JSON job definition: {exc}") from None
        return JobDefinition.from_dict(parsed)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None
