"""UserStore: persistence of users (returns ``opus.users.User`` objects)."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..timeutil import utcnow
from ..users import User
from .jobstore import from_db_time, to_db_time
from .tables import jobs, users


class UserExists(Exception):
    """A user of that name exists already."""


class UserStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    @staticmethod
    def _user(row) -> User:
        return User(name=row.name, is_admin=row.is_admin, enabled=row.enabled, max_active_jobs=row.max_active_jobs,
                    jobdefs=set(row.jobdefs.split()), token_id=row.token_id, token_hash=row.token_hash,
                    created=from_db_time(row.created))

    def add(self, user: User) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(users), [{
                    "name": user.name, "token_id": user.token_id, "token_hash": user.token_hash,
                    "is_admin": user.is_admin, "enabled": user.enabled, "max_active_jobs": user.max_active_jobs,
                    "jobdefs": " ".join(sorted(user.jobdefs)), "created": to_db_time(user.created or utcnow())}])
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

    def update(self, name: str, **fields) -> bool:
        values = dict(fields)
        if "jobdefs" in values:
            values["jobdefs"] = " ".join(sorted(values["jobdefs"]))
        with self.engine.begin() as conn:
            return bool(conn.execute(update(users).where(users.c.name == name).values(**values)).rowcount)

    def delete(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(users).where(users.c.name == name)).rowcount)

    def count_admins(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(users)
                                .where(users.c.is_admin.is_(True), users.c.enabled.is_(True))).scalar()

    def active_jobs(self, owner: str | None) -> int:
        """Jobs of ``owner`` that are not finished (PENDING, QUEUED, EXECUTING, HELD, SUSPENDED)."""
        active = ["PENDING", "QUEUED", "EXECUTING", "HELD", "SUSPENDED"]
        cond = jobs.c.owner_id.is_(None) if owner is None else jobs.c.owner_id == owner
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(jobs)
                                .where(cond, jobs.c.phase.in_(active))).scalar()
