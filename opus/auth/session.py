"""Browser sessions: a signed cookie made when a user signs in with a token, and CSRF tokens.

The cookie holds the user name, a random session id, an expiry and a fingerprint of the user's
account id and token id (``User.session_stamp``), signed with HMAC-SHA256 under a key derived from
the server secret.  Nothing is stored on the server: replacing the user's token, disabling the user,
or deleting and re-creating the name ends every session at once, and the expiry
(``SESSION_LIFETIME``) bounds the rest.  Upgrading a legacy token hash to the keyed form does not.

A session's CSRF token is HMAC(key, session id).  Pages carry it in ``<meta name="csrf-token">``
and forms in the field ``_csrf``; scripts send it as the ``X-CSRF-Token`` header.  Every request
authenticated by the cookie with a method other than GET, HEAD or OPTIONS must carry it
(``opus.auth.authenticate``).  Requests with Basic or Bearer credentials need none: browsers never attach
those to another site's request on their own.

The sign-in form itself is protected against login CSRF by a short-lived random cookie
(``opus_signin``) whose HMAC the form must return.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from typing import Any

from opus.auth.identity import server_secret
from opus.settings import Settings

COOKIE = "opus_session"
SIGNIN_COOKIE = "opus_signin"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SIGNIN_LIFETIME = 3600
_VERSION = "v1"


@dataclass(frozen=True)
class Session:
    name: str
    sid: str
    expires: int
    fingerprint: str


def _key(settings: Settings, purpose: str) -> bytes:
    return hmac.new(server_secret(settings), f"opus-web:{purpose}".encode(), hashlib.sha256).digest()


def _mac(settings: Settings, purpose: str, message: str) -> str:
    digest = hmac.new(_key(settings, purpose), message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def fingerprint(stamp: str) -> str:
    """Changes whenever the user's token is replaced or the account re-created (``User.session_stamp``)."""
    return hashlib.sha256(f"session:{stamp}".encode()).hexdigest()[:16]


def issue(settings: Settings, name: str, stamp: str, now: float | None = None) -> tuple[str, Session]:
    """A new session for user ``name`` (``stamp``: the user's ``session_stamp``): (cookie value, session)."""
    now = time.time() if now is None else now
    session = Session(name, secrets.token_hex(16), int(now) + settings.SESSION_LIFETIME, fingerprint(stamp))
    encoded = base64.urlsafe_b64encode(name.encode("utf-8")).decode().rstrip("=")
    payload = f"{_VERSION}.{encoded}.{session.sid}.{session.expires}.{session.fingerprint}"
    return f"{payload}.{_mac(settings, 'session', payload)}", session


def parse(settings: Settings, value: str, now: float | None = None) -> Session | None:
    """The session a cookie value carries; None if it is malformed, forged or expired."""
    parts = value.split(".")
    if len(parts) != 6 or parts[0] != _VERSION:
        return None
    payload, mac = ".".join(parts[:5]), parts[5]
    if not hmac.compare_digest(_mac(settings, "session", payload).encode(), mac.encode("utf-8", "replace")):
        return None
    _, encoded, sid, expires, fp = parts[:5]
    try:
        name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
        expires_at = int(expires)
    except (ValueError, UnicodeDecodeError):
        return None
    if expires_at <= (time.time() if now is None else now):
        return None
    return Session(name, sid, expires_at, fp)


def csrf_token(settings: Settings, session: Session) -> str:
    return _mac(settings, "csrf", session.sid)


def check_csrf(settings: Settings, session: Session, presented: str | None) -> bool:
    if not presented or not isinstance(presented, str):
        return False
    return hmac.compare_digest(csrf_token(settings, session).encode(), presented.encode("utf-8", "replace"))


def new_signin_nonce() -> str:
    return f"{int(time.time())}-{secrets.token_hex(16)}"


def fresh_signin_nonce(nonce: str | None) -> bool:
    """A sign-in cookie of ours issued less than half its lifetime ago (then it is reused)."""
    issued, _, rest = (nonce or "").partition("-")
    return issued.isdigit() and len(rest) == 32 and 0 <= time.time() - int(issued) < SIGNIN_LIFETIME / 2


def signin_token(settings: Settings, nonce: str) -> str:
    return _mac(settings, "signin", nonce)


def check_signin(settings: Settings, nonce: str | None, presented: str | None) -> bool:
    """The sign-in form's field ``_csrf`` against its ``opus_signin`` cookie (at most an hour old)."""
    if not nonce or not presented:
        return False
    issued, _, _rest = nonce.partition("-")
    if not issued.isdigit() or time.time() - int(issued) > SIGNIN_LIFETIME:
        return False
    return hmac.compare_digest(signin_token(settings, nonce).encode(), presented.encode("utf-8", "replace"))


def cookie_of(environ: dict[str, Any], name: str = COOKIE) -> str | None:
    """A cookie's value from the request (None when absent or empty); tolerant of junk."""
    for item in environ.get("HTTP_COOKIE", "").split(";"):
        key, sep, value = item.strip().partition("=")
        if sep and key == name:
            value = value.strip().strip('"')
            return value or None
    return None


def set_cookie_header(name: str, value: str, max_age: int, secure: bool, path: str = "/",
                      same_site: str = "Lax") -> str:
    """A Set-Cookie value: always HttpOnly and SameSite; Secure over https."""
    attrs = [f"{name}={value}", f"Path={path or '/'}", f"Max-Age={max(0, int(max_age))}", "HttpOnly",
             f"SameSite={same_site}"]
    if secure:
        attrs.append("Secure")
    return "; ".join(attrs)
