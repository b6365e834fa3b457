"""How many blocking WAITs one server process holds at once (``MAX_HELD_WAITS``).

A WAIT holds a request thread for up to MAX_WAIT seconds.  A server process has a fixed number of
them (gunicorn's ``threads``, mod_wsgi's ``threads=``): once WAITs hold them all, every other
request to that process (a GET, a creation, /availability) queues until a WAIT ends, up to a
minute later.  Thirty-two browsers showing job lists, each following two running jobs, do that to
an Apache deployment of 2 processes x 32 threads.  So a process holds WAITs on at most its threads
less a reserve (a tenth, at least two); a WAIT beyond that is answered at once with the job as it
is, which UWS allows (it "may cap the blocking time, e.g. under load"; clients must not assume
that it blocks until a change).  The web client then asks again after 500 ms; pyvo at once.

The threads are known from the server: gunicorn through ``gunicorn.conf.py``, which puts them in
``OPUS_REQUEST_THREADS`` for its workers, mod_wsgi through its ``threads_per_process``.  Elsewhere
(``opus serve``: one thread per request, no limit) there is no cap unless MAX_HELD_WAITS sets one.
"""

from __future__ import annotations

import os
import threading

#: Set by gunicorn.conf.py (in the master, inherited by the workers): the request threads of a worker.
THREADS_ENV = "OPUS_REQUEST_THREADS"
#: Threads kept free of WAITs: this fraction of them, and at least RESERVE_MIN.
RESERVE_FRACTION = 10
RESERVE_MIN = 2


def request_threads() -> int | None:
    """The request threads of this server process when its server says so, else None."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value.isdigit():
        return int(value)
    try:
        import mod_wsgi  # type: ignore[import-not-found]  # only inside Apache's mod_wsgi
        return int(mod_wsgi.threads_per_process)
    except (ImportError, AttributeError, TypeError, ValueError):
        return None


def held_waits_limit(setting: int | None, threads: int | None) -> int | None:
    """MAX_HELD_WAITS when set, else the threads less the reserve; None: no limit (threads unknown)."""
    if setting is not None:
        return setting
    if threads is None:
        return None
    return max(0, threads - max(RESERVE_MIN, threads // RESERVE_FRACTION))


class WaitSlots:
    """The WAITs this process holds, at most ``limit`` (None: any number)."""

    def __init__(self, limit: int | None, threads: int | None = None) -> None:
        self.limit = limit
        #: The request threads the limit was worked out from (None: set, or unknown); for messages.
        self.threads = threads
        self._held = 0
        self._lock = threading.Lock()

    @classmethod
    def of(cls, setting: int | None) -> "WaitSlots":
        threads = None if setting is not None else request_threads()
        return cls(held_waits_limit(setting, threads), threads)

    @property
    def held(self) -> int:
        return self._held

    def take(self) -> bool:
        """One more WAIT held, unless the limit is reached (False: answer it at once)."""
        if self.limit is None:
            return True
        with self._lock:
            if self._held >= self.limit:
                return False
            self._held += 1
            return True

    def give(self) -> None:
        """A WAIT that ``take`` let through has ended."""
        if self.limit is None:
            return
        with self._lock:
            self._held -= 1

    def describe(self) -> str:
        """Where the limit comes from, for the log."""
        if self.threads is None:
            return f"MAX_HELD_WAITS = {self.limit}"
        return f"{self.threads} request threads less {self.threads - (self.limit or 0)} kept for other requests"
