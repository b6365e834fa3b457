"""Users and their tokens (no HTTP, no SQL).

A token is ``<token_id>.<secret>``: the token id is public and finds the user of a Bearer token.
Tokens are random (256 bits of secret), shown once when made, and can be replaced at any time.

The whole token is stored only as a keyed hash, ``hmac_sha256$`` + HMAC-SHA256(key, token), the key
derived from the server secret.  A slow password hash buys nothing for 256 random bits (nobody can
enumerate them), while it made every wrong credential cost 200,000 rounds of PBKDF2: the keyed hash
is a thousand times cheaper and, with the key out of the database, a stolen database alone cannot
even test a guess.  Hashes of the previous scheme (``pbkdf2_sha256$...``) are still verified, and
replaced by the keyed form on their first successful use (``opus.auth.authenticate``).

Every user has an id (``uid``) that is never given again, even after the user is deleted: jobs and
entities belong to the owner key ``user:<uid>`` (``owner_key``), so a name re-created later is
another account and does not inherit anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from opus.errors import BadRequest

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}\Z")
ITERATIONS = 200_000  # the legacy PBKDF2 scheme only
KEYED = "hmac_sha256"
LEGACY = "pbkdf2_sha256"
#: What an unknown user's check compares against: the same work and comparison as a real one.
DUMMY_HASH = f"{KEYED}${base64.urlsafe_b64encode(bytes(32)).decode()}"
#: A group name follows the user name rule (``USER_NAME``); a user belongs to at most this many groups.
MAX_GROUPS = 100


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
    #: Given by the database when the user is stored; never reused (opus.storage.userstore).
    uid: int | None = None
    #: argon2id hash of the password (opus.auth.passwords); None: tokens only.
    password_hash: str | None = None
    #: May propose and edit job definitions (admins always may).
    is_editor: bool = False
    email: str | None = None
    #: ``email`` was confirmed (its link opened, or set by an admin or opus migrate): notifications
    #: go only to a confirmed address (opus.service.notifications).
    email_verified: bool = False
    #: A pending password reset: SHA-256 (hex) of its one-time code, and when it expires.
    reset_hash: str | None = None
    reset_expires: datetime | None = None
    #: Names of the groups the user belongs to (an admin's, or the identity provider's groups claim);
    #: a job shared with a group is readable by its members (opus.service.sharing).
    groups: frozenset[str] = frozenset()

    def may_use(self, jobname: str) -> bool:
        return self.is_admin or "*" in self.jobdefs or jobname in self.jobdefs

    @property
    def stored_uid(self) -> int:
        """``uid`` of a user read from the store (ValueError for one not stored yet)."""
        if self.uid is None:
            raise ValueError(f"user {self.name!r} has no id yet (not stored)")
        return self.uid

    @property
    def owner_key(self) -> str:
        """What the user's jobs and entities are owned by (``opus.auth.identity.can_access``)."""
        return user_owner_key(self.stored_uid)

    @property
    def session_stamp(self) -> str:
        """Changes when the token is replaced or the account re-created (web sessions end), and not
        when the stored hash only changes scheme.  A password set or changed changes it too."""
        stamp = f"{self.uid}:{self.token_id}"
        if self.password_hash:
            stamp += ":" + hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]
        return stamp

    @property
    def roles(self) -> list[str]:
        return ["admin", "editor", "user"] if self.is_admin else ["editor", "user"] if self.is_editor else ["user"]

    def public(self) -> dict[str, object]:
        """What the admin API shows (never the token or its hash)."""
        return {"name": self.name, "id": self.uid, "roles": self.roles,
                "enabled": self.enabled, "maxActiveJobs": self.max_active_jobs,
                "jobDefinitions": sorted(self.jobdefs), "password": bool(self.password_hash),
                "email": self.email, "emailVerified": self.email_verified, "groups": sorted(self.groups), "created": _iso(self.created)}


#: Scopes of service tokens: "read" (GET, HEAD, OPTIONS) and "submit" (the user's own jobs).
SCOPES = ("read", "submit")


@dataclass
class ServiceToken:
    """A named token of a user for an application, with a scope and an expiry (never admin or
    editor rights, never account management)."""

    token_id: str
    uid: int
    name: str
    token_hash: str
    scope: str
    expires: datetime
    created: datetime

    def public(self) -> dict[str, object]:
        return {"id": self.token_id, "name": self.name, "scope": self.scope, "expires": _iso(self.expires),
                "created": _iso(self.created)}


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not USER_NAME.match(name):
        raise BadRequest(f"user name {name!r}: letters, digits, '_', '.', '@', '-' (at most 64)")
    return name


