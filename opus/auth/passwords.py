"""Passwords: argon2id hashes (argon2-cffi), the rules a new password follows, bounded cost.

Passwords sign in to the web client only (the sign-in form, ``Authenticator.sign_in``); HTTP
clients use tokens, whose check costs one keyed hash (``opus.auth.authenticate``).  An argon2 check
costs tens of milliseconds and ``PASSWORD_HASH_MEMORY_COST`` KiB of memory, so at most
``MAX_CONCURRENT_HASHES`` run at once in a process, and failed sign-ins are throttled before any
hash (``opus.auth.throttle``).  A sign-in for a user who does not exist or has no password verifies
against a dummy hash of the same parameters: neither the answer nor its time tells who has one.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from opus.errors import BadRequest
from opus.settings import Settings

#: Longest password accepted: the cost of a hash must not grow with what a stranger sends.
MAX_LENGTH = 1024
#: argon2 hashes running at once in one process (each holds PASSWORD_HASH_MEMORY_COST KiB).
MAX_CONCURRENT_HASHES = 2
_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_cost: int) -> tuple[PasswordHasher, str]:
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=1)
    return hasher, hasher.hash("opus: no password here")


def hasher(settings: Settings) -> PasswordHasher:
    return _hasher(settings.PASSWORD_HASH_TIME_COST, settings.PASSWORD_HASH_MEMORY_COST)[0]


def check_new_password(settings: Settings, password: object, name: str = "") -> str:
    """A new password as given, or BadRequest saying what rule it breaks."""
    if not isinstance(password, str) or not password:
        raise BadRequest("give a password")
    if len(password) < settings.PASSWORD_MIN_LENGTH:
        raise BadRequest(f"a password has at least {settings.PASSWORD_MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise BadRequest(f"a password has at most {MAX_LENGTH} characters")
    if name and password.casefold() == name.casefold():
        raise BadRequest("a password must not be the user name")
    return password


def hash_password(settings: Settings, password: str) -> str:
    with _SLOTS:
        return hasher(settings).hash(password)


def verify_password(settings: Settings, password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored`` (an argon2 hash); with None, the same work against a
    dummy hash, and False."""
    ph, dummy = _hasher(settings.PASSWORD_HASH_TIME_COST, settings.PASSWORD_HASH_MEMORY_COST)
    if len(password) > MAX_LENGTH:
        return False
    with _SLOTS:
        try:
            return bool(ph.verify(stored or dummy, password)) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
