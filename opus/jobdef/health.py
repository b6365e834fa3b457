"""Whether each definition in JDL_DIR can run here: for ``opus check`` and the admin page.

A definition is ``ok``; ``invalid`` (its file cannot be read or is not a valid definition: clients
get 503 for it); ``misnamed`` (its file name is not a definition name: not offered at all); or
``unmet`` (valid, but something it declares in ``needs`` is not on this host: its jobs would fail).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from opus.errors import NotFound
from opus.jobdef import needs
from opus.jobdef.definition_files import InvalidDefinitionFile
from opus.jobdef.registry import JobDefinitionRegistry

OK, INVALID, MISNAMED, UNMET = "ok", "invalid", "misnamed", "unmet"


@dataclass
class DefinitionHealth:
    """One definition file's state, with what is wrong (for admins: the file is named)."""

    name: str
    file: str
    state: str
    version: str = ""
    problems: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return asdict(self)


def report(registry: JobDefinitionRegistry) -> list[DefinitionHealth]:
    """Every live definition file's health, by name, then the misnamed files."""
    out = []
    for name in registry.names():
        path = registry.live_path(name)
        try:
            jobdef = registry.get(name)
        except InvalidDefinitionFile as exc:
            out.append(DefinitionHealth(name, str(exc.path), INVALID, problems=[exc.reason]))
            continue
        except NotFound:  # removed meanwhile
            continue
        missing = needs.missing(jobdef.needs)
        out.append(DefinitionHealth(name, str(path or ""), UNMET if missing else OK, jobdef.version,
                                    [f"needs {m}, which is not found on this host" for m in missing]))
    for path in registry.misnamed_files():
        out.append(DefinitionHealth(path.stem if path.is_file() else path.name, str(path), MISNAMED, problems=[
            "not offered: a definition name is a letter, then letters, digits, '_' or '-' (at most 64; no dots)"]))
    return out
