"""The job definitions a server offers, read from a directory of JSON files."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from ..errors import ConfigurationError, NotFound
from .model import NAME_RE, JobDefinition

log = logging.getLogger(__name__)


class JobDefinitionRegistry:
    """Loads ``<dir>/<name>.json`` definitions; re-reads a file when it changes on disk."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._cache: dict[str, tuple[float, JobDefinition]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """The names of all definitions present (sorted)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json") if NAME_RE.match(p.stem))

    def get(self, name: str) -> JobDefinition:
        """The definition called ``name``, or NotFound (404)."""
        if not NAME_RE.match(name or ""):
            raise NotFound(f"no job definition named {name!r}")
        path = self.directory / f"{name}.json"
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            raise NotFound(f"no job definition named {name!r}") from None
        cached = self._cache.get(name)
        if cached and cached[0] == mtime:
            return cached[1]
        with self._lock:
            jobdef = load_file(path)
            if jobdef.name != name:
                raise ConfigurationError(f"{path}: 'name' is {jobdef.name!r}, the file name says {name!r}")
            self._cache[name] = (mtime, jobdef)
            return jobdef

    def all(self) -> list[JobDefinition]:
        """Every valid definition; an invalid file is logged and left out."""
        out = []
        for name in self.names():
            try:
                out.append(self.get(name))
            except ConfigurationError as exc:
                log.error("job definition %s is invalid: %s", name, exc)
        return out


def load_file(path: Path) -> JobDefinition:
    """Read one JSON definition file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path}: cannot read a JSON job definition: {exc}") from None
    try:
        return JobDefinition.from_dict(data)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None
