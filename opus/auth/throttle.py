"""Failed sign-in throttling, per user name and per client address.

After ``limit`` failed sign-ins within ``window`` seconds, a user name (or the token id of a Bearer
token) or a client address is *throttled*: its requests with credentials are answered 429 with
``Retry-After``, before any user lookup or hash, until the oldest of those failures is ``window``
seconds old.  Successful sign-ins are never delayed and never counted; one clears its name's
failures (only the token's owner can produce it), not its address's (an attacker with an account of
their own must not be able to reset the count of the address they guess from).

The client address is the WSGI server's ``REMOTE_ADDR``, never a header such as ``X-Forwarded-For``
that a client can write; IPv6 addresses count per /64, the block one subscriber usually holds.
Behind a reverse proxy every client has the proxy's address (SECURITY.md, "Deploying safely").

State lives in the memory of each process (no database write on the path of a failed request):
with several gunicorn workers, each counts the failures it saw, so a client spreading its requests
over N workers gets up to N times the limit before all of them refuse it.  The number of names and
addresses tracked is bounded (the oldest are forgotten first).
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

#: Most keys (names and addresses) remembered at once: memory stays bounded under a spray of names.
MAX_KEYS = 100_000


def address_key(remote_addr: str | None) -> str | None:
    """The throttling key of a client address (None when the WSGI server gave none)."""
    if not remote_addr:
        return None
    try:
        ip = ipaddress.ip_address(remote_addr.strip())
    except ValueError:  # a Unix socket's peer, or another server's notion of an address: count it as is
        return f"addr:{remote_addr[:100]}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return f"addr:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"addr:{ip}"


class SignInThrottle:
    """Sliding windows of failure times per key; thread-safe."""

    def __init__(self, window: float, per_name: int, per_address: int, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = float(window)
        self.per_name = per_name
        self.per_address = per_address
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _limit(self, key: str) -> int:
        return self.per_address if key.startswith("addr:") else self.per_name

    def retry_after(self, *keys: str | None) -> int | None:
        """Seconds until the most throttled of ``keys`` may try again; None when none is throttled."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._failures.get(key) if key else None
                limit = self._limit(key) if key else 0
                if times is None or limit <= 0 or len(times) < limit:
                    continue
                # The limit-th most recent failure leaves the window first.
                wait = max(wait, times[-limit] + self.window - now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, *keys: str | None) -> list[str]:
        """Count one failure for each key; returns the keys that this failure throttled."""
        now = self.clock()
        newly: list[str] = []
        with self._lock:
            for key in keys:
                if not key or self._limit(key) <= 0:
                    continue
                limit = self._limit(key)
                times = self._failures.pop(key, None)
                if times is None:
                    times = deque(maxlen=limit)
                while times and times[0] <= now - self.window:
                    times.popleft()
                times.append(now)
                self._failures[key] = times  # most recently failed last: the oldest are forgotten first
                if len(times) >= limit:
                    newly.append(key)
            if len(self._failures) > self.max_keys:
                self._forget(now)
        return newly

    def succeeded(self, name_key: str | None) -> None:
        """A successful sign-in clears the failures of its name (never those of its address)."""
        if name_key:
            with self._lock:
                self._failures.pop(name_key, None)

    def _forget(self, now: float) -> None:
        for key in [k for k, times in self._failures.items() if not times or times[-1] <= now - self.window]:
            del self._failures[key]
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
