"""The address this server listens on, and the URL its jobs call back.

A job's wrapper POSTs its report, with the job's secret token, to ``<callback URL>/handler/job_event``.
That URL must come from the operator, never from a request: a client that could choose it (through
``Host``) would make the machines that run jobs send the token to any host, port and path.  So the
callback URL is ``CALLBACK_URL``, else ``BASE_URL``, else the address the server itself listens on,
which the process serving HTTP records:

* ``opus serve`` knows its host and port (:func:`with_listen_address`);
* gunicorn's master publishes its ``bind`` list in ``OPUS_LISTEN_ADDRESS`` (a hook in
  ``gunicorn.conf.py``), inherited by its workers.

Under mod_wsgi (or on a unix socket) no address is known: without ``CALLBACK_URL`` or ``BASE_URL``
no job can start (:data:`NO_CALLBACK_URL` says why, in the job's error, ``opus check`` and
``/availability``).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from opus.settings import Settings

#: The environment variable through which gunicorn's master tells its workers its ``bind`` list
#: (one address per line).  Read by :func:`listen_address` only.
ENV = "OPUS_LISTEN_ADDRESS"

#: Why no job can start when no callback URL is known.
NO_CALLBACK_URL = ("jobs cannot report back: CALLBACK_URL and BASE_URL are unset and the address this "
                   "server listens on is unknown (mod_wsgi, a unix socket): set CALLBACK_URL (or BASE_URL) "
                   "to a URL of this server that the machines running jobs can reach")

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1", "*": "127.0.0.1"}
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\Z")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+(?:%[A-Za-z0-9]+)?\Z")
GUNICORN_DEFAULT_PORT = 8000


@dataclass(frozen=True)
class ListenAddress:
    """One TCP address the server is bound to (host as bound: a name, an IP address or a wildcard)."""

    host: str
    port: int
    scheme: str = "http"  # https when the server itself terminates TLS (gunicorn's certfile)

    @property
    def is_wildcard(self) -> bool:
        """Bound to every interface (0.0.0.0, ::)."""
        return self.host in _WILDCARDS

    @property
    def url(self) -> str:
        """``scheme://host:port`` that reaches this server from this machine (a wildcard maps to loopback)."""
        host = _WILDCARDS.get(self.host, self.host)
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{self.port}"


def parse_bind(bind: str) -> ListenAddress | None:
    """One gunicorn-style bind (``HOST``, ``HOST:PORT``, ``[V6]:PORT``, ``tcp://...``; ``https://...``
    for a server with TLS) as an address; None for a unix socket, a file descriptor, port 0 or
    anything unparsable (no URL can be made)."""
    bind = bind.strip()
    scheme = "https" if bind.startswith("https://") else "http"
    for prefix in ("https://", "http://", "tcp://"):  # gunicorn.conf.py adds https:// to any bind
        bind = bind.removeprefix(prefix)
    if not bind or bind.startswith(("unix:", "fd://", "/")):
        return None
    port = str(GUNICORN_DEFAULT_PORT)
    if bind.startswith("["):
        host, sep, rest = bind[1:].partition("]")
        if not sep or not _IPV6.match(host) or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] or port
    elif bind.count(":") > 1:  # a bare IPv6 address, no port
        host = bind
        if not _IPV6.match(host):
            return None
    else:
        host, _, given = bind.partition(":")
        port = given or port
        if host and host not in _WILDCARDS and not _NAME.match(host):
            return None
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return ListenAddress(host.lower(), int(port), scheme)


@functools.lru_cache(maxsize=16)  # asked on every request that builds a URL: parse each list once
def _first_address(binds: tuple[str, ...]) -> ListenAddress | None:
    for bind in binds:
        address = parse_bind(bind)
        if address is not None:
            return address
    return None


def address_for_binds(binds: Iterable[str]) -> ListenAddress | None:
    """The first TCP address of a bind list (gunicorn's ``cfg.bind``), or None when there is none."""
    return _first_address(tuple(binds))


def url_for_binds(binds: Iterable[str]) -> str | None:
    """The URL this server reaches itself at, from its bind list: ``["0.0.0.0:8080"]`` gives
    ``http://127.0.0.1:8080``; None for unix sockets or file descriptors only."""
    address = address_for_binds(binds)
    return address.url if address is not None else None


def with_listen_address(settings: Settings, host: str, port: int) -> Settings:
    """``settings`` for a server that listens on ``host:port`` (what ``opus serve`` does once bound)."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return replace(settings, extra={**settings.extra, "listen_binds": (bind,)})


def listen_address(settings: Settings) -> ListenAddress | None:
    """The address this server listens on: recorded by ``opus serve``, or published by gunicorn's
    master in ``OPUS_LISTEN_ADDRESS``; None when unknown (mod_wsgi, a unix socket)."""
    binds = settings.listen_binds
    return address_for_binds(binds if binds is not None else os.environ.get(ENV, "").splitlines())


def callback_base(settings: Settings) -> str | None:
    """The base URL job wrappers report to: CALLBACK_URL, else BASE_URL, else the listening address;
    None when none is known (then no job may start)."""
    if settings.CALLBACK_URL:
        return settings.CALLBACK_URL.rstrip("/")
    if settings.BASE_URL:
        return settings.BASE_URL.rstrip("/")
    address = listen_address(settings)
    return address.url if address is not None else None
