"""UserStore: persistence of users (returns ``opus.auth.users.User`` objects).

A user's ``uid`` comes from the database (AUTOINCREMENT on SQLite, a sequence on PostgreSQL) and is
never given again after the user is deleted: what the user owned stays with that id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import IntegrityError

from opus.auth.identity import server_secret
from opus.auth.users import User, token_key
from opus.settings import Settings
from opus.storage.rows import from_db_time, to_db_time
from opus.storage.tables import jobs, users
from opus.timeutil import utcnow
from opus.uws import UNFINISHED


class UserExists(Exception):
    """A user of that name exists already."""


class UserStore:
    """Users on one engine.  ``settings`` (the server's) give the key of token hashes; a store made
    without them (a tool or test that opened the database alone) has no ``token_key``."""

    def __init__(self, engine: Engine, settings: Settings | None = None):
        self.engine = engine
        self.settings = settings

    @property
    def token_key(self) -> bytes | None:
        return token_key(server_secret(self.settings)) if self.settings is not None else None

    @staticmethod
    def _user(row: Row[Any]) -> User:
        return User(name=row.name, is_admin=row.is_admin, enabled=row.enabled, max_active_jobs=row.max_active_jobs,
                    jobdefs=set(row.jobdefs.split()), token_id=row.token_id, token_hash=row.token_hash,
                    created=from_db_time(row.created), uid=row.uid)

    def add(self, user: User) -> None:
        """Store a new user; sets ``user.uid`` to the id the database gave it."""
        try:
            with self.engine.begin() as conn:
                result = conn.execute(insert(users).values(
                    name=user.name, token_id=user.token_id, token_hash=user.token_hash, is_admin=user.is_admin,
                    enabled=user.enabled, max_active_jobs=user.max_active_jobs,
                    jobdefs=" ".join(sorted(user.jobdefs)), created=to_db_time(user.created or utcnow())))
                key = result.inserted_primary_key
                assert key is not None  # an INSERT of one row always has its key
                user.uid = key[0]
        except IntegrityError:
            raise UserExists(user.name) from None

    def get(self, name: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        return None if row is None else self._user(row)

    def by_token_id(self, token_id: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.token_id == token_id)).first()
        return None if row is None else self._user(row)

    def all(self) -> list[User]:
        with self.engine.connect() as conn:
            return [self._user(r) for r in conn.execute(select(users).order_by(users.c.name))]

    def update(self, name: str, **fields: Any) -> bool:
        values = dict(fields)
        if "jobdefs" in values:
            values["jobdefs"] = " ".join(sorted(values["jobdefs"]))
        with self.engine.begin() as conn:
            return bool(conn.execute(update(users).where(users.c.name == name).values(**values)).rowcount)

    def replace_token_hash(self, uid: int, old: str, new: str) -> bool:
        """Compare-and-set of a user's stored hash (a legacy hash upgraded on first use): nothing
        happens if the token was replaced meanwhile."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(users).where(users.c.uid == uid, users.c.token_hash == old)
                                     .values(token_hash=new)).rowcount)

    def delete(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(users).where(users.c.name == name)).rowcount)

    def count_admins(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(users)
                                .where(users.c.is_admin.is_(True), users.c.enabled.is_(True))).scalar_one()

    def active_jobs(self, owner_key: str | None) -> int:
        """Jobs of ``owner_key`` (None: anonymous) that are not finished (``opus.uws.UNFINISHED``)."""
        active = [p.value for p in UNFINISHED]
        cond = jobs.c.owner_key.is_(None) if owner_key is None else jobs.c.owner_key == owner_key
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(jobs)
                                .where(cond, jobs.c.phase.in_(active))).scalar_one()
