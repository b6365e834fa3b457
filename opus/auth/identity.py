"""Secrets and identities.

The per-job callback token is HMAC-SHA256(server secret, job id): the wrapper proves it runs that
job without the server storing a token per job.  The secret comes from SECRET_KEY, or is generated
once into ``DATA_DIR/secret.key`` (mode 0600).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from opus.settings import Settings

_SECRET_LOCK = threading.Lock()


@lru_cache(maxsize=8)
def _file_secret(path: str) -> bytes:
    with _SECRET_LOCK:
        return _read_or_make_secret(path)


def _read_or_make_secret(path: str) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes().strip()
    except FileNotFoundError:
        pass
    p.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    try:
        os.link(tmp, p)  # atomic: if another process won the race, use its secret
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return p.read_bytes().strip()


def server_secret(settings: Settings) -> bytes:
    if settings.SECRET_KEY:
        return settings.SECRET_KEY.encode()
    return _file_secret(str(Path(settings.DATA_DIR) / "secret.key"))


def job_token(settings: Settings, job_id: str) -> str:
    """The callback token of one job."""
    return hmac.new(server_secret(settings), f"job-event:{job_id}".encode(), hashlib.sha256).hexdigest()


def check_job_token(settings: Settings, job_id: str, token: str | None) -> bool:
    """Constant-time comparison of a presented token with the job's."""
    if not isinstance(token, str):
        return False
    return hmac.compare_digest(job_token(settings, job_id).encode(), token.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Identity:
    """Who is calling: ``name`` None means anonymous.  ``jobdefs``: names allowed, "*" all;
    ``max_active_jobs``: 0 or None for no limit.

    ``owner_key`` is what the caller's jobs and entities belong to, never a bare name: ``user:<id>``
    for a stored user (an id never reused, so a re-created name is another account),
    ``remote:<name>`` for a front-end (REMOTE_USER) name without a stored user, None for anonymous.
    ``name`` is for display only.
    """

    name: str | None = None
    is_admin: bool = False
    jobdefs: frozenset[str] = frozenset({"*"})
    max_active_jobs: int | None = None
    owner_key: str | None = None
    #: May propose and edit job definitions (admins may too: ``may_edit_definitions``).
    is_editor: bool = False
    #: A service token's scope ("read", "submit"); None for the user's own credentials (token,
    #: password session, REMOTE_USER), which alone may manage the account.
    scope: str | None = None
    #: The stored user's groups (``opus.auth.users.User.groups``), read with the user at each request:
    #: a job shared with a group is readable by its members (``opus.service.sharing``).
    groups: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # A named caller without a key would share the anonymous jobs (key None): refuse to exist.
        if (self.name is None) != (self.owner_key is None):
            raise ValueError("an Identity has both a name and an owner key, or neither (anonymous)")

    @property
    def anonymous(self) -> bool:
        return self.name is None

    def may_use(self, jobname: str) -> bool:
        return self.is_admin or "*" in self.jobdefs or jobname in self.jobdefs

    @property
    def may_edit_definitions(self) -> bool:
        """Propose and edit job definitions: the editor role, or an admin."""
        return self.is_admin or self.is_editor


ANONYMOUS = Identity()


def can_access(identity: Identity, owner_key: str | None) -> bool:
    """The one access rule for a job and everything under it: its owner, or an admin.

    ``owner_key`` is the job's or entity's ``owner_key`` (never its display name ``owner_id``).
    Anonymous jobs (no owner) belong to anonymous callers; signed-in users do not see them.
    """
    return identity.is_admin or owner_key == identity.owner_key
