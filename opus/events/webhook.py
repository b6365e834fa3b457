"""Webhooks: a JSON POST to a user's URL when their job changes phase (``WEBHOOK=<url>``).

The server calls a URL a user chose, so it follows the rules of URL inputs (SECURITY.md): the host
must pass ``INPUT_URL_HOSTS`` (``opus.service.inputs.host_allowed`` at submission), the addresses
are resolved once and checked by ``opus.managers.jobfetch.allowed_addresses`` (with ``*``: public
addresses only), and the connection goes to the address that was checked
(``jobfetch._pinned_connection``: no DNS rebinding).  Redirects are not followed; the answer's body
is not read beyond 64 KiB.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from opus.managers.jobfetch import _pinned_connection, allowed_addresses
from opus.settings import Settings

#: Seconds a webhook call may take (connection and answer).
TIMEOUT = 10.0


def post_json(settings: Settings, url: str, body: str) -> None:
    """POST ``body`` (JSON) to ``url``; ValueError if refused or answered with an error, OSError if
    no address could be reached."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url[:200]!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = allowed_addresses(parts.hostname, port, list(settings.INPUT_URL_HOSTS))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    error: OSError | None = None
    for address in addresses:
        conn = _pinned_connection(parts, address, TIMEOUT)
        try:
            conn.request("POST", target, body=body.encode("utf-8"),
                         headers={"Content-Type": "application/json", "User-Agent": "OPUS webhook"})
            response = conn.getresponse()
            response.read(65536)
        except OSError as exc:
            error = exc
            continue
        finally:
            conn.close()
        if not 200 <= response.status < 300:
            raise ValueError(f"HTTP {response.status} {response.reason}")
        return
    raise error or OSError(f"cannot connect to {parts.hostname}")
