"""OidcStore: which OPUS user an OpenID Connect identity (issuer, subject) signs in as.

The pair (issuer, subject) is the provider's stable name of a person (a user name or an e-mail
address can be given to someone else later); a row goes with its user (ON DELETE CASCADE, and
``unlink_user`` for engines that do not enforce foreign keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from opus.storage.rows import to_db_time
from opus.storage.tables import oidc_identities
from opus.timeutil import utcnow


class IdentityTaken(Exception):
    """The identity is linked to a user already."""


@dataclass(frozen=True)
class OidcIdentity:
    issuer: str
    subject: str
    uid: int
    created: datetime
    last_signin: datetime

    def public(self) -> dict[str, object]:
        return {"issuer": self.issuer, "subject": self.subject, "created": _iso(self.created),
                "lastSignIn": _iso(self.last_signin)}


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class OidcStore:
    """The ``oidc_identities`` table on one engine."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def uid_of(self, issuer: str, subject: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(oidc_identities.c.uid).where(
                oidc_identities.c.issuer == issuer, oidc_identities.c.subject == subject)).scalar()

    def link(self, issuer: str, subject: str, uid: int) -> None:
        """Link (issuer, subject) to user ``uid``; IdentityTaken when it is linked already."""
        now = to_db_time(utcnow())
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(oidc_identities).values(issuer=issuer, subject=subject, uid=uid, created=now,
                                                            last_signin=now))
        except IntegrityError:
            raise IdentityTaken(f"{issuer} {subject}") from None

    def signed_in(self, issuer: str, subject: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(oidc_identities).where(
                oidc_identities.c.issuer == issuer, oidc_identities.c.subject == subject)
                .values(last_signin=to_db_time(utcnow())))

    def of_user(self, uid: int) -> list[OidcIdentity]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(oidc_identities).where(oidc_identities.c.uid == uid)
                                .order_by(oidc_identities.c.issuer, oidc_identities.c.subject))
            return [OidcIdentity(r.issuer, r.subject, r.uid, r.created.replace(tzinfo=UTC),
                                 r.last_signin.replace(tzinfo=UTC))
                    for r in rows]

    def unlink(self, issuer: str, subject: str, uid: int) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(oidc_identities).where(
                oidc_identities.c.issuer == issuer, oidc_identities.c.subject == subject,
                oidc_identities.c.uid == uid)).rowcount)

    def unlink_user(self, uid: int) -> int:
        """Forget every identity of ``uid`` (a deleted user's, where foreign keys are not enforced)."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(oidc_identities).where(oidc_identities.c.uid == uid)).rowcount)
