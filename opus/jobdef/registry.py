"""The job definitions a server offers, their earlier versions and the proposed ones.

``JDL_DIR`` holds

* ``<name>.json`` (or ``<name>.vot``, an ActivityDescription VOTable): the live definitions.
  Admins may edit these files directly; a changed file is re-read at once;
* ``versions/<name>/<version>.json``: every version that has been live, kept when a new version is
  validated or the definition deleted, so that jobs keep running (and describing) the version they
  were created with;
* ``proposals/<name>.json`` and ``<name>.meta.json``: a definition or new version proposed by a user,
  waiting for an admin to validate it.

Changes made through the registry (propose, validate, delete) are atomic file replacements made
under a lock file, so several server processes can share the directory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from ..errors import BadRequest, ConfigurationError, Conflict, NotFound
from .model import NAME_RE, JobDefinition

log = logging.getLogger(__name__)
LIVE_SUFFIXES = (".json", ".vot")
_VERSION_RE = re.compile(r"^[^\x00-\x1f/\\]{1,64}\Z")


class JobDefinitionRegistry:
    """Live definitions (cached by file modification time), their versions and proposals."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._cache: dict[Path, tuple[float, int, JobDefinition]] = {}
        self._lock = threading.Lock()

    # ---- live definitions ------------------------------------------------------------------------
    def _live_path(self, name: str) -> Path | None:
        for suffix in LIVE_SUFFIXES:
            path = self.directory / f"{name}{suffix}"
            if path.is_file():
                return path
        return None

    def names(self) -> list[str]:
        """The names of all live definitions (sorted)."""
        if not self.directory.is_dir():
            return []
        return sorted({p.stem for s in LIVE_SUFFIXES for p in self.directory.glob(f"*{s}")
                       if NAME_RE.match(p.stem) and not p.name.endswith(".meta.json")})

    def get(self, name: str, version: str | None = None) -> JobDefinition:
        """The live definition ``name``; with ``version``, that version (live or kept); else NotFound."""
        if not NAME_RE.match(name or ""):
            raise NotFound(f"no job definition named {str(name)[:64]!r}")
        path = self._live_path(name)
        live = self._load(path, name) if path is not None else None
        if version is None or (live is not None and live.version == version):
            if live is None:
                if self.versions(name):
                    raise NotFound(f"the job definition {name!r} was deleted; its jobs remain readable")
                raise NotFound(f"no job definition named {name!r}")
            return live
        if not _VERSION_RE.match(version):
            raise NotFound(f"no version {version[:64]!r} of the job definition {name!r}")
        kept = self._version_path(name, version)
        if kept.is_file():
            return self._load(kept, name)
        if live is not None:
            # Edited in place without a new version number: the live file is all there is.
            log.warning("job definition %s version %s is not kept; using the live version %s",
                        name, version, live.version)
            return live
        raise NotFound(f"no version {version!r} of the job definition {name!r}")

    def known(self, name: str) -> bool:
        """True if ``name`` is live or was (its jobs can still be listed)."""
        return bool(NAME_RE.match(name or "")) and (self._live_path(name) is not None or bool(self.versions(name)))

    def all(self) -> list[JobDefinition]:
        """Every valid live definition; an invalid file is logged and left out."""
        out = []
        for name in self.names():
            try:
                out.append(self.get(name))
            except (ConfigurationError, NotFound) as exc:
                log.error("job definition %s is invalid: %s", name, exc)
        return out

    def _load(self, path: Path, name: str) -> JobDefinition:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise NotFound(f"no job definition named {name!r}") from None
        cached = self._cache.get(path)
        if cached and cached[:2] == (st.st_mtime, st.st_size):
            return cached[2]
        with self._lock:
            jobdef = load_file(path)
            if jobdef.name != name:
                raise ConfigurationError(f"{path}: 'name' is {jobdef.name!r}, the file name says {name!r}")
            self._cache[path] = (st.st_mtime, st.st_size, jobdef)
            return jobdef

    # ---- versions ----------------------------------------------------------------------------------
    def _version_path(self, name: str, version: str) -> Path:
        return self.directory / "versions" / name / f"{quote(version, safe='')}.json"

    def versions(self, name: str) -> list[dict]:
        """The kept versions of ``name``, oldest first: [{version, kept}] (kept: when it was archived)."""
        folder = self.directory / "versions" / name
        if not NAME_RE.match(name or "") or not folder.is_dir():
            return []
        out = []
        for path in folder.glob("*.json"):
            try:
                version = json.loads(path.read_text(encoding="utf-8")).get("version")
            except (OSError, ValueError, AttributeError):
                continue
            out.append({"version": str(version), "kept": _mtime(path), "_t": path.stat().st_mtime})
        out.sort(key=lambda v: v.pop("_t"))
        return out

    def _keep(self, jobdef: JobDefinition) -> None:
        path = self._version_path(jobdef.name, jobdef.version)
        if not path.exists():
            _write_json(path, jobdef.to_dict())

    # ---- proposals ---------------------------------------------------------------------------------
    def _proposal_paths(self, name: str) -> tuple[Path, Path]:
        folder = self.directory / "proposals"
        return folder / f"{name}.json", folder / f"{name}.meta.json"

    def propose(self, jobdef: JobDefinition, proposer: str) -> dict:
        """Store ``jobdef`` as the pending proposal for its name (replacing an earlier one)."""
        if not _VERSION_RE.match(jobdef.version):
            raise BadRequest(f"version {jobdef.version[:64]!r}: 1 to 64 characters, no '/' or control characters")
        self._check_new_version(jobdef)
        meta = {"name": jobdef.name, "version": jobdef.version, "proposer": proposer, "proposed": _now()}
        with self._locked():
            doc, meta_path = self._proposal_paths(jobdef.name)
            _write_json(doc, jobdef.to_dict())
            _write_json(meta_path, meta)
        return meta

    def _check_new_version(self, jobdef: JobDefinition) -> None:
        path = self._live_path(jobdef.name)
        if path is not None and self._load(path, jobdef.name).version == jobdef.version:
            raise Conflict(f"version {jobdef.version!r} of {jobdef.name!r} is live: give the new one another version")
        if self._version_path(jobdef.name, jobdef.version).exists():
            raise Conflict(f"version {jobdef.version!r} of {jobdef.name!r} existed before: "
                           "give the new one another version")

    def proposals(self) -> list[dict]:
        folder = self.directory / "proposals"
        out = []
        for path in sorted(folder.glob("*.meta.json")) if folder.is_dir() else []:
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                log.error("unreadable proposal record %s", path)
        return out

    def proposal(self, name: str) -> tuple[JobDefinition, dict]:
        if not NAME_RE.match(name or ""):
            raise NotFound(f"no proposal named {str(name)[:64]!r}")
        doc, meta_path = self._proposal_paths(name)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise NotFound(f"no proposed definition named {name!r}") from None
        return load_file(doc), meta

    def withdraw(self, name: str) -> None:
        self.proposal(name)
        with self._locked():
            for path in self._proposal_paths(name):
                path.unlink(missing_ok=True)

    def validate(self, name: str) -> JobDefinition:
        """Make the proposal ``name`` live; the version it replaces is kept."""
        with self._locked():
            jobdef, _meta = self.proposal(name)
            self._check_new_version(jobdef)
            path = self._live_path(name)
            if path is not None:
                self._keep(self._load(path, name))
            self._keep(jobdef)
            live = self.directory / f"{name}.json"
            _write_json(live, jobdef.to_dict())
            if path is not None and path != live:
                path.unlink()
            for p in self._proposal_paths(name):
                p.unlink(missing_ok=True)
        log.info("job definition %s version %s is live", name, jobdef.version)
        return jobdef

    def delete(self, name: str) -> JobDefinition:
        """Stop offering ``name``; its last version is kept (its jobs remain readable)."""
        with self._locked():
            jobdef = self.get(name)
            self._keep(jobdef)
            path = self._live_path(name)
            if path is not None:
                path.unlink()
        log.info("job definition %s deleted (version %s kept)", name, jobdef.version)
        return jobdef

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".registry.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_file(path: Path) -> JobDefinition:
    """Read one definition file: JSON, or an ActivityDescription VOTable (``.vot``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc}") from None
    try:
        if path.suffix == ".vot":
            from .formats import read_definition

            return read_definition(data, "votable")
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise ConfigurationError(f"not a JSON job definition: {exc}") from None
        return JobDefinition.from_dict(parsed)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None
