"""Where a job's files live: ``<DATA_DIR>/jobs/<job_id>/``.

    uploads/<param>     uploaded parameter files (served at parameters/<param>), and inputs fetched
                        from URLs by the wrapper (<param>, or <param>.<n> for several)
    inputs.json         each upload's client file name, size and SHA-256
    fetched.json        each fetched input's URL, size, SHA-256 and content type (written by the wrapper)
    store_links.json    /store URLs given as inputs, as checked at creation: {input: {url: entity id}}
    linked.json         the entities linked into uploads/ when the job started: {input: [entity ids]}
    work/               the script's working directory
    results/<file>      collected results (served at results/<id>)
    stdout.log, stderr.log   the script's output
    job.json            what the wrapper needs to run the job
    script.sh           the definition's script, as run
    report.json         the wrapper's final report, kept so that a lost callback can be replayed
    report.slot         64 KiB reserved at launch, where the wrapper writes its final report first
                        (a full disk cannot stop it); read when report.json is missing
    launch.lock         the launch record, created before the wrapper starts and locked by it for
                        its whole life (opus.managers.jobrecord: a job is never run twice)
    wrapper.log         the wrapper's own messages
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class JobFiles:
    """Paths of one job's area."""

    root: Path

    @classmethod
    def of(cls, jobs_dir: Path, job_id: str) -> "JobFiles":
        return cls(Path(jobs_dir) / job_id)

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def stdout(self) -> Path:
        return self.root / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.root / "stderr.log"

    @property
    def spec(self) -> Path:
        return self.root / "job.json"

    @property
    def script(self) -> Path:
        return self.root / "script.sh"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    @property
    def report_slot(self) -> Path:
        return self.root / "report.slot"

    @property
    def launch_record(self) -> Path:
        return self.root / "launch.lock"

    @property
    def wrapper_log(self) -> Path:
        return self.root / "wrapper.log"

    @property
    def script_pgid(self) -> Path:
        return self.root / "script.pgid"

    @property
    def inputs_record(self) -> Path:
        return self.root / "inputs.json"

    @property
    def fetched_record(self) -> Path:
        return self.root / "fetched.json"

    @property
    def linked_record(self) -> Path:
        return self.root / "linked.json"

    @property
    def store_links(self) -> Path:
        return self.root / "store_links.json"

    def upload(self, name: str) -> Path:
        return self.uploads / _plain(name)

    def result(self, file_name: str) -> Path:
        return self.results / _plain(file_name)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def remove_results(self) -> None:
        shutil.rmtree(self.results, ignore_errors=True)


def _plain(name: str) -> str:
    """A file name that stays in its directory (callers validate names; this is the last guard)."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"{name!r} is not a plain file name")
    return name


def read_json(path: Path, default: Any) -> Any:
    """A job's small JSON record, or ``default`` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def write_json(path: Path, data: Any) -> None:
    """Replace a small JSON file atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)

