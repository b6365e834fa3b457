"""Accounts as their users run them: registration, passwords, resets, one's own token, service tokens.

What the account routes (``opus.server.account_routes``) and the admin API call; no HTTP here.

* Registration (``REGISTRATION``): "off", "open" (the account works at once) or "approved" (it is
  created disabled; an admin enables it).  At most ``REGISTRATION_MAX_PER_ADDRESS`` attempts per
  client address per hour, each costing one argon2 hash.
* A password reset is a one-time code an admin issues (``issue_reset``), valid
  ``PASSWORD_RESET_LIFETIME`` seconds, stored only as its SHA-256; wrong codes are throttled like
  failed sign-ins.
* A service token is named, has a scope ("read" or "submit") and an expiry; a user has at most
  ``MAX_SERVICE_TOKENS``.  Setting a password, and replacing one's token, end the user's web sessions
  (``User.session_stamp``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from opus.auth.authenticate import Authenticator, name_bucket
from opus.auth.passwords import check_new_password, hash_password
from opus.auth.throttle import address_key
from opus.auth.users import SCOPES, ServiceToken, User, check_user_name, new_token
from opus.errors import BadRequest, Forbidden, NotFound, TooManyRequests
from opus.settings import Settings
from opus.storage.userstore import UserExists, UserStore
from opus.timeutil import utcnow

MAX_SERVICE_TOKENS = 50
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.@\-]{0,63}\Z")
EMAIL = re.compile(r"^[^@\s<>\"]{1,64}@[^@\s<>\"]+\.[^@\s<>\"]+\Z")


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def check_email(value: object) -> str | None:
    """An optional e-mail address: None when empty, BadRequest when malformed."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 254 or not EMAIL.match(value.strip()):
        raise BadRequest("the e-mail address is not valid")
    return value.strip()


class Accounts:
    """The account operations of one server (``auth``: its Authenticator, for throttling and the key)."""

    def __init__(self, users: UserStore, settings: Settings, auth: Authenticator,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.users = users
        self.settings = settings
        self.auth = auth
        self.now = now

    def user(self, name: str) -> User:
        user = self.users.get(name)
        if user is None:
            raise NotFound(f"no user {name!r}")
        return user

    # ---- registration and passwords ------------------------------------------------------------------
    def register(self, name: str, password: object, email: object = None, remote_addr: str | None = None) -> User:
        """A new account of ``name``; enabled at once only when REGISTRATION is "open"."""
        s = self.settings
        if s.REGISTRATION not in ("open", "approved"):
            raise Forbidden("self-registration is off on this server: ask an admin for an account")
        address = address_key(remote_addr)
        wait = self.auth.registrations.retry_after(None, address)
        if wait is not None:
            raise TooManyRequests(f"too many registrations from this address: try again in {wait} s", wait)
        self.auth.registrations.failed(None, address)  # every attempt counts, names taken or not
        check_user_name(name)
        password_hash = hash_password(s, check_new_password(s, password, name))
        _token, token_id, token_hash = new_token(self.auth.token_key())
        user = User(name=name, enabled=s.REGISTRATION == "open", jobdefs=set(s.REGISTRATION_JOBDEFS),
                    token_id=token_id, token_hash=token_hash, created=self.now(), password_hash=password_hash,
                    email=check_email(email))
        try:
            self.users.add(user)
        except UserExists:
            raise BadRequest(f"the user name {name!r} is taken: choose another") from None
        return user

    def set_password(self, name: str, password: object) -> User:
        """Set a user's password (no check of the old one: the caller proved who it is)."""
        user = self.user(name)
        self.users.update(name, password_hash=hash_password(self.settings, check_new_password(
            self.settings, password, name)), reset_hash=None, reset_expires=None)
        return self.user(user.name)

    def change_password(self, name: str, current: object, new: object, remote_addr: str | None = None) -> User:
        """Change one's own password: the current one is needed when there is one (throttled)."""
        user = self.user(name)
        check_new_password(self.settings, new, name)
        if user.password_hash:
            if not isinstance(current, str) or not current:
                raise BadRequest("give your current password")
            self.auth.check_password(name, current, remote_addr)
        return self.set_password(name, new)

    def issue_reset(self, name: str) -> tuple[str, datetime]:
        """A one-time password reset code for ``name`` (shown once) and its expiry; replaces any other."""
        self.user(name)
        code = secrets.token_urlsafe(24)
        expires = self.now() + timedelta(seconds=self.settings.PASSWORD_RESET_LIFETIME)
        self.users.update(name, reset_hash=_digest(code), reset_expires=expires)
        return code, expires

    def reset_password(self, name: str, code: str, password: object, remote_addr: str | None = None) -> User:
        """Set the password with a reset code, once; wrong codes count as failed sign-ins of ``name``."""
        bucket, address = name_bucket(name), address_key(remote_addr)
        self.auth.throttled(bucket, address)
        password = check_new_password(self.settings, password, name)
        user = self.users.get(name)
        expected = user.reset_hash if user is not None and user.reset_hash else "0" * 64
        valid = hmac.compare_digest(_digest(code or ""), expected)
        if user is None or not user.reset_hash or not valid or not user.reset_expires \
                or user.reset_expires <= self.now():
            self.auth.failed(bucket, address)
            raise Forbidden("this password reset link is not valid, was used already or has expired: "
                            "ask an admin for a new one")
        if not self.users.consume_reset(user.stored_uid, user.reset_hash, hash_password(self.settings, password)):
            raise Forbidden("this password reset link was used already")
        return self.user(name)

    def replace_token(self, name: str) -> tuple[User, str]:
        """A new own token for ``name`` (shown once); the old one stops working at once."""
        self.user(name)
        token, token_id, token_hash = new_token(self.auth.token_key())
        self.users.update(name, token_id=token_id, token_hash=token_hash)
        return self.user(name), token

    # ---- service tokens ----------------------------------------------------------------------------
    def service_tokens(self, name: str) -> list[ServiceToken]:
        return self.users.service_tokens(self.user(name).stored_uid)

    def new_service_token(self, name: str, label: object, scope: object, days: object) -> tuple[ServiceToken, str]:
        """A named service token of ``name`` with a scope and a life in days: (it, the token shown once)."""
        user = self.user(name)
        if not isinstance(label, str) or not TOKEN_NAME.match(label.strip()):
            raise BadRequest("a service token's name: 1 to 64 letters, digits, spaces, '_', '.', '@', '-'")
        if scope not in SCOPES:
            raise BadRequest(f"a service token's scope is one of {', '.join(SCOPES)}")
        limit = self.settings.SERVICE_TOKEN_MAX_DAYS
        try:
            life = int(str(days))
        except ValueError:
            raise BadRequest(f"days: a whole number from 1 to {limit}") from None
        if not 1 <= life <= limit:
            raise BadRequest(f"days: a whole number from 1 to {limit}")
        existing = self.users.service_tokens(user.stored_uid)
        if len(existing) >= MAX_SERVICE_TOKENS:
            raise BadRequest(f"at most {MAX_SERVICE_TOKENS} service tokens per user: revoke some first")
        token, token_id, token_hash = new_token(self.auth.token_key())
        now = self.now()
        made = ServiceToken(token_id, user.stored_uid, label.strip(), token_hash, scope, now + timedelta(days=life),
                            now)
        self.users.add_service_token(made)
        return made, token

    def revoke(self, name: str, token_id: str) -> None:
        if not self.users.delete_service_token(self.user(name).stored_uid, token_id):
            raise NotFound(f"no service token {token_id!r} of {name!r}")
