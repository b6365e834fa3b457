"""Entities (every input and result of every job) and which job used which: the result store's
index and the raw material of provenance.

Entities are recorded when a job ends, in the same transaction that records its results
(``JobStore.complete(..., entities=EntityStore.plan_completion(...))``).  An input whose content is already known to the job's
owner (same SHA-256), or that names an entity of this server (a ``/store`` URL), is linked to the
existing entity instead of becoming a new one: that link is what chains jobs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple, Protocol

from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.sql.elements import ColumnElement

from opus.jobdef.content_types import type_by_extension
from opus.timeutil import utcnow
from opus.uws import Job, Result
from opus.storage.rows import to_db_time
from opus.storage.tables import entities, used

#: A row of ``entities`` or ``used``, as SQLAlchemy inserts it.
DbRow = dict[str, Any]


class EntityRows(NamedTuple):
    """What a job's end adds to the result store: new ``entities`` rows and ``used`` rows."""

    entities: list[DbRow]
    used: list[DbRow]


def record_entities(conn: Connection, planned: EntityRows) -> None:
    """Insert planned rows (inside the completion's transaction: ``JobStore.complete``)."""
    if planned.entities:
        conn.execute(insert(entities), planned.entities)
    if planned.used:
        conn.execute(insert(used), planned.used)


class _HasEngine(Protocol):
    @property
    def engine(self) -> Engine: ...


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
    owner_key: str | None = None  # what access goes by (opus.auth.identity.can_access); owner_id is the name

    @property
    def available(self) -> bool:
        return self.location is not None


def _entity(row: Row[Any]) -> Entity:
    return Entity(entity_id=row.entity_id, sha256=row.sha256, size=row.size, content_type=row.content_type,
                  file_name=row.file_name, owner_id=row.owner_id, generated_by=row.generated_by, role=row.role,
                  jobname=row.jobname, location=row.location, source=row.source,
                  created=row.created.replace(tzinfo=timezone.utc), owner_key=row.owner_key)


def new_entity_id() -> str:
    return secrets.token_hex(8)


