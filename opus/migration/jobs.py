"""The original's jobs, with their files and provenance links, under the same ids.

For each job of the original's ``jobs`` table: its row (phase, times, owner, run id, error), its
parameters, its results (``job_results`` rows that name an entity; stdout, stderr and the
provenance files are served by this server itself), its entities (``entities``: what it generated,
what came in from outside) and what it used (``used``: which is what chains jobs into provenance).
Files are copied into ``DATA_DIR/jobs/<job id>/``: ``results/`` from the original's
``results/<job id>/``, ``uploads/<input>`` from ``uploads/<job id>/``, ``stdout.log`` and
``stderr.log`` from ``jobdata/<job id>/``.  Entity ids are kept, so ``/store?ID=`` links resolve.

A job already here (same id) is left as it is: a second run imports only what is new.  A job that
was queued or running in the original cannot go on here: it is imported as ERROR, saying so.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from opus.jobdef.content_types import type_by_extension
from opus.jobdef.model import NAME_RE
from opus.migration.accounts import Accounts
from opus.migration.definitions import Catalog
from opus.migration.report import Report
from opus.migration.site import OriginalSite, Row, parse_time, truthy
from opus.storage.jobfiles import JobFiles, write_json
from opus.storage.rows import to_db_time
from opus.storage.tables import entities, jobs, parameters, results, used
from opus.timeutil import utcnow
from opus.uws import AT_REST, ID_RE, Phase

_ID = ID_RE
#: job_results rows the original added for what this server serves itself.
SERVED_HERE = {"stdout", "stderr", "provjson", "provxml", "provsvg"}
#: The original's control parameters, kept as the job's own fields (runId, executionDuration...).
CONTROL = {"runId", "executionDuration", "destruction", "quote", "uws_quote", "uws_executionDuration",
           "uws_destruction", "uws_runId"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain(name: object) -> str | None:
    text = "" if name is None else str(name)
    return text if text and "/" not in text and "\0" not in text and text not in (".", "..") else None


@dataclass
class Plan:
    """What one job brings: rows to insert and files to copy (source, destination)."""

    job: dict[str, Any]
    params: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    used: list[dict[str, Any]] = field(default_factory=list)
    copies: list[tuple[Path, Path]] = field(default_factory=list)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)


class JobImporter:
    def __init__(self, site: OriginalSite, engine: Engine, jobs_dir: Path, accounts: Accounts,
                 catalog: Catalog, report: Report) -> None:
        self.site, self.engine, self.jobs_dir = site, engine, jobs_dir
        self.accounts, self.catalog, self.report = accounts, catalog, report
        self.params: dict[str, list[Row]] = defaultdict(list)
        self.results: dict[str, list[Row]] = defaultdict(list)
        self.used: dict[str, list[Row]] = defaultdict(list)
        self.entities: dict[str, Row] = {}
        self.placed: set[str] = set()  # entity ids inserted (or planned) by this run
        self.jobnames: dict[str, str] = {}

    def load(self) -> list[Row]:
        for row in self.site.rows("job_parameters"):
            self.params[str(row["jobid"])].append(row)
        for row in self.site.rows("job_results"):
            self.results[str(row["jobid"])].append(row)
        for row in self.site.rows("used"):
            self.used[str(row["jobid"])].append(row)
        self.entities = {str(r["entity_id"]): r for r in self.site.rows("entities")}
        rows = sorted(self.site.rows("jobs"), key=lambda r: str(r.get("creation_time") or ""))
        self.jobnames = {str(r["jobid"]): str(r["jobname"]) for r in rows}
        return rows

    def run(self, rows: list[Row], known_names: set[str]) -> None:
        with self.engine.connect() as conn:
            present = {r[0] for r in conn.execute(select(entities.c.entity_id))}
        self.placed = set(present)
        for row in rows:
            job_id = str(row["jobid"])
            if not _ID.match(job_id):
                self.report.fail(f"job {job_id!r}: its id does not fit this server's job ids (at most 32 letters, "
                                 "digits, '_' or '-'); not imported")
                continue
            if not NAME_RE.match(str(row["jobname"])):
                self.report.fail(f"job {job_id}: its definition name {row['jobname']!r} is not one this server "
                                 "can offer (a letter, then letters, digits, '_' or '-'); not imported")
                continue
            with self.engine.connect() as conn:
                if conn.execute(select(jobs.c.job_id).where(jobs.c.job_id == job_id)).first() is not None:
                    self.report.skip(f"job {row['jobname']}/{job_id}")
                    continue
            plan = self._plan(row)
            if plan is None:
                continue
            if str(row["jobname"]) not in known_names:
                self.report.note(f"job {row['jobname']}/{job_id}: no definition {row['jobname']!r} here, so its "
                                 "job list is not offered until one is added")
            self._apply(plan)
            self.report.did("jobs", f"job {row['jobname']}/{job_id} ({plan.job['phase']}, "
                            f"{len(plan.results)} result(s), {len(plan.used)} input link(s))")

    # ---- planning ------------------------------------------------------------------------------------
    def _job_row(self, row: Row, owner: tuple[str | None, str | None]) -> dict[str, Any]:
        job_id, phase_text = str(row["jobid"]), str(row.get("phase") or "UNKNOWN").upper()
        phase = Phase(phase_text) if phase_text in Phase.__members__ else Phase.UNKNOWN
        error = row.get("error") or None
        if phase not in AT_REST:
            error = f"moved from the original OPUS while {phase_text}: not run here"
            self.report.note(f"job {row['jobname']}/{job_id}: was {phase_text} in the original; imported as ERROR")
            phase = Phase.ERROR
        created = parse_time(row.get("creation_time")) or parse_time(row.get("start_time")) or utcnow()
        quote = row.get("quote")
        version = self.catalog.version_at(str(row["jobname"]), created.astimezone().replace(tzinfo=None))
        destruction = parse_time(row.get("destruction_time"))
        if destruction is not None and destruction < utcnow():
            self.report.note(f"job {row['jobname']}/{job_id}: its destruction time {destruction:%Y-%m-%d} is past: "
                             "the next maintenance destroys it (or archives it) unless it is moved later")
        return {
            "job_id": job_id, "jobname": str(row["jobname"]), "jdl_version": version,
            "run_id": (str(row["run_id"])[:64] if row.get("run_id") not in (None, "", "None") else None),
            "owner_id": owner[0], "owner_key": owner[1], "phase": phase.value, "creation_time": to_db_time(created),
            "start_time": to_db_time(parse_time(row.get("start_time"))),
            "end_time": to_db_time(parse_time(row.get("end_time"))),
            "execution_duration": int(row.get("execution_duration") or 0),
            "destruction_time": to_db_time(destruction),
            "quote": to_db_time(created + timedelta(seconds=int(str(quote)))) if str(quote or "").isdigit() else None,
            "error_type": "fatal" if phase == Phase.ERROR or error else None,
            "error_message": str(error) if error else None, "error_has_detail": False,
        }

    def _plan(self, row: Row) -> Plan | None:
        job_id = str(row["jobid"])
        owner = self.accounts.owner(row.get("owner"))
        if owner is None:
            self.report.fail(f"job {row['jobname']}/{job_id}: its owner {row.get('owner')!r} could not be imported")
            return None
        plan = Plan(self._job_row(row, owner))
        files = JobFiles.of(self.jobs_dir, job_id)
        self._plan_inputs(row, plan, files)
        self._plan_results(row, plan, files)
        for stream, dest in (("stdout.log", files.stdout), ("stderr.log", files.stderr)):
            source = self.site.jobdata_dir(job_id) / stream
            if source.is_file():
                plan.copies.append((source, dest))
        return plan

    def _entity_row(self, entity_id: str, e: Row, path: Path | None, location: str | None,
                    owner: tuple[str | None, str | None], generated_by: str | None, role: str) -> dict[str, Any]:
        file_name = _plain(e.get("file_name")) or entity_id
        found = path is not None and path.is_file()
        return {"entity_id": entity_id, "sha256": _sha256(path) if found and path else "",
                "size": path.stat().st_size if found and path else 0,
                "content_type": str(e.get("content_type") or "") or type_by_extension(file_name),
                "file_name": file_name[:255], "owner_id": owner[0], "owner_key": owner[1],
                "generated_by": generated_by, "role": str(e.get("result_name") or role)[:255],
                "jobname": self.jobnames.get(generated_by) if generated_by else None,
                "location": location if found else None, "source": None if generated_by else f"upload:{file_name}",
                "created": to_db_time(parse_time(e.get("creation_time")) or utcnow())}

    def _source_file(self, e: Row, fallback: Path) -> Path | None:
        name = _plain(e.get("file_name"))
        if name is None:
            return None
        for folder in ([Path(str(e["file_dir"]))] if e.get("file_dir") else []) + [fallback]:
            if (folder / name).is_file():
                return folder / name
        return None

    def _plan_inputs(self, row: Row, plan: Plan, files: JobFiles) -> None:
        job_id = str(row["jobid"])
        owner = (plan.job["owner_id"], plan.job["owner_key"])
        inputs = {str(u["role"]): str(u["entity_id"]) for u in self.used.get(job_id, []) if u.get("role")}
        for u in self.used.get(job_id, []):
            entity_id, role = str(u["entity_id"]), str(u.get("role") or "input")[:64]
            e = self.entities.get(entity_id)
            if e is None or not _ID.match(entity_id):
                self.report.fail(f"job {row['jobname']}/{job_id}: input {role!r} names entity {entity_id!r}, "
                                 "which is not in the original's entities table or has an unusable id")
                continue
            plan.used.append({"job_id": job_id, "role": role, "entity_id": entity_id})
            generator = str(e["jobid"]) if e.get("jobid") else None
            if generator is not None and not _ID.match(generator):
                generator = None  # its job cannot come across: the entity comes as an outside input
            source = self._source_file(e, self.site.uploads_dir(job_id)) or (
                self._source_file(e, self.site.results_dir(generator)) if generator else None)
            if source is not None and _plain(role):
                plan.copies.append((source, files.upload(role)))
                plan.inputs[role] = {"file_name": _plain(e.get("file_name")) or role,
                                     "size": source.stat().st_size, "sha256": _sha256(source)}
            if entity_id not in self.placed and generator is None:
                self.placed.add(entity_id)
                plan.entities.append(self._entity_row(entity_id, e, source, f"{job_id}/uploads/{role}",
                                                      owner, None, role))
        for p in self.params.get(job_id, []):
            name = str(p["name"])
            if name in CONTROL:
                continue
            if len(name) > 64:
                self.report.fail(f"job {row['jobname']}/{job_id}: parameter name {name[:40]!r}... longer than 64")
                continue
            if name in plan.inputs:
                plan.params.append({"job_id": job_id, "name": name, "value": f"param:{name}", "by_reference": True,
                                    "is_post": True})
                continue
            value = "" if p.get("value") is None else str(p["value"])
            if name in inputs:
                self.report.note(f"job {row['jobname']}/{job_id}: input {name!r} ({value!r}) has no file left")
            plan.params.append({"job_id": job_id, "name": name, "value": value,
                                "by_reference": truthy(p.get("byref")) and value.startswith(("http://", "https://")),
                                "is_post": True})

    def _plan_results(self, row: Row, plan: Plan, files: JobFiles) -> None:
        job_id = str(row["jobid"])
        owner = (plan.job["owner_id"], plan.job["owner_key"])
        listed: set[str] = set()
        for r in self.results.get(job_id, []):
            name = str(r["name"])
            if name in SERVED_HERE:
                continue
            entity_id = str(r.get("entity_id") or "")
            e = self.entities.get(entity_id)
            if e is None:
                self.report.fail(f"job {row['jobname']}/{job_id}: result {name!r} names no entity; not imported")
                continue
            source = self._source_file(e, self.site.results_dir(job_id))
            file_name = _plain(e.get("file_name"))
            if (source is None or file_name is None) and plan.job["phase"] == Phase.ARCHIVED.value:
                continue  # an archived job's files were deleted on purpose: nothing to report
            if source is None or file_name is None:
                self.report.fail(f"job {row['jobname']}/{job_id}: result {name!r}: its file "
                                 f"{e.get('file_name')!r} is gone from the original; not imported")
                continue
            listed.add(entity_id)
            plan.copies.append((source, files.result(file_name)))
            content_type = str(r.get("content_type") or e.get("content_type") or "") or type_by_extension(file_name)
            plan.results.append({"job_id": job_id, "result_id": name[:255], "file_name": file_name,
                                 "content_type": content_type, "size": source.stat().st_size,
                                 "sha256": _sha256(source)})
        for entity_id, e in self.entities.items():  # what the job generated, listed as a result or not
            if str(e.get("jobid") or "") != job_id or entity_id in self.placed or not _ID.match(entity_id):
                continue
            self.placed.add(entity_id)
            source = self._source_file(e, self.site.results_dir(job_id))
            name = _plain(e.get("file_name")) or entity_id
            if source is not None and entity_id not in listed:
                plan.copies.append((source, files.result(name)))
            plan.entities.append(self._entity_row(entity_id, e, source, f"{job_id}/results/{name}", owner,
                                                  job_id, name))

    # ---- writing -------------------------------------------------------------------------------------
    def _apply(self, plan: Plan) -> None:
        if self.report.dry_run:
            return
        files = JobFiles.of(self.jobs_dir, plan.job["job_id"])
        try:
            for folder in (files.uploads, files.work, files.results):
                folder.mkdir(parents=True, exist_ok=True)
            for source, dest in plan.copies:
                shutil.copyfile(source, dest)
            if plan.inputs:
                write_json(files.inputs_record, plan.inputs)
            with self.engine.begin() as conn:
                conn.execute(insert(jobs).values(**plan.job))
                for table, rows in ((parameters, plan.params), (results, plan.results),
                                    (entities, plan.entities), (used, plan.used)):
                    if rows:
                        conn.execute(insert(table), rows)
        except BaseException:
            files.remove()
            raise
