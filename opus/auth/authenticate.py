"""Authentication: who is calling, from the request's credentials and the settings.

Modes (combinable, settings AUTH_*): HTTP Basic ``name:token``, ``Authorization: Bearer
<token>``, ``REMOTE_USER`` from a trusted front end, the web client's session cookie (made by
signing in with a token, ``opus.auth.session``; state-changing requests need its CSRF token), and
anonymous access.  Wrong credentials are always a 401, never a silent fall-back to anonymous; empty
Basic credentials (``Basic Og==``, an empty name and token, which some clients send to mean
"anonymous") are no credentials: anonymous where anonymous access is allowed, else the 401 asking to
sign in.

The cost of a credential is bounded before anyone is known (issue 11, finding 5):
- every presented token, right or wrong, for a user who exists or not, and every malformed header or
  unknown scheme, costs exactly one keyed hash (``opus.auth.users.keyed_token_hash``) and one constant-time
  comparison; PBKDF2 runs only for a user whose stored hash is still of the legacy form, once, after
  which the keyed hash replaces it;
- failed sign-ins are throttled per user name (per token id for Bearer) and per client address
  (``opus.auth.throttle``): a throttled request is answered 429 before any lookup or hash.
A 401 says what is wrong in general terms; it never repeats the credentials, the scheme or the header.

Passwords (argon2id, ``opus.auth.passwords``) are accepted by the web sign-in form only, never in an
Authorization header: an API request's cost stays one keyed hash.  A service token (a named token
of a user with a scope and an expiry) works as Bearer or as Basic with its user's name; it never
carries admin or editor rights, and a "read" token may only GET, HEAD and OPTIONS.
"""

from __future__ import annotations

import base64
import hmac
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from opus.auth import users as users_module
from opus.errors import Forbidden, TooManyRequests, Unauthorized
from opus.auth.identity import Identity, server_secret
from opus.auth.throttle import SignInThrottle, address_key
from opus.auth.passwords import verify_password
from opus.auth.users import (DUMMY_HASH, USER_NAME, ServiceToken, User, is_keyed, remote_owner_key, token_id_of,
                             verify_token)
from opus.auth import session as web_session
from opus.settings import Settings
from opus.storage.userstore import UserStore
from opus.timeutil import utcnow

log = logging.getLogger(__name__)
CHALLENGE = 'Basic realm="OPUS", charset="UTF-8", Bearer realm="OPUS"'
WRONG = "wrong user name or token"
#: ``Authorization: Basic Og==``: an empty user name and token.
EMPTY_BASIC = base64.b64encode(b":").decode()
#: owner_id (the display name) is 255 characters; a longer front-end name could not own a job.
MAX_REMOTE_USER = 255
#: Registrations from one address are counted over this many seconds (REGISTRATION_MAX_PER_ADDRESS).
REGISTRATION_WINDOW = 3600


@dataclass
class Credential:
    """What a presented token is checked against: its user's own token, or one of its service tokens."""

    user: User
    stored: str
    service: ServiceToken | None = None


