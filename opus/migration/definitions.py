"""The original's ``jdl/`` tree into ``JDL_DIR``: live definitions and every saved version.

The original kept, per format directory (``votable/``, ``json/``, ``wadl/``), the live file
(``<name>_vot.xml``, ``<name>.json``, ``<name>.wadl``) with its script in ``scripts/<name>.sh``,
and each replaced or deleted version in ``saved/<name>_v<version>_<time>[_DELETED]<ext>`` with its
script in ``scripts/saved/``.  ``tmp/`` held proposals not yet validated: not imported (reported).
Each is read by ``opus.jobdef.importing.import_definition``; its warnings go to the report.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from opus.errors import ConfigurationError
from opus.jobdef.importing import import_definition
from opus.jobdef.model import NAME_RE, JobDefinition
from opus.migration.report import Report
from opus.migration.site import OriginalSite, files_in

#: format directory -> (extension of its files, format name for import_definition)
FORMATS = {"votable": ("_vot.xml", "votable"), "json": (".json", "json"), "wadl": (".wadl", "wadl")}
_SAVED = re.compile(r"^(?P<name>.+?)_v(?P<version>.*)_(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?P<deleted>_DELETED)?\Z")


@dataclass
class Found:
    """One definition file of the original, read."""

    path: Path
    jobdef: JobDefinition
    saved_at: datetime | None  # None: the live file


def _script(site: OriginalSite, stem: str, saved: bool) -> str | None:
    path = site.jdl / "scripts" / ("saved" if saved else "") / f"{stem}.sh"
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def _read(site: OriginalSite, path: Path, fmt: str, stem: str, saved: bool, report: Report) -> JobDefinition | None:
    try:
        imported = import_definition(path.read_bytes(), fmt=fmt, filename=path.name,
                                     script=_script(site, stem, saved))
    except (ConfigurationError, OSError) as exc:
        report.fail(f"definition file {path}: {exc}")
        return None
    for warning in imported.warnings:
        report.note(f"definition file {path.name}: {warning}")
    return imported.definition


def read_all(site: OriginalSite, report: Report) -> list[Found]:
    """Every live and saved definition of the original, oldest saved versions first."""
    found: list[Found] = []
    for folder, (ext, fmt) in FORMATS.items():
        base = site.jdl / folder
        for path in files_in(base / "tmp", f"*{ext}"):
            report.fail(f"definition proposal {path}: a proposal the original's admin never validated; "
                        "propose it again here (POST /jdl) if it is wanted")
        for path in files_in(base / "saved", f"*{ext}"):
            stem = path.name[:-len(ext)]
            match = _SAVED.match(stem)
            if match is None:
                report.fail(f"saved definition {path}: its name does not follow <name>_v<version>_<time>{ext}")
                continue
            jobdef = _read(site, path, fmt, stem, True, report)
            if jobdef is not None:
                found.append(Found(path, jobdef, datetime.fromisoformat(match["time"])))
        for path in files_in(base, f"*{ext}"):
            jobdef = _read(site, path, fmt, path.name[:-len(ext)], False, report)
            if jobdef is not None:
                found.append(Found(path, jobdef, None))
    found.sort(key=lambda f: (f.saved_at is None, f.saved_at or datetime.min))
    return found


def _write(path: Path, data: dict[str, object], mtime: float | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.migrate.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _same(path: Path, data: dict[str, object]) -> bool | None:
    """None: no file; else whether it holds ``data``."""
    if not path.is_file():
        return None
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(data)))
    except (OSError, ValueError):
        return False


def _place(path: Path, data: dict[str, object], what: str, mtime: float | None, report: Report) -> None:
    same = _same(path, data)
    if same:
        report.skip(what)
    elif same is None:
        if not report.dry_run:
            _write(path, data, mtime)
        report.did("definition files", f"{what}: {path}")
    else:
        report.fail(f"{what}: {path} exists with other content; left as it is (remove it and run again "
                    "to take the original's)")


@dataclass
class Catalog:
    """What was imported: the live version of each definition, and when each version became live
    (the original saved a replaced file under the time it had been written: when it went live)."""

    live: dict[str, str]
    history: dict[str, list[tuple[datetime, str]]]

    def version_at(self, name: str, moment: datetime) -> str | None:
        """The version of ``name`` that was live at ``moment`` (naive local time), as far as known."""
        times = sorted(self.history.get(name, []))
        before = [version for when, version in times if when <= moment]
        if before:
            return before[-1]
        return times[0][1] if times else self.live.get(name)


def import_definitions(site: OriginalSite, jdl_dir: Path, report: Report) -> Catalog:
    """Write every definition into ``jdl_dir``; what was imported."""
    live: dict[str, str] = {}
    history: dict[str, list[tuple[datetime, str]]] = {}
    for item in read_all(site, report):
        jobdef = item.jobdef
        if not NAME_RE.match(jobdef.name):
            report.fail(f"definition {jobdef.name!r} ({item.path.name}): not a valid name here "
                        "(a letter, then letters, digits, '_' or '-')")
            continue
        data = jobdef.to_dict()
        mtime = item.saved_at.timestamp() if item.saved_at else None
        went_live = item.saved_at or datetime.fromtimestamp(item.path.stat().st_mtime)
        history.setdefault(jobdef.name, []).append((went_live, jobdef.version))
        version_path = jdl_dir / "versions" / jobdef.name / f"{quote(jobdef.version, safe='')}.json"
        _place(version_path, data, f"definition {jobdef.name} version {jobdef.version} (kept)", mtime, report)
        if item.saved_at is None:
            if jobdef.name in live:
                report.fail(f"definition {jobdef.name} ({item.path}): a second live file of that name "
                            "(another format directory); the first one read is kept")
                continue
            _place(jdl_dir / f"{jobdef.name}.json", data, f"definition {jobdef.name} version {jobdef.version} "
                   "(live)", None, report)
            live[jobdef.name] = jobdef.version
    return Catalog(live, history)
