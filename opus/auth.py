"""Authentication: who is calling, from the request's credentials and the settings.

Modes (combinable, settings AUTH_*): HTTP Basic ``name:token``, ``Authorization: Bearer
<token>``, ``REMOTE_USER`` from a trusted front end, the web client's session cookie (made by
signing in with a token, ``opus.web.session``; state-changing requests need its CSRF token), and
anonymous access.  Wrong credentials are always a 401, never a silent fall-back to anonymous.  A
successful PBKDF2 check is remembered for a few minutes (keyed by an HMAC of the token,
invalidated when the stored hash changes) so that signed-in clients do not pay the slow hash on
every request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time

from .errors import Forbidden, Unauthorized
from .security import Identity, server_secret
from .users import USER_NAME, User, token_id_of, verify_token
from .web import session as web_session

CACHE_SECONDS = 300
CHALLENGE = 'Basic realm="OPUS", charset="UTF-8", Bearer realm="OPUS"'


class Authenticator:
    def __init__(self, settings, users):
        self.settings = settings
        self.users = users
        self._verified: dict[bytes, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def anonymous(self) -> Identity:
        s = self.settings
        return Identity(None, False, frozenset(s.ANONYMOUS_JOBDEFS), s.DEFAULT_MAX_ACTIVE_JOBS or None)

    def _identity(self, user: User) -> Identity:
        limit = user.max_active_jobs if user.max_active_jobs is not None else self.settings.DEFAULT_MAX_ACTIVE_JOBS
        return Identity(user.name, user.is_admin, frozenset(user.jobdefs), limit or None)

    def identify(self, environ: dict) -> Identity:
        """The caller of a request, or Unauthorized (401)."""
        s = self.settings
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header:
            scheme, _, credentials = header.strip().partition(" ")
            scheme = scheme.lower()
            if scheme == "basic" and s.AUTH_BASIC:
                try:
                    name, sep, token = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
                except (ValueError, UnicodeDecodeError):
                    raise Unauthorized("malformed Basic credentials") from None
                if not sep:
                    raise Unauthorized("malformed Basic credentials")
                return self._check(self.users.get(name) if name else None, token, name)
            if scheme == "bearer" and s.AUTH_BEARER:
                token = credentials.strip()
                token_id = token_id_of(token)
                return self._check(self.users.by_token_id(token_id) if token_id else None, token, None)
            raise Unauthorized(f"authentication scheme {scheme!r} is not accepted here")
        if s.AUTH_REMOTE_USER and environ.get("REMOTE_USER"):
            name = environ["REMOTE_USER"]
            user = self.users.get(name)
            if user is None:  # authenticated by the front end, unknown here: a plain user
                return Identity(name, False, frozenset(s.REMOTE_USER_JOBDEFS), s.DEFAULT_MAX_ACTIVE_JOBS or None)
            if not user.enabled:
                raise Unauthorized(f"user {name!r} is disabled")
            return self._identity(user)
        cookie = web_session.cookie_of(environ)
        if cookie is not None:
            return self._session(environ, cookie)
        if s.ALLOW_ANONYMOUS:
            return self.anonymous()
        raise Unauthorized("sign in: send HTTP Basic name:token or a Bearer token")

    def sign_in(self, name: str, token: str) -> User:
        """The user with this name and token (the web client's sign-in form), or Unauthorized."""
        user = self.users.get(name) if USER_NAME.match(name or "") else None
        self._check(user, token, name)
        return user

    def _session(self, environ: dict, cookie: str) -> Identity:
        """The user of a web session; state-changing requests must carry its CSRF token."""
        session = web_session.parse(self.settings, cookie)
        if session is None:
            raise Unauthorized("your session has expired or is not valid: sign in again")
        user = self.users.get(session.name)
        if user is None or not user.enabled or web_session.fingerprint(user.token_hash) != session.fingerprint:
            raise Unauthorized("your session has ended (new token or disabled user): sign in again")
        environ["opus.session"] = session
        if environ.get("REQUEST_METHOD", "GET").upper() not in web_session.SAFE_METHODS and \
                not web_session.check_csrf(self.settings, session, environ.get("HTTP_X_CSRF_TOKEN")):
            raise Forbidden("this request comes with a session cookie but without its CSRF token "
                            f"(header {web_session.CSRF_HEADER})")
        return self._identity(user)

    def _check(self, user: User | None, token: str, name: str | None) -> Identity:
        if user is None or not user.enabled or (name is not None and user.name != name):
            # Spend the same time as a real check, so that timing does not reveal user names.
            verify_token(token, "pbkdf2_sha256$200000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            raise Unauthorized("wrong user name or token")
        key = hmac.new(server_secret(self.settings), f"{user.name}\0{token}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            cached = self._verified.get(key)
        if cached is None or cached[0] < now or cached[1] != user.token_hash:
            if not verify_token(token, user.token_hash):
                raise Unauthorized("wrong user name or token")
            with self._lock:
                if len(self._verified) > 10000:
                    self._verified.clear()
                self._verified[key] = (now + CACHE_SECONDS, user.token_hash)
        return self._identity(user)
