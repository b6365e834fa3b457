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
"""

from __future__ import annotations

import base64
import hmac
import logging
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from opus.auth import users as users_module
from opus.errors import Forbidden, TooManyRequests, Unauthorized
from opus.auth.identity import Identity, server_secret
from opus.auth.throttle import SignInThrottle, address_key
from opus.auth.users import DUMMY_HASH, USER_NAME, User, is_keyed, remote_owner_key, token_id_of, verify_token
from opus.auth import session as web_session
from opus.settings import Settings
from opus.storage.userstore import UserStore

log = logging.getLogger(__name__)
CHALLENGE = 'Basic realm="OPUS", charset="UTF-8", Bearer realm="OPUS"'
WRONG = "wrong user name or token"
#: ``Authorization: Basic Og==``: an empty user name and token.
EMPTY_BASIC = base64.b64encode(b":").decode()
#: owner_id (the display name) is 255 characters; a longer front-end name could not own a job.
MAX_REMOTE_USER = 255


class Authenticator:
    def __init__(self, settings: Settings, users: UserStore) -> None:
        self.settings = settings
        self.users = users
        self.throttle = SignInThrottle(settings.SIGNIN_FAILURE_WINDOW, settings.SIGNIN_MAX_FAILURES_PER_NAME,
                                       settings.SIGNIN_MAX_FAILURES_PER_ADDRESS)
        self._key: bytes | None = None
        self._key_lock = threading.Lock()

    def anonymous(self) -> Identity:
        s = self.settings
        return Identity(None, False, frozenset(s.ANONYMOUS_JOBDEFS), s.DEFAULT_MAX_ACTIVE_JOBS or None)

    def _identity(self, user: User) -> Identity:
        limit = user.max_active_jobs if user.max_active_jobs is not None else self.settings.DEFAULT_MAX_ACTIVE_JOBS
        return Identity(user.name, user.is_admin, frozenset(user.jobdefs), limit or None, user.owner_key)

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
            return self._identity(self._credentials(header, address_key(environ.get("REMOTE_ADDR"))))
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

    def _credentials(self, header: str, address: str | None) -> User:
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
            return self._verify(_name_bucket(name), address, token, name,
                                lambda: self.users.get(name) if USER_NAME.match(name) else None)
        if scheme == "bearer" and s.AUTH_BEARER:
            token = credentials.strip()
            token_id = token_id_of(token)
            # Bucketed by the token id: someone who only knows a user's name cannot lock out her tokens.
            return self._verify(f"token:{token_id}" if token_id else None, address, token, None,
                                lambda: self.users.by_token_id(token_id) if token_id else None)
        accepted = " and ".join(m for m, on in (("HTTP Basic", s.AUTH_BASIC), ("Bearer", s.AUTH_BEARER)) if on)
        self._refuse(address, credentials, f"this authentication scheme is not accepted here; use {accepted}"
                     if accepted else "this server accepts no Authorization header")

    def sign_in(self, name: str, token: str, remote_addr: str | None = None) -> User:
        """The user with this name and token (the web client's sign-in form), or Unauthorized /
        TooManyRequests.  ``remote_addr``: the WSGI server's REMOTE_ADDR."""
        return self._verify(_name_bucket(name), address_key(remote_addr), token, name,
                            lambda: self.users.get(name) if USER_NAME.match(name or "") else None)

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
                lookup: Callable[[], User | None]) -> User:
        self._throttled(name_bucket, address)
        user = lookup()
        presented = users_module.keyed_token_hash(self.token_key(), token).encode()
        if user is None or not user.enabled or (name is not None and user.name != name):
            # The same hash and comparison as a real check: neither cost nor timing tells who exists.
            hmac.compare_digest(presented, DUMMY_HASH.encode())
            ok = False
        elif is_keyed(user.token_hash):
            ok = hmac.compare_digest(presented, user.token_hash.encode("utf-8", "replace"))
        else:
            # A hash of the legacy scheme: PBKDF2 once, then the keyed hash takes its place.
            ok = verify_token(token, user.token_hash)
            if ok:
                self.users.replace_token_hash(user.stored_uid, user.token_hash, presented.decode())
                user.token_hash = presented.decode()
        if not ok or user is None:
            self._failed(name_bucket, address)
            raise Unauthorized(WRONG)
        self.throttle.succeeded(name_bucket)
        return user


def _empty_basic(header: str) -> bool:
    """``Basic`` with an empty name and token (base64 of ":"): no credentials at all, not wrong ones."""
    scheme, _, credentials = header.strip().partition(" ")
    return scheme.lower() == "basic" and credentials.strip() == EMPTY_BASIC


def _name_bucket(name: str | None) -> str:
    return f"name:{(name or '')[:100]}"