class Authenticator:
    def __init__(self, settings: Settings, users: UserStore) -> None:
        self.settings = settings
        self.users = users
        self.throttle = SignInThrottle(settings.SIGNIN_FAILURE_WINDOW, settings.SIGNIN_MAX_FAILURES_PER_NAME,
                                       settings.SIGNIN_MAX_FAILURES_PER_ADDRESS)
        # Self-registrations, counted per client address like failed sign-ins (opus.auth.accounts).
        self.registrations = SignInThrottle(REGISTRATION_WINDOW, 0, settings.REGISTRATION_MAX_PER_ADDRESS)
        self._key: bytes | None = None
        self._key_lock = threading.Lock()

    def anonymous(self) -> Identity:
        s = self.settings
        return Identity(None, False, frozenset(s.ANONYMOUS_JOBDEFS), s.DEFAULT_MAX_ACTIVE_JOBS or None)

    def _identity(self, user: User, service: ServiceToken | None = None) -> Identity:
        limit = user.max_active_jobs if user.max_active_jobs is not None else self.settings.DEFAULT_MAX_ACTIVE_JOBS
        if service is not None:  # an application's token: the user's jobs, never admin or editor rights
            return Identity(user.name, False, frozenset(user.jobdefs), limit or None, user.owner_key,
                            scope=service.scope, groups=user.groups)
        return Identity(user.name, user.is_admin, frozenset(user.jobdefs), limit or None, user.owner_key,
                        is_editor=user.is_editor, groups=user.groups)

    def token_key(self) -> bytes:
        """The key of token hashes (derived once from the server secret: one HMAC per check, not two)."""
        if self._key is None:
            with self._key_lock:
                self._key = users_module.token_key(server_secret(self.settings))
        return self._key

    def identify(self, environ: dict[str, Any]) -> Identity:
        """The caller of a request, or Unauthorized (401), or TooManyRequests (429)."""
        s = self.settings
        header = environ.get("HTTP_AUTHORIZATION", "")
        if _empty_basic(header):
            header = ""  # empty name and token: some clients' way of saying "anonymous" (no hash, no 401)
        if header:
            credential = self._credentials(header, address_key(environ.get("REMOTE_ADDR")))
            if credential.service is not None and credential.service.scope == "read" and \
                    environ.get("REQUEST_METHOD", "GET").upper() not in web_session.SAFE_METHODS:
                raise Forbidden("this service token is read-only (scope \"read\"): it may only GET")
            return self._identity(credential.user, credential.service)
        if s.AUTH_REMOTE_USER and environ.get("REMOTE_USER"):
            name = environ["REMOTE_USER"]
            if len(name) > MAX_REMOTE_USER:
                raise Unauthorized(f"the front end's user name is longer than {MAX_REMOTE_USER} characters")
            user = self.users.get(name) if USER_NAME.match(name) else None
            if user is None:  # authenticated by the front end, unknown here: a plain user of that name
                return Identity(name, False, frozenset(s.REMOTE_USER_JOBDEFS), s.DEFAULT_MAX_ACTIVE_JOBS or None,
                                remote_owner_key(name))
            if not user.enabled:
                raise Unauthorized(f"user {name!r} is disabled")
            return self._identity(user)
        cookie = web_session.cookie_of(environ)
        if cookie is not None:
            return self._session(environ, cookie)
        if s.ALLOW_ANONYMOUS:
            return self.anonymous()
        raise Unauthorized("sign in: send HTTP Basic name:token or a Bearer token")

    def _credentials(self, header: str, address: str | None) -> Credential:
        """The user an Authorization header proves; every refusal costs the same one keyed hash."""
        s = self.settings
        scheme, _, credentials = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and s.AUTH_BASIC:
            try:
                name, sep, token = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                sep = ""
            if not sep:
                self._refuse(address, credentials, "malformed Basic credentials: send base64 of name:token")
            return self._verify(name_bucket(name), address, token, name, lambda: self._by_name(name, token))
        if scheme == "bearer" and s.AUTH_BEARER:
            token = credentials.strip()
            token_id = token_id_of(token)
            # Bucketed by the token id: someone who only knows a user's name cannot lock out her tokens.
            return self._verify(f"token:{token_id}" if token_id else None, address, token, None,
                                lambda: self._by_token_id(token_id) if token_id else None)
        accepted = " and ".join(m for m, on in (("HTTP Basic", s.AUTH_BASIC), ("Bearer", s.AUTH_BEARER)) if on)
        self._refuse(address, credentials, f"this authentication scheme is not accepted here; use {accepted}"
                     if accepted else "this server accepts no Authorization header")

    def _by_name(self, name: str, token: str, services: bool = True) -> Credential | None:
        """Basic: the user's own token, or (``services``) one of the user's service tokens."""
        user = self.users.get(name) if USER_NAME.match(name or "") else None
        if user is None:
            return None
        token_id = token_id_of(token)
        if services and token_id and token_id != user.token_id:
            service = self.users.service_token(token_id)
            if service is not None and service.uid == user.uid:
                return Credential(user, service.token_hash, service)
        return Credential(user, user.token_hash)

    def _by_token_id(self, token_id: str) -> Credential | None:
        user = self.users.by_token_id(token_id)
        if user is not None:
            return Credential(user, user.token_hash)
        service = self.users.service_token(token_id)
        owner = self.users.by_uid(service.uid) if service is not None else None
        return Credential(owner, service.token_hash, service) if owner is not None and service is not None else None

    def sign_in(self, name: str, secret: str, remote_addr: str | None = None) -> User:
        """The user with this name and password or (own, not service) token: the web client's sign-in
        form.  Unauthorized or TooManyRequests otherwise.  ``remote_addr``: the WSGI server's REMOTE_ADDR.
        A secret shaped like a token is checked as one (a keyed hash), anything else as a password."""
        bucket, address = name_bucket(name), address_key(remote_addr)
        if token_id_of(secret):
            return self._verify(bucket, address, secret, name, lambda: self._by_name(name, secret, False)).user
        # Every secret costs the form the same keyed hash first, a token's or a password's.
        hmac.compare_digest(users_module.keyed_token_hash(self.token_key(), secret).encode(), DUMMY_HASH.encode())
        return self.check_password(name, secret, remote_addr)

    def check_password(self, name: str, password: str, remote_addr: str | None = None) -> User:
        """The enabled user ``name`` if ``password`` is its password (throttled like every sign-in)."""
        bucket, address = name_bucket(name), address_key(remote_addr)
        self.throttled(bucket, address)
        user = self.users.get(name) if USER_NAME.match(name or "") else None
        usable = user is not None and user.enabled
        ok = verify_password(self.settings, password, user.password_hash if usable and user else None)
        if not ok or user is None:
            self.failed(bucket, address)
            raise Unauthorized(WRONG)
        self.throttle.succeeded(bucket)
        return user

    def _session(self, environ: dict[str, Any], cookie: str) -> Identity:
        """The user of a web session; state-changing requests must carry its CSRF token."""
        session = web_session.parse(self.settings, cookie)
        if session is None:
            raise Unauthorized("your session has expired or is not valid: sign in again")
        user = self.users.get(session.name)
        if user is None or not user.enabled or web_session.fingerprint(user.session_stamp) != session.fingerprint:
            raise Unauthorized("your session has ended (new token or disabled user): sign in again")
        environ["opus.session"] = session
        if environ.get("REQUEST_METHOD", "GET").upper() not in web_session.SAFE_METHODS and \
                not web_session.check_csrf(self.settings, session, environ.get("HTTP_X_CSRF_TOKEN")):
            raise Forbidden("this request comes with a session cookie but without its CSRF token "
                            f"(header {web_session.CSRF_HEADER})")
        return self._identity(user)

    def throttled(self, name_bucket: str | None, address: str | None) -> None:
        """TooManyRequests when a name bucket (``name:<user name>``) or address is throttled."""
        self._throttled(name_bucket, address)

    def failed(self, name_bucket: str | None, address: str | None) -> None:
        """Count one failed proof of identity (a password, a reset code)."""
        self._failed(name_bucket, address)

    # ---- the check itself ----------------------------------------------------------------------------
    def _throttled(self, name_bucket: str | None, address: str | None) -> None:
        wait = self.throttle.retry_after(name_bucket, address)
        if wait is not None:
            raise TooManyRequests(f"too many failed sign-ins for this user name or from this address: "
                                  f"try again in {wait} s", wait)

    def _failed(self, name_bucket: str | None, address: str | None) -> None:
        for key in self.throttle.failed(name_bucket, address):
            log.warning("failed sign-ins: %s reached its limit; throttled for up to %d s",
                        "a client address" if key.startswith("addr:") else "a user name or token id",
                        self.throttle.window)

    def _refuse(self, address: str | None, presented: str, message: str) -> NoReturn:
        """A header that names nobody: the same one keyed hash as any check, then 401."""
        self._throttled(None, address)
        hmac.compare_digest(users_module.keyed_token_hash(self.token_key(), presented).encode(), DUMMY_HASH.encode())
        self._failed(None, address)
        raise Unauthorized(message)

    def _verify(self, name_bucket: str | None, address: str | None, token: str, name: str | None,
                lookup: Callable[[], Credential | None]) -> Credential:
        self._throttled(name_bucket, address)
        found = lookup()
        user = found.user if found is not None else None
        presented = users_module.keyed_token_hash(self.token_key(), token).encode()
        if found is None or user is None or not user.enabled or (name is not None and user.name != name):
            # The same hash and comparison as a real check: neither cost nor timing tells who exists.
            hmac.compare_digest(presented, DUMMY_HASH.encode())
            ok = False
        elif is_keyed(found.stored):
            ok = hmac.compare_digest(presented, found.stored.encode("utf-8", "replace"))
        else:
            # A hash of the legacy scheme: PBKDF2 once, then the keyed hash takes its place.
            ok = found.service is None and verify_token(token, user.token_hash)
            if ok:
                self.users.replace_token_hash(user.stored_uid, user.token_hash, presented.decode())
                user.token_hash = presented.decode()
        if not ok or found is None:
            self._failed(name_bucket, address)
            raise Unauthorized(WRONG)
        if found.service is not None and found.service.expires <= utcnow():
            raise Unauthorized("this service token has expired: make a new one on your profile page")
        self.throttle.succeeded(name_bucket)
        return found


def _empty_basic(header: str) -> bool:
    """``Basic`` with an empty name and token (base64 of ":"): no credentials at all, not wrong ones."""
    scheme, _, credentials = header.strip().partition(" ")
    return scheme.lower() == "basic" and credentials.strip() == EMPTY_BASIC


def name_bucket(name: str | None) -> str:
    return f"name:{(name or '')[:100]}"
