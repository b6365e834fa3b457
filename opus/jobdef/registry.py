"""The job definitions a server offers, their earlier versions and the proposed ones.

``JDL_DIR`` holds

* ``<name>.json`` (or ``<name>.vot``, an ActivityDescription VOTable): the live definitions.
  Admins may edit these files directly; a changed file is re-read at once;
* ``versions/<name>/<version>.json``: every version that has been live, kept when a new version is
  validated or the definition deleted, so that jobs keep running (and describing) the version they
  were created with;
* ``proposals/<name>.json`` and ``<name>.meta.json``: a definition or new version proposed by a user,
  waiting for an admin to validate it.  A pending proposal belongs to its proposer: only they may
  replace it (an admin may reject it).  An admin validates the exact document they reviewed, named
  by its digest (SHA-256 of the stored ``proposals/<name>.json``).

Every ``<name>`` fits ``model.NAME_RE`` (no dots), so no name is another's file.  A file or folder
whose name does not fit is not offered, and is logged once as an error naming it.

Changes made through the registry (propose, validate, delete) are atomic file replacements made
under a lock file, so several server processes can share the directory.
"""

from __future__ import annotations

import difflib
import errno
import fcntl
import hmac
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from opus.errors import BadRequest, ConfigurationError, Conflict, NotFound
from opus.jobdef.definition_files import InvalidDefinitionFile, load_file, parse_proposal
from opus.jobdef.model import NAME_RE, JobDefinition
from opus.jobdef.registry_files import digest as sha256_hex
from opus.jobdef.registry_files import is_proposer, mtime, now, read_meta, write_json

# Re-exported: the routes ask who proposed what.
__all__ = ["JobDefinitionRegistry", "is_proposer"]
log = logging.getLogger(__name__)
LIVE_SUFFIXES = (".json", ".vot")
_VERSION_RE = re.compile(r"^[^\x00-\x1f/\\]{1,64}\Z")
_DIGEST_RE = re.compile(r"^[0-9a-fA-F]{64}\Z")
#: stat() errors that mean "no such file" (as pathlib's is_file reads them).
_ABSENT = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})
#: Names whose candidate file paths are kept (any valid name may be asked for: bounded).
_PATHS_KEPT = 1024


