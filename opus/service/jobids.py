"""Job ids: 16 hexadecimal digits (64 bits) from the operating system's CSPRNG.

``secrets.token_hex`` makes a ``getrandom`` system call per id, and a system call releases the GIL:
under load, one more point per creation where another request thread takes the interpreter over
(a context switch, issue 18).  The bytes are read 4 KiB at a time instead (512 ids per call); they are
the same ``os.urandom`` bytes, each used once.  A forked child forgets its parent's unread bytes,
so parent and child never hand out the same ids.
"""

from __future__ import annotations

import os
import threading

ID_BYTES = 8
_READ = 4096


class _Source:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._next = 0

    def forget(self) -> None:
        """Drop the unread bytes (in a forked child: they are its parent's too)."""
        self._lock = threading.Lock()  # a lock held by a thread of the parent stays held in the child
        self._bytes, self._next = b"", 0

    def new_id(self) -> str:
        with self._lock:
            start = self._next
            if start + ID_BYTES > len(self._bytes):
                self._bytes, start = os.urandom(_READ), 0
            self._next = start + ID_BYTES
            return self._bytes[start:start + ID_BYTES].hex()


_source = _Source()
os.register_at_fork(after_in_child=_source.forget)


def new_job_id() -> str:
    """A new random job id (16 lowercase hexadecimal digits)."""
    return _source.new_id()
