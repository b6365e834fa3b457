"""OutboxStore: e-mails, digest lines and webhook calls waiting to go out (table ``outbox``).

A message is written in one INSERT where its event happens (a job's end, a proposal) and sent later by
a background sender (``opus.events.mail.Outbox``).  Several processes may send: each claims messages
with one compare-and-set UPDATE (a claim token), so a message goes out once; a claim older than
``STALE_CLAIM`` (its sender died) may be taken again.  Also the users' e-mail addresses
(``users.email``), which notifications go to.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Engine

from opus.storage.rows import from_db_time, to_db_time
from opus.storage.tables import outbox, parameters, users
from opus.timeutil import utcnow

#: A claim this old belongs to a sender that died: the message may be claimed again.
STALE_CLAIM = timedelta(minutes=5)
KINDS = ("mail", "digest", "webhook")


@dataclass(frozen=True)
class Message:
    """One message of the outbox."""

    id: int
    kind: str
    recipient: str
    subject: str
    body: str
    created: datetime
    attempts: int


class OutboxStore:
    """The outbox on one engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # Write transactions take SQLite's write lock at BEGIN: a claim reads then updates, and a
        # deferred transaction that must upgrade after another writer committed fails at once with
        # "database is locked" instead of waiting (busy_timeout does not apply to an upgrade).
        self._writer = engine.execution_options(sqlite_begin="IMMEDIATE")

    def add(self, kind: str, recipient: str, subject: str, body: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown outbox kind {kind!r}")
        now = to_db_time(utcnow())
        with self._writer.begin() as conn:
            conn.execute(insert(outbox).values(kind=kind, recipient=recipient, subject=subject[:400],
                                               body=body, created=now, next_try=now, attempts=0))

    def claim(self, kinds: tuple[str, ...], now: datetime, created_before: datetime | None = None,
              limit: int = 100) -> list[Message]:
        """Claim up to ``limit`` unsent messages of ``kinds`` due at ``now`` (and created before
        ``created_before``, if given) for this sender; returns them."""
        token = secrets.token_hex(16)
        db_now = to_db_time(now)
        due = [outbox.c.sent.is_(None), outbox.c.kind.in_(kinds), outbox.c.next_try <= db_now,
               or_(outbox.c.claim.is_(None), outbox.c.claimed < to_db_time(now - STALE_CLAIM))]
        if created_before is not None:
            due.append(outbox.c.created < to_db_time(created_before))
        with self._writer.begin() as conn:
            ids = [r.id for r in conn.execute(select(outbox.c.id).where(and_(*due)).order_by(outbox.c.id)
                                              .limit(limit))]
            if not ids:
                return []
            conn.execute(update(outbox).where(outbox.c.id.in_(ids), and_(*due))
                         .values(claim=token, claimed=db_now))
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox).where(outbox.c.claim == token).order_by(outbox.c.id)).all()
        return [_message(r) for r in rows]

    def sent(self, ids: list[int], when: datetime) -> None:
        with self._writer.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(sent=to_db_time(when), claim=None))

    def failed(self, ids: list[int], error: str, retry_at: datetime | None) -> None:
        """A delivery failed: try again at ``retry_at``, or never (None: marked sent with the error)."""
        values: dict[str, Any] = {"claim": None, "last_error": error[:2000],
                                  "attempts": outbox.c.attempts + 1}
        if retry_at is None:
            values["sent"] = to_db_time(utcnow())
        else:
            values["next_try"] = to_db_time(retry_at)
        with self._writer.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(**values))

    def pending(self) -> list[Message]:
        """Every unsent message, oldest first (for tests and the operator)."""
        with self.engine.connect() as conn:
            return [_message(r) for r in conn.execute(select(outbox).where(outbox.c.sent.is_(None))
                                                      .order_by(outbox.c.id))]

    def job_settings(self, job_id: str, names: tuple[str, ...]) -> dict[str, str]:
        """The job's parameters of these names (its NOTIFY and WEBHOOK): one primary-key lookup, so
        that a phase change of a job that asked for nothing costs little."""
        with self.engine.connect() as conn:
            return {r.name: r.value for r in conn.execute(select(parameters.c.name, parameters.c.value).where(
                parameters.c.job_id == job_id, parameters.c.name.in_(names)))}

    # ---- the users' addresses (users.email) ------------------------------------------------------
    def email_of(self, uid: int, confirmed: bool = True) -> str | None:
        """The user's address; with ``confirmed`` (what notifications use), only once it is confirmed."""
        query = select(users.c.email).where(users.c.uid == uid)
        if confirmed:
            query = query.where(users.c.email_verified.is_(True))
        with self.engine.connect() as conn:
            found: str | None = conn.execute(query).scalar()
        return found or None

    def address(self, uid: int) -> tuple[str | None, bool, datetime | None]:
        """(address, confirmed, when the last confirmation mail went out) of user ``uid``."""
        with self.engine.connect() as conn:
            row = conn.execute(select(users.c.email, users.c.email_verified, users.c.email_verify_sent)
                               .where(users.c.uid == uid)).first()
        if row is None:
            return None, False, None
        sent = from_db_time(row.email_verify_sent) if row.email_verify_sent else None
        return row.email or None, bool(row.email_verified), sent

    def set_email(self, uid: int, email: str | None, confirmed: bool = False) -> bool:
        """Set the user's address (unconfirmed unless ``confirmed``); the same address again keeps
        its confirmation."""
        with self._writer.begin() as conn:
            same = conn.execute(select(users.c.email_verified).where(users.c.uid == uid, users.c.email == email)
                                ).scalar()
            values: dict[str, Any] = {"email": email, "email_verified": bool(confirmed or same) and email is not None}
            return bool(conn.execute(update(users).where(users.c.uid == uid).values(**values)).rowcount)

    def confirm_email(self, uid: int, email: str) -> bool:
        """Confirm ``email`` if it is still the user's address (a link for an older one does nothing)."""
        with self._writer.begin() as conn:
            return bool(conn.execute(update(users).where(users.c.uid == uid, users.c.email == email)
                                     .values(email_verified=True)).rowcount)

    def claim_verify_mail(self, uid: int, now: datetime, interval: timedelta) -> bool:
        """Note that a confirmation mail goes out now, unless one went out less than ``interval`` ago
        (compare-and-set: two requests at once send one); True when this one may be sent."""
        since = to_db_time(now - interval)
        with self._writer.begin() as conn:
            return bool(conn.execute(update(users).where(
                users.c.uid == uid, or_(users.c.email_verify_sent.is_(None), users.c.email_verify_sent < since))
                .values(email_verify_sent=to_db_time(now))).rowcount)

    def admin_emails(self) -> list[str]:
        """The confirmed addresses of the enabled admins who gave one."""
        with self.engine.connect() as conn:
            return [r.email for r in conn.execute(select(users.c.email).where(
                users.c.is_admin.is_(True), users.c.enabled.is_(True), users.c.email.is_not(None),
                users.c.email_verified.is_(True)))
                if r.email]


def _message(row: Any) -> Message:
    created = from_db_time(row.created)
    assert created is not None
    return Message(row.id, row.kind, row.recipient, row.subject, row.body, created, row.attempts)