def check_group_name(name: str) -> str:
    """A valid group name (the user name rule: letters, digits, '_', '.', '@', '-', at most 64)."""
    if not isinstance(name, str) or not USER_NAME.match(name):
        raise BadRequest(f"group name {name!r}: letters, digits, '_', '.', '@', '-' (at most 64)")
    return name


def parse_groups(value: object) -> frozenset[str]:
    """Group names from a list or a comma/space separated string ("" or None: no group), each checked
    (``check_group_name``), at most ``MAX_GROUPS``; BadRequest otherwise."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        items: Iterable[object] = re.split(r"[,\s]+", value)
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        raise BadRequest("groups: a list of group names or a comma-separated string")
    names = set()
    for item in items:
        if not isinstance(item, str):
            raise BadRequest(f"group name {item!r} is not a string")
        if item.strip():
            names.add(check_group_name(item.strip()))
    if len(names) > MAX_GROUPS:
        raise BadRequest(f"at most {MAX_GROUPS} groups per user ({len(names)} given)")
    return frozenset(names)


def usable_groups(names: Iterable[object]) -> frozenset[str]:
    """The valid group names among ``names`` (an identity provider's claim, which may hold names this
    server cannot use, such as "/a/b" paths): the others are left out, never an error; at most
    ``MAX_GROUPS`` (the first ones, sorted)."""
    valid = sorted({n for n in names if isinstance(n, str) and USER_NAME.match(n)})
    return frozenset(valid[:MAX_GROUPS])


def user_owner_key(uid: int) -> str:
    return f"user:{uid}"


#: The grantee key of a group a job is shared with (``opus.service.sharing``); it never owns anything.
GROUP_KEY_PREFIX = "group:"


def group_key(name: str) -> str:
    """The grantee key of the group ``name`` (job shares: ``group:<name>``)."""
    return GROUP_KEY_PREFIX + name


def remote_owner_key(name: str) -> str:
    """The owner key of a front-end (REMOTE_USER) name that has no stored user."""
    return f"remote:{name}"


def token_key(secret: bytes) -> bytes:
    """The key of the users' token hashes, derived from the server secret (and of nothing else)."""
    return hmac.new(secret, b"opus-user-token:v1", hashlib.sha256).digest()


def keyed_token_hash(key: bytes, token: str) -> str:
    """The stored form of a token: the one cheap keyed hash a token check computes."""
    digest = hmac.new(key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return f"{KEYED}${base64.urlsafe_b64encode(digest).decode()}"


def new_token(key: bytes | None = None) -> tuple[str, str, str]:
    """(token, token_id, hash): the token is shown once, the other two are stored.

    Without ``key`` (a tool that opened the database without the server's settings) the hash is of
    the legacy PBKDF2 form, which the server replaces by the keyed form on the token's first use.
    """
    token_id = secrets.token_hex(8)
    token = f"{token_id}.{secrets.token_urlsafe(32)}"
    return token, token_id, keyed_token_hash(key, token) if key is not None else hash_token(token)


def is_keyed(stored: str) -> bool:
    return stored.startswith(KEYED + "$")


def hash_token(token: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The legacy PBKDF2-SHA256 form (still verified; new tokens are keyed hashes)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", token.encode(), salt, iterations)
    b64 = base64.urlsafe_b64encode
    return f"{LEGACY}${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_token(token: str, stored: str) -> bool:
    """Constant-time check of a presented token against a stored legacy PBKDF2 hash."""
    try:
        algorithm, iterations, salt, digest = stored.split("$")
        if algorithm != LEGACY:
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha256", token.encode(), base64.urlsafe_b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, actual)


def token_id_of(token: str) -> str | None:
    head, sep, _ = token.partition(".")
    return head if sep and re.fullmatch(r"[0-9a-f]{16}", head) else None


def parse_jobdefs(value: object) -> set[str]:
    """A set of job definition names from a list or a comma/space separated string ("*": all)."""
    items = value if isinstance(value, (list, tuple, set)) else re.split(r"[,\s]+", str(value or ""))
    out = {str(i).strip() for i in items if str(i).strip()}
    for name in out:
        if name != "*" and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", name):
            raise BadRequest(f"job definition name {name!r} is not valid")
    return out
