"""Entities (every input and result of every job) and which job used which: the result store's
index and the raw material of provenance.

Entities are recorded when a job ends, in the same transaction that records its results
(``JobStore.complete(..., also=...)``).  An input whose content is already known to the job's
owner (same SHA-256), or that names an entity of this server (a ``/store`` URL), is linked to the
existing entity instead of becoming a new one: that link is what chains jobs.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from ..timeutil import utcnow
from ..uws import Job, Result
from .jobstore import from_db_time, to_db_time
from .tables import entities, used


@dataclass
class Entity:
    entity_id: str
    sha256: str
    size: int
    content_type: str
    file_name: str
    owner_id: str | None
    generated_by: str | None  # the job that generated it; None for an input from outside
    role: str                 # the result's name in that job, or the input's name where it first came in
    jobname: str | None
    location: str | None      # path under DATA_DIR/jobs; None once the file is gone
    source: str | None        # where an outside input came from (a URL, or "upload:<file name>")
    created: datetime

    @property
    def available(self) -> bool:
        return self.location is not None


def _entity(row) -> Entity:
    return Entity(entity_id=row.entity_id, sha256=row.sha256, size=row.size, content_type=row.content_type,
                  file_name=row.file_name, owner_id=row.owner_id, generated_by=row.generated_by, role=row.role,
                  jobname=row.jobname, location=row.location, source=row.source,
                  created=from_db_time(row.created))


def new_entity_id() -> str:
    return secrets.token_hex(8)


class EntityStore:
    """Reads and records entities on the JobStore's engine (and its write serialisation)."""

    def __init__(self, jobstore):
        self.jobstore = jobstore
        self.engine = jobstore.engine

    # ---- reading -----------------------------------------------------------------------------
    def get(self, entity_id: str) -> Entity | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(entities).where(entities.c.entity_id == entity_id)).first()
        return _entity(row) if row is not None else None

    def get_many(self, entity_ids: Iterable[str]) -> dict[str, Entity]:
        ids = list(set(entity_ids))
        out: dict[str, Entity] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                for row in conn.execute(select(entities).where(entities.c.entity_id.in_(ids[start:start + 500]))):
                    out[row.entity_id] = _entity(row)
        return out

    def generated_by(self, job_ids: Iterable[str]) -> list[Entity]:
        """The entities the jobs generated (their results)."""
        ids = list(set(job_ids))
        out: list[Entity] = []
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                out += [_entity(r) for r in conn.execute(
                    select(entities).where(entities.c.generated_by.in_(ids[start:start + 500]))
                    .order_by(entities.c.generated_by, entities.c.role))]
        return out

    def used_by(self, job_ids: Iterable[str]) -> list[tuple[str, str, str]]:
        """(job_id, role, entity_id) for every entity the jobs used."""
        return self._used_where(used.c.job_id, job_ids, (used.c.job_id, used.c.role))

    def users_of(self, entity_ids: Iterable[str]) -> list[tuple[str, str, str]]:
        """(job_id, role, entity_id) for every job that used one of the entities."""
        return self._used_where(used.c.entity_id, entity_ids, (used.c.entity_id, used.c.job_id))

    def _used_where(self, column, values: Iterable[str], order) -> list[tuple[str, str, str]]:
        ids = list(set(values))
        out: list[tuple[str, str, str]] = []
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                out += [(r.job_id, r.role, r.entity_id) for r in conn.execute(
                    select(used).where(column.in_(ids[start:start + 500])).order_by(*order))]
        return out

    def find_known(self, sha256: str, owner_id: str | None) -> Entity | None:
        """The oldest entity with this content that belongs to ``owner_id`` (the same owner)."""
        query = select(entities).where(entities.c.sha256 == sha256)
        query = query.where(entities.c.owner_id.is_(None) if owner_id is None else entities.c.owner_id == owner_id)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(entities.c.created).limit(1)).first()
        return _entity(row) if row is not None else None

    # ---- recording at a job's end -------------------------------------------------------------------
    def plan_completion(self, job: Job, found: Sequence[Result], inputs: dict, fetched: list[dict],
                        linked: dict[str, list[str]]) -> tuple[list[dict], list[dict]]:
        """(entity rows, used rows) for a job ending with results ``found``.

        ``inputs``: the job's uploads record ({name: {file_name, size, sha256}}); ``fetched``: what the
        wrapper fetched ([{name, url, file, size, sha256, content_type}]); ``linked``: inputs given as
        entities of this server ({name: [entity ids]}).
        """
        now = to_db_time(utcnow())
        rows: list[dict] = []
        uses: list[dict] = []
        for r in found:
            rows.append({"entity_id": new_entity_id(), "sha256": r.sha256 or "", "size": r.size or 0,
                         "content_type": r.content_type, "file_name": r.file_name, "owner_id": job.owner_id,
                         "generated_by": job.job_id, "role": r.result_id, "jobname": job.jobname,
                         "location": f"{job.job_id}/results/{r.file_name}", "source": None, "created": now})
        seen: dict[str, str] = {}  # sha256 -> entity id, within this job

        def use(name: str, sha: str, size: int, ctype: str, file_name: str, location: str, source: str) -> None:
            entity_id = seen.get(sha)
            if entity_id is None:
                known = self.find_known(sha, job.owner_id)
                if known is not None:
                    entity_id = known.entity_id
                else:
                    entity_id = new_entity_id()
                    rows.append({"entity_id": entity_id, "sha256": sha, "size": size, "content_type": ctype,
                                 "file_name": file_name, "owner_id": job.owner_id, "generated_by": None,
                                 "role": name, "jobname": None, "location": location, "source": source,
                                 "created": now})
                seen[sha] = entity_id
            uses.append({"job_id": job.job_id, "role": name, "entity_id": entity_id})

        for name, info in sorted(inputs.items()):
            use(name, info["sha256"], info["size"], info.get("content_type") or "application/octet-stream",
                info.get("file_name") or name, f"{job.job_id}/uploads/{name}",
                f"upload:{info.get('file_name') or name}")
        for item in fetched:
            use(item["name"], item["sha256"], item["size"], item.get("content_type") or "application/octet-stream",
                item["url"].rstrip("/").rsplit("/", 1)[-1][:255] or item["file"], f"{job.job_id}/uploads/{item['file']}",
                item["url"])
        for name, entity_ids in sorted(linked.items()):
            for entity_id in entity_ids:
                uses.append({"job_id": job.job_id, "role": name, "entity_id": entity_id})
        unique = {(u["job_id"], u["role"], u["entity_id"]): u for u in uses}
        return rows, list(unique.values())

    @staticmethod
    def record(conn, rows: list[dict], uses: list[dict]) -> None:
        """Insert planned rows (inside the completion's transaction)."""
        if rows:
            conn.execute(insert(entities), rows)
        if uses:
            conn.execute(insert(used), uses)


def read_json(path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def write_json(path, data) -> None:
    """Replace a small JSON file atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