class JobDefinitionRegistry:
    """Live definitions (cached by file modification time), their versions and proposals."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._cache: dict[str, tuple[float, int, JobDefinition | InvalidDefinitionFile]] = {}
        #: name -> the paths its live file may have, as strings (no pathlib work per request).
        self._paths: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self._reported: set[Path] = set()  # misnamed files already logged (once each, not per request)

    # ---- live definitions ------------------------------------------------------------------------
    def live_path(self, name: str) -> Path | None:
        """The file of the live definition ``name`` (a valid name), if there is one."""
        found = self._live_stat(name)
        return None if found is None else Path(found[0])

    def _live_stat(self, name: str) -> tuple[str, os.stat_result] | None:
        """The live file of ``name`` and its stat, in one stat() for a JSON definition: the hot path
        of every request that names a definition (the file's stat also tells whether it changed)."""
        paths = self._paths.get(name)
        if paths is None:
            if len(self._paths) >= _PATHS_KEPT:
                self._paths.clear()
            paths = self._paths[name] = tuple(os.path.join(self.directory, name + s) for s in LIVE_SUFFIXES)
        for path in paths:
            try:
                st = os.stat(path)
            except OSError as exc:
                if exc.errno in _ABSENT:
                    continue
                raise
            if stat.S_ISREG(st.st_mode):
                return path, st
        return None

    def names(self) -> list[str]:
        """The names of all live definitions (sorted); misnamed files are logged and left out."""
        if not self.directory.is_dir():
            return []
        for path in self.misnamed_files():
            if path not in self._reported:
                self._reported.add(path)
                log.error("job definition file %s is not offered: its name %r does not fit the pattern of "
                          "definition names (a letter, then letters, digits, '_' or '-'; at most 64; no dots): "
                          "rename it, and the 'name' inside", path, path.stem if path.is_file() else path.name)
        return sorted({p.stem for s in LIVE_SUFFIXES for p in self.directory.glob(f"*{s}") if NAME_RE.match(p.stem)})

    def last_changed(self) -> float:
        """When the set of live definitions last changed (POSIX time of the newest live file, JSON or
        VOTable; 0.0 when there is none), for the Last-Modified of documents that list them."""
        newest = 0.0
        for name in self.names():
            path = self.live_path(name)
            try:
                newest = max(newest, path.stat().st_mtime) if path is not None else newest
            except FileNotFoundError:  # deleted meanwhile
                continue
        return newest

    def misnamed_files(self) -> list[Path]:
        """Definition files in the directory (and folders in ``versions/``) whose name does not fit."""
        found = [p for s in LIVE_SUFFIXES for p in self.directory.glob(f"*{s}")
                 if not p.name.startswith(".") and not NAME_RE.match(p.stem)]
        versions = self.directory / "versions"
        if versions.is_dir():
            found += [p for p in versions.iterdir() if p.is_dir() and not NAME_RE.match(p.name)]
        return sorted(found)

    def unknown(self, name: str) -> NotFound:
        """The NotFound for a name no definition has, with the nearest names (a newcomer's typo, or
        the wrong case: names are case-sensitive) and where the list is."""
        said = f"no job definition named {str(name)[:64]!r}"
        names = self.names()
        near = [n for n in names if n.lower() == str(name).lower()] or \
            difflib.get_close_matches(str(name)[:64], names, n=3, cutoff=0.75)
        hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
        return NotFound(f"{said}{hint} (GET /jdl lists this server's definitions)")

    def get(self, name: str, version: str | None = None) -> JobDefinition:
        """The live definition ``name``; with ``version``, that version (live or kept); else NotFound."""
        if not NAME_RE.match(name or ""):
            raise self.unknown(name)
        found = self._live_stat(name)
        live = self._load(*found, name) if found is not None else None
        if version is None or (live is not None and live.version == version):
            if live is None:
                if self.versions(name):
                    raise NotFound(f"the job definition {name!r} was deleted; its jobs remain readable")
                raise self.unknown(name)
            return live
        if not _VERSION_RE.match(version):
            raise NotFound(f"no version {version[:64]!r} of the job definition {name!r}")
        kept = self._version_path(name, version)
        try:
            kept_stat = os.stat(kept)
        except OSError:
            kept_stat = None
        if kept_stat is not None and stat.S_ISREG(kept_stat.st_mode):
            return self._load(str(kept), kept_stat, name)
        if live is not None:
            # Edited in place without a new version number: the live file is all there is.
            log.warning("job definition %s version %s is not kept; using the live version %s",
                        name, version, live.version)
            return live
        raise NotFound(f"no version {version!r} of the job definition {name!r}")

    def _valid_live(self, name: str) -> JobDefinition | None:
        found = self._live_stat(name)
        try:
            return self._load(*found, name) if found is not None else None
        except InvalidDefinitionFile:
            return None

    def known(self, name: str) -> bool:
        """True if ``name`` is live or was (its jobs can still be listed)."""
        return bool(NAME_RE.match(name or "")) and (self._live_stat(name) is not None or bool(self.versions(name)))

    def all(self) -> list[JobDefinition]:
        """Every valid live definition; an invalid file is logged and left out."""
        out = []
        for name in self.names():
            try:
                out.append(self.get(name))
            except (ConfigurationError, NotFound) as exc:
                log.error("job definition %s is invalid: %s", name, exc)
        return out

    def _load(self, where: str, st: os.stat_result, name: str) -> JobDefinition:
        """The definition in file ``where`` (whose stat is ``st``): parsed again only when it changed."""
        cached = self._cache.get(where)
        if cached is None or cached[:2] != (st.st_mtime, st.st_size):
            path = Path(where)
            with self._lock:
                found: JobDefinition | InvalidDefinitionFile
                try:
                    found = load_file(path)
                    if found.name != name:
                        raise ConfigurationError(f"its 'name' is {found.name!r}, the file name says {name!r}")
                except ConfigurationError as exc:  # logged once per change of the file, not per request
                    reason = str(exc).removeprefix(f"{path}: ")
                    log.error("job definition file %s cannot be used: %s", path, reason)
                    # What is wrong with the content, for clients too; never where the file is.
                    hidden = reason.startswith("cannot read") or any(
                        str(where) in reason for where in (self.directory, self.directory.resolve()))
                    shown = "" if hidden else f": {reason}"
                    found = InvalidDefinitionFile(f"the job definition {name!r} cannot be used now: its file is "
                                                  f"invalid{shown} (admins see the file on the admin page and "
                                                  "with `opus check`)", path, reason)
                cached = (st.st_mtime, st.st_size, found)
                self._cache[where] = cached
        found = cached[2]
        if isinstance(found, InvalidDefinitionFile):  # a new instance: the kept one is shared by threads
            raise InvalidDefinitionFile(found.message, found.path, found.reason)
        return found

    # ---- versions ----------------------------------------------------------------------------------
    def _version_path(self, name: str, version: str) -> Path:
        return self.directory / "versions" / name / f"{quote(version, safe='')}.json"

    def versions(self, name: str) -> list[dict[str, Any]]:
        """The kept versions of ``name``, oldest first: [{version, kept}] (kept: when it was archived)."""
        folder = self.directory / "versions" / name
        if not NAME_RE.match(name or "") or not folder.is_dir():
            return []
        found: list[tuple[float, dict[str, Any]]] = []
        for path in folder.glob("*.json"):
            try:
                version = json.loads(path.read_text(encoding="utf-8")).get("version")
            except (OSError, ValueError, AttributeError):
                continue
            found.append((path.stat().st_mtime, {"version": str(version), "kept": mtime(path)}))
        found.sort(key=lambda item: item[0])
        return [entry for _, entry in found]

    def _keep(self, jobdef: JobDefinition) -> None:
        path = self._version_path(jobdef.name, jobdef.version)
        if not path.exists():
            write_json(path, jobdef.to_dict())

    # ---- proposals ---------------------------------------------------------------------------------
    def _proposal_paths(self, name: str) -> tuple[Path, Path]:
        folder = self.directory / "proposals"
        return folder / f"{name}.json", folder / f"{name}.meta.json"

    def propose(self, jobdef: JobDefinition, proposer: str, proposer_key: str | None = None) -> dict[str, Any]:
        """Store ``jobdef`` as the pending proposal for its name, replacing the proposer's own earlier
        one; Conflict if someone else's proposal of that name is pending.  Returns its record, with
        the digest an admin validates.  ``proposer_key``: the account (``Identity.owner_key``, never
        reused) that owns the proposal; ``proposer`` is its name, for people."""
        self._check_names(jobdef)
        meta = {"name": jobdef.name, "version": jobdef.version, "proposer": proposer, "proposed": now()}
        if proposer_key is not None:
            meta["proposer_key"] = proposer_key
        with self._locked():
            # Checked under the lock: two users proposing one name at once cannot both win.
            self._check_proposable(jobdef, proposer, proposer_key)
            doc, meta_path = self._proposal_paths(jobdef.name)
            write_json(doc, jobdef.to_dict())
            write_json(meta_path, meta)
            return {**meta, "digest": sha256_hex(doc.read_bytes())}

    def check_proposal(self, jobdef: JobDefinition, proposer: str, proposer_key: str | None = None) -> dict[str, Any]:
        """What ``propose`` would answer, storing nothing: the BadRequest or Conflict it would raise,
        else the name and version it would propose."""
        self._check_names(jobdef)
        with self._locked():
            self._check_proposable(jobdef, proposer, proposer_key)
        return {"name": jobdef.name, "version": jobdef.version, "proposer": proposer}

    @staticmethod
    def _check_names(jobdef: JobDefinition) -> None:
        if not NAME_RE.match(jobdef.name):  # from_dict checks too: here because the name becomes a file name
            raise BadRequest(f"job definition name {jobdef.name[:64]!r} is not valid")
        if not _VERSION_RE.match(jobdef.version):
            raise BadRequest(f"version {jobdef.version[:64]!r}: 1 to 64 characters, no '/' or control characters")

    def _check_proposable(self, jobdef: JobDefinition, proposer: str, proposer_key: str | None) -> None:
        """Under the lock: the version is new, and no one else's proposal holds the name."""
        self._check_new_version(jobdef)
        pending = read_meta(self._proposal_paths(jobdef.name)[1])
        if pending is not None and not is_proposer(pending, proposer, proposer_key):
            # Without this, another user could replace a proposal after an admin read it.
            raise Conflict(f"a proposal named {jobdef.name!r} is already waiting for validation, and it is "
                           "not yours: choose another name (its proposer may withdraw it, or an admin "
                           "reject it)")

    def _check_new_version(self, jobdef: JobDefinition) -> None:
        live = self._valid_live(jobdef.name)  # a broken live file may be replaced by any version
        if live is not None and live.version == jobdef.version:
            raise Conflict(f"version {jobdef.version!r} of {jobdef.name!r} is live: give the new one another version")
        if self._version_path(jobdef.name, jobdef.version).exists():
            raise Conflict(f"version {jobdef.version!r} of {jobdef.name!r} existed before: "
                           "give the new one another version")

    def proposals(self) -> list[dict[str, Any]]:
        """The pending proposals' records: name, version, proposer, proposed (instant) and digest."""
        folder = self.directory / "proposals"
        out = []
        for path in sorted(folder.glob("*.meta.json")) if folder.is_dir() else []:
            name = path.name[:-len(".meta.json")]
            if not NAME_RE.match(name):
                log.error("proposal record %s is ignored: %r is not a valid definition name", path, name)
                continue
            meta = read_meta(path)
            try:
                data = (folder / f"{name}.json").read_bytes()
            except OSError:
                data = None
            if meta is None or data is None:
                log.error("unreadable proposal %s", path)
                continue
            out.append({**meta, "name": name, "digest": sha256_hex(data)})
        return out

    def proposal(self, name: str) -> tuple[JobDefinition, dict[str, Any]]:
        """The proposed definition ``name`` and its record (with its digest); else NotFound."""
        data, meta = self._proposal_bytes(name)
        return parse_proposal(data, self._proposal_paths(name)[0], name), {**meta, "digest": sha256_hex(data)}

    def _proposal_bytes(self, name: str) -> tuple[bytes, dict[str, Any]]:
        if not NAME_RE.match(name or ""):
            raise NotFound(f"no proposal named {str(name)[:64]!r}")
        doc, meta_path = self._proposal_paths(name)
        meta = read_meta(meta_path)
        try:
            data = doc.read_bytes()
        except OSError:
            data = None
        if meta is None or data is None:
            raise NotFound(f"no proposed definition named {name!r}")
        return data, meta

    def withdraw(self, name: str) -> None:
        self.proposal(name)
        with self._locked():
            for path in reversed(self._proposal_paths(name)):  # the record first: no orphan record
                path.unlink(missing_ok=True)

    def validate(self, name: str, digest: str) -> JobDefinition:
        """Make the proposal ``name`` live if it still is the document whose ``digest`` the admin
        was shown (else Conflict); the version it replaces is kept."""
        if not isinstance(digest, str) or not _DIGEST_RE.match(digest.strip()):
            raise BadRequest("validating a proposal needs the 'digest' of the document you reviewed: the "
                             "64 hexadecimal digits of its SHA-256, as shown with the proposal")
        with self._locked():
            data, _meta = self._proposal_bytes(name)
            if not hmac.compare_digest(sha256_hex(data), digest.strip().lower()):
                raise Conflict(f"the proposal {name!r} changed since you looked at it (its digest is not the "
                               "one you sent): review it again, then validate its new digest")
            # The bytes just hashed are the ones made live: no second read between check and use.
            jobdef = parse_proposal(data, self._proposal_paths(name)[0], name)
            self._check_new_version(jobdef)
            path = self.live_path(name)
            if path is not None:
                kept = self._valid_live(name)
                if kept is not None:
                    self._keep(kept)
            self._keep(jobdef)
            live = self.directory / f"{name}.json"
            write_json(live, jobdef.to_dict())
            if path is not None and path != live:
                path.unlink()
            for p in reversed(self._proposal_paths(name)):
                p.unlink(missing_ok=True)
        log.info("job definition %s version %s is live", name, jobdef.version)
        return jobdef

    def delete(self, name: str) -> JobDefinition | None:
        """Stop offering ``name``; its last version is kept (its jobs remain readable).  A live file
        that cannot be read as a definition is removed as it is (None: nothing to keep)."""
        with self._locked():
            path = self.live_path(name)
            jobdef = self._valid_live(name) if path is not None else self.get(name)  # NotFound when none
            if jobdef is not None:
                self._keep(jobdef)
            if path is not None:
                path.unlink()
        log.info("job definition %s deleted (%s)", name, f"version {jobdef.version} kept" if jobdef else "invalid file")
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