class EntityStore:
    """Reads entities on the JobStore's engine; built once per process and shared (the service and
    the dispatcher).  Writing happens in ``JobStore.complete`` (``EntityRows``)."""

    def __init__(self, jobstore: _HasEngine):
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

    def _used_where(self, column: ColumnElement[str], values: Iterable[str],
                    order: tuple[ColumnElement[str], ...]) -> list[tuple[str, str, str]]:
        ids = list(set(values))
        out: list[tuple[str, str, str]] = []
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                out += [(r.job_id, r.role, r.entity_id) for r in conn.execute(
                    select(used).where(column.in_(ids[start:start + 500])).order_by(*order))]
        return out

    def find_known(self, sha256: str, owner_key: str | None, existing_at: datetime) -> Entity | None:
        """The oldest entity with this content that belongs to ``owner_key`` (the same owner) and
        existed at ``existing_at`` (when the input was given: a job cannot have used a file that
        did not exist yet, e.g. the result of a job that ended while this one ran)."""
        query = select(entities).where(entities.c.sha256 == sha256, entities.c.created <= to_db_time(existing_at))
        query = query.where(entities.c.owner_key.is_(None) if owner_key is None
                            else entities.c.owner_key == owner_key)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(entities.c.created, entities.c.entity_id).limit(1)).first()
        return _entity(row) if row is not None else None

    def reachable(self, job_ids: Iterable[str], entity_ids: Iterable[str], direction: str,
                  owner_key: str | None = None, any_owner: bool = False) -> tuple[set[str], set[str]]:
        """(job ids, entity ids) reachable from the given ones in any number of provenance steps, in
        one recursive query.  BACK: entity -> the job that generated it, job -> the entities it used;
        FORTH: the reverse.  Unless ``any_owner`` (an admin), the walk only enters jobs and entities
        of ``owner_key`` (None: anonymous ones) -- the rule of ``opus.auth.identity.can_access``."""
        if direction == "BACK":
            joins = ("LEFT JOIN entities e ON w.kind = 'e' AND e.entity_id = w.id "
                     "LEFT JOIN jobs j ON j.job_id = e.generated_by "
                     "LEFT JOIN used u ON w.kind = 'j' AND u.job_id = w.id "
                     "LEFT JOIN entities e2 ON e2.entity_id = u.entity_id")
        else:
            joins = ("LEFT JOIN used u ON w.kind = 'e' AND u.entity_id = w.id "
                     "LEFT JOIN jobs j ON j.job_id = u.job_id "
                     "LEFT JOIN entities e2 ON w.kind = 'j' AND e2.generated_by = w.id")
        mine_j = mine_e = ""
        if not any_owner:
            mine_j = " AND j.owner_key IS NULL" if owner_key is None else " AND j.owner_key = :owner"
            mine_e = " AND e2.owner_key IS NULL" if owner_key is None else " AND e2.owner_key = :owner"
        sql = text(
            "WITH RECURSIVE walk(kind, id) AS ("
            " SELECT CAST('j' AS TEXT), CAST(job_id AS TEXT) FROM jobs WHERE job_id IN :jobs"
            " UNION SELECT CAST('e' AS TEXT), CAST(entity_id AS TEXT) FROM entities WHERE entity_id IN :ents"
            " UNION SELECT CAST(CASE WHEN w.kind = 'e' THEN 'j' ELSE 'e' END AS TEXT),"
            "  CAST(CASE WHEN w.kind = 'e' THEN j.job_id ELSE e2.entity_id END AS TEXT)"
            f" FROM walk w {joins}"
            f" WHERE (w.kind = 'e' AND j.job_id IS NOT NULL{mine_j}) OR (w.kind = 'j' AND e2.entity_id IS NOT NULL{mine_e})"
            ") SELECT kind, id FROM walk").bindparams(bindparam("jobs", expanding=True),
                                                      bindparam("ents", expanding=True))
        params: dict[str, object] = {"jobs": list(job_ids) or [""], "ents": list(entity_ids) or [""]}
        if not any_owner and owner_key is not None:
            params["owner"] = owner_key
        found_jobs: set[str] = set()
        found_entities: set[str] = set()
        with self.engine.connect() as conn:
            for kind, ident in conn.execute(sql, params):
                (found_jobs if kind == "j" else found_entities).add(ident)
        return found_jobs, found_entities

    # ---- recording at a job's end -------------------------------------------------------------------
    def plan_completion(self, job: Job, found: Sequence[Result], inputs: dict[str, dict[str, Any]],
                        fetched: list[dict[str, Any]],
                        linked: dict[str, list[str]]) -> EntityRows:
        """(entity rows, used rows) for a job ending with results ``found``.

        ``inputs``: the job's uploads record ({name: {file_name, size, sha256}}); ``fetched``: what the
        wrapper fetched ([{name, url, file, size, sha256, content_type}]); ``linked``: inputs given as
        entities of this server ({name: [entity ids]}).
        """
        now = to_db_time(utcnow())
        rows: list[DbRow] = []
        uses: list[DbRow] = []
        for r in found:
            rows.append({"entity_id": new_entity_id(), "sha256": r.sha256 or "", "size": r.size or 0,
                         "content_type": r.content_type, "file_name": r.file_name, "owner_id": job.owner_id,
                         "owner_key": job.owner_key, "generated_by": job.job_id, "role": r.result_id,
                         "jobname": job.jobname, "location": f"{job.job_id}/results/{r.file_name}", "source": None,
                         "created": now})
        seen: dict[str, str] = {}  # sha256 -> entity id, within this job

        # An input exists from when it was given (``given``): an upload with the job's creation, a
        # fetched file when the job started.  Only an entity that existed then can be the same file
        # (its oldest one: an upload rather than a copy a later job made of it).
        def use(name: str, sha: str, size: int, ctype: str, file_name: str, location: str, source: str,
                given: datetime) -> None:
            entity_id = seen.get(sha)
            if entity_id is None:
                known = self.find_known(sha, job.owner_key, given)
                if known is not None:
                    entity_id = known.entity_id
                else:
                    entity_id = new_entity_id()
                    rows.append({"entity_id": entity_id, "sha256": sha, "size": size, "content_type": ctype,
                                 "file_name": file_name, "owner_id": job.owner_id, "owner_key": job.owner_key,
                                 "generated_by": None,
                                 "role": name, "jobname": None, "location": location, "source": source,
                                 "created": to_db_time(given)})
                seen[sha] = entity_id
            uses.append({"job_id": job.job_id, "role": name, "entity_id": entity_id})

        # Inputs are typed by OPUS's extension table (opus.jobdef.content_types), never by what a client or a
        # remote server said: a stranger's text/html would otherwise be served as a page.
        for name, info in sorted(inputs.items()):
            use(name, info["sha256"], info["size"], type_by_extension(info.get("file_name") or name),
                info.get("file_name") or name, f"{job.job_id}/uploads/{name}",
                f"upload:{info.get('file_name') or name}", job.creation_time)
        for item in fetched:
            url_path = item["url"].split("?", 1)[0].split("#", 1)[0]
            use(item["name"], item["sha256"], item["size"], type_by_extension(url_path.rstrip("/").rsplit("/", 1)[-1]),
                item["url"].rstrip("/").rsplit("/", 1)[-1][:255] or item["file"], f"{job.job_id}/uploads/{item['file']}",
                item["url"], job.start_time or job.creation_time)
        for name, entity_ids in sorted(linked.items()):
            for entity_id in entity_ids:
                uses.append({"job_id": job.job_id, "role": name, "entity_id": entity_id})
        unique = {(u["job_id"], u["role"], u["entity_id"]): u for u in uses}
        return EntityRows(rows, list(unique.values()))
