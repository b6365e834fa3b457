"""E-mail through the configured SMTP server (standard library ``smtplib``) and the outbox sender.

``send_mail`` sends one message with the SMTP settings (``SMTP_HOST``, ``SMTP_PORT``,
``SMTP_SECURITY`` "none" | "starttls" | "ssl", ``SMTP_USER``/``SMTP_PASSWORD``, ``MAIL_FROM``).
``Outbox`` is the background sender: it takes due messages from the outbox table
(``opus.storage.outbox``), sends e-mails and webhook calls, retries failures with a back-off, and
once a day (``MAIL_DIGEST_HOUR``, UTC) sends each recipient one digest of the lines gathered for them.
Messages are written by the process where their event happened and sent by whichever process's
sender claims them first: a message goes out once, even with several workers.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from opus.events.webhook import post_json
from opus.settings import Settings
from opus.storage.outbox import Message, OutboxStore
from opus.timeutil import utcnow

log = logging.getLogger(__name__)
#: Deliveries tried before a message is given up (its error stays in the outbox row).
MAX_ATTEMPTS = 6
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
#: Sends one e-mail: (settings, recipients, subject, body).
SendMail = Callable[[Settings, list[str], str, str], None]
#: Posts a webhook: (settings, url, JSON body).
PostJson = Callable[[Settings, str, str], None]


def header_text(value: str, limit: int = 200) -> str:
    """``value`` fit for a header: no control character (no header injection), at most ``limit``."""
    return _CONTROL.sub(" ", value).strip()[:limit]


def send_mail(settings: Settings, to: list[str], subject: str, body: str) -> None:
    """Send one plain-text e-mail through SMTP_HOST; raises OSError or smtplib.SMTPException."""
    if not settings.SMTP_HOST:
        raise smtplib.SMTPException("no SMTP_HOST is configured")
    msg = EmailMessage()
    msg["From"] = settings.MAIL_FROM
    msg["To"] = ", ".join(header_text(a, 254) for a in to)
    msg["Subject"] = header_text(subject)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=settings.MAIL_FROM.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    msg.set_content(body)
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.SMTP_SECURITY == "ssl":
        smtp = smtplib.SMTP_SSL(settings.SMTP_HOST, settings.SMTP_PORT, timeout=settings.SMTP_TIMEOUT,
                                context=context)
    else:
        smtp = smtplib.SMTP(settings.SMTP_HOST, settings.SMTP_PORT, timeout=settings.SMTP_TIMEOUT)
    with smtp:
        if settings.SMTP_SECURITY == "starttls":
            smtp.starttls(context=context)
        if settings.SMTP_USER:
            smtp.login(settings.SMTP_USER, settings.SMTP_PASSWORD or "")
        smtp.send_message(msg)


def digest_cutoff(now: datetime, hour: int) -> datetime:
    """The latest ``hour``:00 UTC at or before ``now``: digest lines written before it are due."""
    today = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return today if today <= now else today - timedelta(days=1)


class Outbox:
    """Sends what the outbox holds, in a daemon thread (``start``), or when asked (``flush``)."""

    def __init__(self, settings: Settings, store: OutboxStore, interval: float = 10.0,
                 send: SendMail = send_mail, post: PostJson = post_json) -> None:
        self.settings = settings
        self.store = store
        self.interval = interval
        self.send = send
        self.post = post
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one flush at a time in this process

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="opus-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def wake(self) -> None:
        """Something was written to the outbox: send it now rather than at the next interval."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.flush()
            except Exception:  # a database outage: the next round tries again
                log.exception("outbox: sending failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    def flush(self, now: datetime | None = None) -> int:
        """Send every due message (digests when their hour has come); returns how many went out."""
        now = now or utcnow()
        sent = 0
        with self._lock:
            for message in self.store.claim(("mail", "webhook"), now):
                sent += self._deliver([message], now)
            if self.settings.MAIL_DIGEST_HOUR is not None:
                due = self.store.claim(("digest",), now, digest_cutoff(now, self.settings.MAIL_DIGEST_HOUR),
                                       limit=10000)
                by_recipient: dict[str, list[Message]] = {}
                for message in due:
                    by_recipient.setdefault(message.recipient, []).append(message)
                for lines in by_recipient.values():
                    sent += self._deliver(lines, now)
        return sent

    def _deliver(self, messages: list[Message], now: datetime) -> int:
        first = messages[0]
        ids = [m.id for m in messages]
        try:
            if first.kind == "webhook":
                self.post(self.settings, first.recipient, first.body)
            elif first.kind == "digest":
                body = "\n\n".join(m.body for m in messages)
                self.send(self.settings, [first.recipient], f"OPUS: your daily digest ({len(messages)} "
                          f"job{'s' if len(messages) != 1 else ''})", body + "\n")
            else:
                self.send(self.settings, [first.recipient], first.subject, first.body)
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            attempts = max(m.attempts for m in messages) + 1
            retry = None if attempts >= MAX_ATTEMPTS else now + timedelta(seconds=30 * 2 ** attempts)
            log.warning("outbox: %s to %s failed (attempt %d%s): %s", first.kind, first.recipient[:80],
                        attempts, "" if retry else ", given up", exc)
            self.store.failed(ids, str(exc), retry)
            return 0
        self.store.sent(ids, now)
        return 1
