"""Confirmed e-mail addresses: notifications go only to an address its owner confirmed.

An address given by its user (at registration, or ``PUT /notifications``) is unconfirmed until the
user opens the link sent to it: otherwise anyone could register with somebody else's address and
have OPUS mail them.  The link is ``<base>/web/confirm?uid=&email=&expires=&sig=``, signed with
HMAC-SHA256 under a key derived from the server secret (nothing is stored), valid ``LINK_LIFETIME``;
it confirms the address only while it is still the user's.  At most one confirmation mail per user
per ``VERIFY_INTERVAL``, so the link cannot be used to flood an address.  An address an admin sets,
or ``opus migrate`` brings, counts as confirmed.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from urllib.parse import urlencode

from opus.auth.identity import server_secret
from opus.errors import BadRequest, Gone
from opus.service.notifications import Notifications, public_base
from opus.settings import Settings
from opus.timeutil import utcnow

#: How long a confirmation link works.
LINK_LIFETIME = timedelta(days=3)
#: At most one confirmation mail per user in this time.
VERIFY_INTERVAL = timedelta(minutes=10)


def _signature(settings: Settings, uid: int, email: str, expires: int) -> str:
    key = hmac.new(server_secret(settings), b"opus-email-confirmation:v1", hashlib.sha256).digest()
    return hmac.new(key, f"{uid}\n{email}\n{expires}".encode(), hashlib.sha256).hexdigest()


def confirmation_link(settings: Settings, uid: int, email: str, now_ts: int | None = None) -> str:
    expires = (now_ts if now_ts is not None else int(utcnow().timestamp())) + int(LINK_LIFETIME.total_seconds())
    query = urlencode({"uid": uid, "email": email, "expires": expires,
                       "sig": _signature(settings, uid, email, expires)})
    return f"{public_base(settings)}/web/confirm?{query}"


def ask_confirmation(notifications: Notifications, uid: int, name: str) -> bool:
    """Send user ``uid`` the confirmation link of its (unconfirmed) address; False when there is none
    to confirm, no SMTP server, or one was sent less than VERIFY_INTERVAL ago."""
    settings, outbox = notifications.settings, notifications.outbox
    email, confirmed, _sent = outbox.address(uid)
    if email is None or confirmed or not settings.SMTP_HOST:
        return False
    if not outbox.claim_verify_mail(uid, utcnow(), VERIFY_INTERVAL):
        return False
    link = confirmation_link(settings, uid, email)
    body = (f"Someone, probably you, gave this address to the OPUS account {name!r} on "
            f"{public_base(settings)}, to be told when jobs end.\n\n"
            f"Confirm it (the link works for {LINK_LIFETIME.days} days):\n{link}\n\n"
            "If it was not you, ignore this message: nothing will be sent to this address.\n")
    outbox.add("mail", email, "OPUS: confirm your e-mail address", body)
    notifications.sender.wake()
    return True


def confirm(notifications: Notifications, uid: str, email: str, expires: str, sig: str) -> str:
    """Check a confirmation link's values and confirm the address; the address.  BadRequest for a
    malformed or forged link, Gone for an expired one or one whose address is no longer the user's."""
    if not (uid.isdigit() and expires.isdigit() and len(uid) < 19 and len(expires) < 19 and 0 < len(email) <= 254):
        raise BadRequest("this confirmation link is not complete: open the whole link of the e-mail")
    expected = _signature(notifications.settings, int(uid), email, int(expires))
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
        raise BadRequest("this confirmation link is not valid: open the whole link of the e-mail")
    if int(expires) < int(utcnow().timestamp()):
        raise Gone("this confirmation link has expired: give your address again on your profile page")
    if not notifications.outbox.confirm_email(int(uid), email):
        raise Gone("this address is no longer the one of your account: nothing was confirmed")
    return email
