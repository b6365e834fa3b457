"""Users and their tokens (no HTTP, no SQL).

A token is ``<token_id>.<secret>``: the token id is public and finds the user of a Bearer token;
the whole token is kept only as a PBKDF2-SHA256 hash.  Tokens are random (256 bits), shown once
when made, and can be replaced at any time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from .errors import BadRequest

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}\Z")
ITERATIONS = 200_000


@dataclass
class User:
    """A stored user; ``jobdefs`` holds definition names or "*" for all."""

    name: str
    is_admin: bool = False
    enabled: bool = True
    max_active_jobs: int | None = None
    jobdefs: set[str] = field(default_factory=lambda: {"*"})
    token_id: str = ""
    token_hash: str = ""
    created: datetime | None = None

    def may_use(self, jobname: str) -> bool:
        return self.is_admin or "*" in self.jobdefs or jobname in self.jobdefs

    def public(self) -> dict:
        """What the admin API shows (never the token or its hash)."""
        return {"name": self.name, "roles": ["admin", "user"] if self.is_admin else ["user"],
                "enabled": self.enabled, "maxActiveJobs": self.max_active_jobs,
                "jobDefinitions": sorted(self.jobdefs),
                "created": self.created.strftime("%Y-%m-%dT%H:%M:%SZ") if self.created else None}


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not USER_NAME.match(name):
        raise BadRequest(f"user name {name!r}: letters, digits, '_', '.', '@', '-' (at most 64)")
    return name


def new_token() -> tuple[str, str, str]:
    """(token, token_id, hash): the token is shown once, the other two are stored."""
    token_id = secrets.token_hex(8)
    token = f"{token_id}.{secrets.token_urlsafe(32)}"
    return token, token_id, hash_token(token)


def hash_token(token: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", token.encode(), salt, iterations)
    b64 = base64.urlsafe_b64encode
    return f"pbkdf2_sha256${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_token(token: str, stored: str) -> bool:
    """Constant-time check of a presented token against a stored hash."""
    try:
        algorithm, iterations, salt, digest = stored.split("$")
        if algorithm != "pbkdf2_sha256":
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha256", token.encode(), base64.urlsafe_b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, actual)


def token_id_of(token: str) -> str | None:
    head, sep, _ = token.partition(".")
    return head if sep and re.fullmatch(r"[0-9a-f]{16}", head) else None


def parse_jobdefs(value) -> set[str]:
    """A set of job definition names from a list or a comma/space separated string ("*": all)."""
    items = value if isinstance(value, (list, tuple, set)) else re.split(r"[,\s]+", str(value or ""))
    out = {str(i).strip() for i in items if str(i).strip()}
    for name in out:
        if name != "*" and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", name):
            raise BadRequest(f"job definition name {name!r} is not valid")
    return out
