"""ShareStore: share links and jobs shared with named users or groups (tables ``share_links``, ``job_shares``).

A job share's grantee key is the user's owner key (``user:<uid>``) or a group's key (``group:<name>``,
``opus.auth.users.group_key``).

Plain persistence: who may create, list or revoke what is ``opus.service.sharing``'s rule.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import IntegrityError

from opus.auth.users import GROUP_KEY_PREFIX
from opus.storage.rows import from_db_time, to_db_time
from opus.storage.tables import job_shares, share_links


@dataclass(frozen=True)
class ShareLink:
    """One share link as stored (its signature is not: ``opus.service.sharing`` computes it)."""

    link_id: str
    entity_id: str
    owner_key: str | None
    owner_id: str | None
    label: str
    created: datetime
    expires: datetime
    revoked: datetime | None


@dataclass(frozen=True)
class JobShare:
    """A job shared read-only with one user, or with a group (``grantee_key`` ``group:<name>``)."""

    job_id: str
    grantee_key: str
    grantee_name: str
    created: datetime

    @property
    def group(self) -> str | None:
        """The group's name for a share with a group; None for one with a user."""
        return self.grantee_key[len(GROUP_KEY_PREFIX):] if self.grantee_key.startswith(GROUP_KEY_PREFIX) else None


def _link(row: Row[Any]) -> ShareLink:
    created, expires = from_db_time(row.created), from_db_time(row.expires)
    assert created is not None and expires is not None  # NOT NULL columns
    return ShareLink(row.link_id, row.entity_id, row.owner_key, row.owner_id, row.label, created, expires,
                     from_db_time(row.revoked))


def _share(row: Row[Any]) -> JobShare:
    created = from_db_time(row.created)
    assert created is not None
    return JobShare(row.job_id, row.grantee_key, row.grantee_name, created)


class ShareStore:
    """Share links and job shares on one engine."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # ---- links ---------------------------------------------------------------------------------
    def add_link(self, link: ShareLink) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(share_links).values(
                link_id=link.link_id, entity_id=link.entity_id, owner_key=link.owner_key,
                owner_id=link.owner_id, label=link.label[:400], created=to_db_time(link.created),
                expires=to_db_time(link.expires)))

    def link(self, link_id: str) -> ShareLink | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(share_links).where(share_links.c.link_id == link_id)).first()
        return None if row is None else _link(row)

    def links(self, owner_key: str | None, everyone: bool = False, limit: int = 1000) -> list[ShareLink]:
        """The links ``owner_key`` created (``everyone``: all links), newest first."""
        query = select(share_links).order_by(share_links.c.created.desc()).limit(limit)
        if not everyone:
            query = query.where(share_links.c.owner_key.is_(None) if owner_key is None
                                else share_links.c.owner_key == owner_key)
        with self.engine.connect() as conn:
            return [_link(r) for r in conn.execute(query)]

    def revoke(self, link_id: str, when: datetime) -> bool:
        """Revoke a link (once: a revoked link keeps its first revocation time)."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(share_links).where(share_links.c.link_id == link_id,
                                                               share_links.c.revoked.is_(None))
                                     .values(revoked=to_db_time(when))).rowcount)

    # ---- jobs shared with users ------------------------------------------------------------------
    def grant(self, share: JobShare) -> bool:
        """Share a job with a user; False if it already was."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(job_shares).values(job_id=share.job_id, grantee_key=share.grantee_key,
                                                       grantee_name=share.grantee_name,
                                                       created=to_db_time(share.created)))
        except IntegrityError:
            return False
        return True

    def ungrant(self, job_id: str, grantee_key: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(job_shares).where(
                job_shares.c.job_id == job_id, job_shares.c.grantee_key == grantee_key)).rowcount)

    def shares_of(self, job_id: str) -> list[JobShare]:
        with self.engine.connect() as conn:
            return [_share(r) for r in conn.execute(select(job_shares).where(job_shares.c.job_id == job_id)
                                                     .order_by(job_shares.c.grantee_name))]

    def shared_with(self, grantee_keys: Collection[str], limit: int = 1000) -> list[JobShare]:
        """The shares with any of ``grantee_keys`` (a user's key and its groups' keys), newest first."""
        if not grantee_keys:
            return []
        with self.engine.connect() as conn:
            return [_share(r) for r in conn.execute(
                select(job_shares).where(job_shares.c.grantee_key.in_(sorted(grantee_keys)))
                .order_by(job_shares.c.created.desc(), job_shares.c.grantee_key).limit(limit))]

    def is_shared(self, job_id: str, grantee_keys: Collection[str]) -> bool:
        """Whether the job is shared with any of ``grantee_keys`` (one indexed query)."""
        if not grantee_keys:
            return False
        with self.engine.connect() as conn:
            return conn.execute(select(job_shares.c.job_id).where(
                job_shares.c.job_id == job_id, job_shares.c.grantee_key.in_(sorted(grantee_keys))).limit(1)
            ).first() is not None
