"""Fetching a job's inputs given as URLs, for the job wrapper (standard library only).

Like ``jobsandbox.py``, this module runs beside ``wrapper.py`` on the machine that runs the job (a
SLURM compute node too, where ``opus.managers.slurm`` copies it next to the wrapper when the
cluster does not share the job directories).  A host is checked against ``INPUT_URL_HOSTS`` the way
the server checks it (``opus.service.inputs.host_allowed``), and the connection goes to the very
address that was checked.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import SplitResult, urljoin, urlsplit

if TYPE_CHECKING:
    import http.client


class Digest(Protocol):
    """A hashlib hash object (what ``fetch`` feeds the bytes to)."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def allowed_addresses(host: str, port: int, allowed: list[str]) -> list[str]:
    """The addresses to connect to for ``host``, resolved once; ValueError if it is not allowed.

    The server's rule (opus.service.inputs.host_allowed): a host listed exactly (or under a listed
    ``.domain``) is allowed with whatever addresses it has; with "*", any host whose addresses are
    all public.  The connection then goes to an address checked here, never to a second lookup
    (which a hostile DNS server could answer differently: DNS rebinding).
    """
    name = host.lower().rstrip(".").strip("[]")
    listed = any(e.lower().rstrip(".") == name or (e.startswith(".") and name.endswith(e.lower().rstrip(".")))
                 for e in allowed)
    if not listed and "*" not in allowed:
        raise ValueError(f"host {host!r} is not allowed (INPUT_URL_HOSTS)")
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ValueError(f"host {host!r} cannot be resolved: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ValueError(f"host {host!r} has no address")
    if not listed and not all(ipaddress.ip_address(a.split("%")[0]).is_global for a in addresses):
        raise ValueError(f"host {host!r} is not allowed (INPUT_URL_HOSTS): it has a non-public address")
    return addresses


def _pinned_connection(parts: SplitResult, address: str, timeout: float) -> http.client.HTTPConnection:
    """An http.client connection to ``address`` that speaks to (and, for https, verifies) ``parts.hostname``."""
    import http.client  # ~10 ms of start-up that a job without URL inputs does not pay

    port = parts.port or (443 if parts.scheme == "https" else 80)
    base = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection

    class Pinned(base):  # type: ignore[misc, valid-type]  # mypy cannot subclass a variable
        def connect(self) -> None:
            sock = socket.create_connection((address, port), self.timeout)
            if parts.scheme == "https":
                sock = self._context.wrap_socket(sock, server_hostname=parts.hostname)
            self.sock = sock

    return Pinned(parts.hostname, port, timeout=timeout)


def fetch(url: str, path: Path, allowed: list[str], timeout: float, max_size: int,
          digest: Digest) -> tuple[int, str, str]:
    """Stream ``url`` into ``path``, following at most 5 redirects, each to an allowed host."""
    deadline = time.monotonic() + timeout
    for _hop in range(6):
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"{url[:200]!r} has an invalid port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"only http and https URLs are fetched, not {url[:200]!r}")
        addresses = allowed_addresses(parts.hostname, port, allowed)
        conn, response = _get(parts, addresses, deadline)
        try:
            location = response.getheader("Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            if response.status >= 300:
                raise ValueError(f"HTTP {response.status} {response.reason}")
            length = response.getheader("Content-Length")
            if length and length.isdigit() and int(length) > max_size:
                raise ValueError(f"it is {length} bytes, more than the limit of {max_size}")
            size = _save(response, path, deadline, timeout, max_size, digest)
            ctype = (response.getheader("Content-Type") or "application/octet-stream").split(";")[0].strip()
            return size, digest.hexdigest(), ctype
        finally:
            conn.close()
    raise ValueError("more than 5 redirects")


def _get(parts: SplitResult, addresses: list[str],
         deadline: float) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """GET the URL from the first of ``addresses`` that answers: (its connection, the response)."""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    error: OSError | None = None
    for address in addresses:
        conn = _pinned_connection(parts, address, max(1.0, deadline - time.monotonic()))
        try:
            conn.request("GET", target, headers={"User-Agent": "OPUS job wrapper"})
            return conn, conn.getresponse()
        except OSError as exc:
            conn.close()
            error = exc
    raise error or OSError(f"cannot connect to {parts.hostname}")


def _save(response: http.client.HTTPResponse, path: Path, deadline: float, timeout: float, max_size: int,
          digest: Digest) -> int:
    """The body into ``path`` (through a hidden ``.part`` file), at most ``max_size`` bytes, before
    ``deadline``; the number of bytes."""
    size = 0
    tmp = path.with_name(f".{path.name}.part")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as out:
        while True:
            if time.monotonic() > deadline:
                raise ValueError(f"not complete after {timeout:g} s")
            block = response.read(1 << 20)
            if not block:
                break
            size += len(block)
            if size > max_size:
                out.close()
                tmp.unlink(missing_ok=True)
                raise ValueError(f"more than the limit of {max_size} bytes")
            digest.update(block)
            out.write(block)
    os.replace(tmp, path)
    return size
