"""UserStore: persistence of users (returns ``opus.auth.users.User`` objects).

A user's ``uid`` comes from the database (AUTOINCREMENT on SQLite, a sequence on PostgreSQL) and is
never given again after the user is deleted: what the user owned stays with that id.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import IntegrityError

from opus.auth.identity import server_secret
from opus.auth.users import ServiceToken, User, parse_groups, token_key
from opus.settings import Settings
from opus.storage.rows import from_db_time, to_db_time
from opus.storage.tables import jobs, service_tokens, users
from opus.timeutil import utcnow
from opus.uws import UNFINISHED


def _utc(value: datetime) -> datetime:
    """A NOT NULL instant column, made aware."""
    return value.replace(tzinfo=timezone.utc)


def _groups_text(groups: Iterable[str]) -> str:
    """The stored form of group names: checked (``parse_groups``), sorted, space-separated."""
    return " ".join(sorted(parse_groups(groups if isinstance(groups, str) else list(groups))))


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
                    created=from_db_time(row.created), uid=row.uid, password_hash=row.password_hash,
                    is_editor=bool(row.is_editor), email=row.email, reset_hash=row.reset_hash,
                    reset_expires=from_db_time(row.reset_expires) if row.reset_expires else None,
                    groups=frozenset((row.groups or "").split()), email_verified=bool(row.email_verified))

    def add(self, user: User) -> None:
        """Store a new user; sets ``user.uid`` to the id the database gave it (its groups are checked:
        BadRequest for a bad name)."""
        groups = _groups_text(user.groups)
        try:
            with self.engine.begin() as conn:
                result = conn.execute(insert(users).values(
                    name=user.name, token_id=user.token_id, token_hash=user.token_hash, is_admin=user.is_admin,
                    enabled=user.enabled, max_active_jobs=user.max_active_jobs,
                    jobdefs=" ".join(sorted(user.jobdefs)), created=to_db_time(user.created or utcnow()),
                    password_hash=user.password_hash, is_editor=user.is_editor, email=user.email,
                    email_verified=user.email_verified and user.email is not None, groups=groups))
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
        if "groups" in values:
            values["groups"] = _groups_text(values["groups"])
        if values.get("reset_expires") is not None:
            values["reset_expires"] = to_db_time(values["reset_expires"])
        with self.engine.begin() as conn:
            return bool(conn.execute(update(users).where(users.c.name == name).values(**values)).rowcount)

    def set_groups(self, uid: int, groups: Iterable[str]) -> None:
        """Replace the groups of user ``uid`` (names checked: BadRequest; an unknown uid: nothing)."""
        text = _groups_text(groups)
        with self.engine.begin() as conn:
            conn.execute(update(users).where(users.c.uid == uid).values(groups=text))

    def replace_token_hash(self, uid: int, old: str, new: str) -> bool:
        """Compare-and-set of a user's stored hash (a legacy hash upgraded on first use): nothing
        happens if the token was replaced meanwhile."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(users).where(users.c.uid == uid, users.c.token_hash == old)
                                     .values(token_hash=new)).rowcount)

    def consume_reset(self, uid: int, reset_hash: str, password_hash: str) -> bool:
        """Set the password of a pending reset, once: a compare-and-set on the reset's hash."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(users).where(users.c.uid == uid, users.c.reset_hash == reset_hash)
                                     .values(password_hash=password_hash, reset_hash=None,
                                             reset_expires=None)).rowcount)

    def delete(self, name: str) -> bool:
        with self.engine.begin() as conn:  # its service tokens go with it (the foreign key cascades too)
            uid = select(users.c.uid).where(users.c.name == name).scalar_subquery()
            conn.execute(delete(service_tokens).where(service_tokens.c.uid == uid))
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

    # ---- service tokens ----------------------------------------------------------------------------
    @staticmethod
    def _service_token(row: Row[Any]) -> ServiceToken:
        return ServiceToken(token_id=row.token_id, uid=row.uid, name=row.name, token_hash=row.token_hash,
                            scope=row.scope, expires=_utc(row.expires), created=_utc(row.created))

    def add_service_token(self, token: ServiceToken) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(service_tokens).values(
                token_id=token.token_id, uid=token.uid, name=token.name, token_hash=token.token_hash,
                scope=token.scope, expires=to_db_time(token.expires), created=to_db_time(token.created)))

    def service_token(self, token_id: str) -> ServiceToken | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(service_tokens).where(service_tokens.c.token_id == token_id)).first()
        return None if row is None else self._service_token(row)

    def service_tokens(self, uid: int) -> list[ServiceToken]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(service_tokens).where(service_tokens.c.uid == uid)
                                .order_by(service_tokens.c.created, service_tokens.c.token_id))
            return [self._service_token(r) for r in rows]

    def delete_service_token(self, uid: int, token_id: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(service_tokens).where(
                service_tokens.c.uid == uid, service_tokens.c.token_id == token_id)).rowcount)

    def by_uid(self, uid: int) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.uid == uid)).first()
        return None if row is None else self._user(row)
