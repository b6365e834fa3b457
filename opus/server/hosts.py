"""Which ``Host`` header values may appear in the absolute URLs of responses (Location, xlink:href).

With ``BASE_URL`` set, no URL comes from the request at all.  Without it, a request's ``Host`` is
used only when it is one of this server's names: an ``ALLOWED_HOSTS`` entry, or the address it
listens on and the localhost names with the listening port (bound to a wildcard, also this
machine's host names and addresses).  Any other ``Host``, and any malformed one (a path, ``?``,
``@``, spaces), is never echoed: the URL falls back to the listening address.  When that is unknown
too (mod_wsgi without ``BASE_URL``) the request gets a 400 that names the settings to set.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
from typing import Any
from urllib.parse import quote

from opus.errors import BadRequest
from opus.listen import ListenAddress, listen_address
from opus.settings import Settings

log = logging.getLogger(__name__)

#: A well-formed Host: a DNS name or IPv4 address, or a bracketed IPv6 address, and an optional port.
_HOST = re.compile(r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252}[A-Za-z0-9])?\.?|\[[0-9A-Fa-f:.]{2,45}\])"
                   r"(?::(?P<port>\d{1,5}))?\Z")
#: Names that reach this machine only: allowed with the listening port (any port when it is unknown).
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
#: What SCRIPT_NAME (set by the server's configuration, not the client) may keep unescaped.
_PATH_SAFE = "/-._~!$&'()*+,;=:@%"
_warned = False


def parse_host(value: str) -> tuple[str, int | None] | None:
    """(lower-case name, port or None) of a well-formed Host value; None for anything else."""
    m = _HOST.match(value)
    if m is None:
        return None
    port = m.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return None
    return m.group("name").lower().rstrip("."), int(port) if port else None


def _entry_matches(entry: str, name: str, port: int) -> bool:
    """Does one ALLOWED_HOSTS entry ("*", "host", "host:port", ".domain") match name:port?"""
    if entry == "*":
        return True
    domain = entry.startswith(".")
    parsed = parse_host(entry[1:] if domain else entry)
    if parsed is None:  # settings validation refuses such entries; be safe anyway
        return False
    wanted, wanted_port = parsed
    if wanted_port is not None and wanted_port != port:
        return False
    return name == wanted or (domain and name.endswith("." + wanted))


@functools.lru_cache(maxsize=1)
def _machine_names() -> frozenset[str]:
    """This machine's host name and fully qualified name (looked up once: getfqdn may query DNS)."""
    return frozenset(n.lower().rstrip(".") for n in (socket.gethostname(), socket.getfqdn()) if n)


@functools.lru_cache(maxsize=256)
def _is_local_address(name: str) -> bool:
    """Is ``name`` an IP address of this machine?  Only a local address can be bound to, so a server
    bound to the wildcard answers on exactly those."""
    literal = name[1:-1] if name.startswith("[") else name
    try:
        ip = ipaddress.ip_address(literal)
    except ValueError:
        return False
    if ip.is_unspecified or ip.is_multicast:
        return False
    with socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((literal, 0))
        except OSError:
            return False
    return True


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_allowed(allowed_hosts: tuple[str, ...], name: str, port: int | None, scheme: str,
                address: ListenAddress | None) -> bool:
    """May ``name[:port]`` (from parse_host) appear in this server's URLs (``address``: where the
    server listens, None when unknown)?"""
    effective = port if port is not None else (443 if scheme == "https" else 80)
    if any(_entry_matches(entry, name, effective) for entry in allowed_hosts):
        return True
    if address is None:  # the port is unknown: a loopback name with any port is this machine
        return name in LOCAL_NAMES
    if effective != address.port:
        return False
    if name in LOCAL_NAMES or name == _bracketed(address.host):
        return True
    return address.is_wildcard and (name in _machine_names() or _is_local_address(name))


def request_base_url(settings: Settings, environ: dict[str, Any]) -> str:
    """scheme://host[:port]/script-name of this request when its Host is allowed, else of the
    listening address; 400 when neither is usable.  (BASE_URL, when set, is used before this.)"""
    scheme = environ.get("wsgi.url_scheme")
    scheme = scheme if scheme in ("http", "https") else "http"
    script_name = environ.get("SCRIPT_NAME", "")
    raw = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    address = listen_address(settings)
    found = _allowed_base_url(tuple(settings.ALLOWED_HOSTS), scheme, script_name, raw, address)
    if found is not None:
        return found
    _warn_once(raw, address)
    script = quote(script_name.rstrip("/"), safe=_PATH_SAFE)
    if address is None:
        raise BadRequest("this request's Host header is not a name of this server, and the server does not "
                         "know its own address: the administrator should set BASE_URL (or list the name in "
                         "ALLOWED_HOSTS)")
    return address.url + script


@functools.lru_cache(maxsize=256)  # every request that builds a URL asks; a client's Host varies little
def _allowed_base_url(allowed_hosts: tuple[str, ...], scheme: str, script_name: str, raw: str,
                      address: ListenAddress | None) -> str | None:
    """``request_base_url`` when the Host ``raw`` is allowed, else None."""
    parsed = parse_host(raw)
    if parsed is None or not _is_allowed(allowed_hosts, *parsed, scheme, address):
        return None
    name, port = parsed
    script = quote(script_name.rstrip("/"), safe=_PATH_SAFE)
    return f"{scheme}://{name}{'' if port is None else f':{port}'}{script}"


def _warn_once(raw: str, address: ListenAddress | None) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    instead = f"absolute URLs use {address.url} instead" if address else "requests with it get 400"
    log.warning("Host header %r is not allowed: %s; set BASE_URL to this server's public URL (or add its "
                "name to ALLOWED_HOSTS). Logged once.", raw[:100], instead)
