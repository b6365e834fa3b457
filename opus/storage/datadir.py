"""Whether the server can keep jobs in DATA_DIR: its jobs/ directory writable, space left.

For /availability (hit by monitors every few seconds: answers are kept ``TTL`` seconds) and
``opus check``.  The notes name no path: /availability is public.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from opus.settings import Settings

#: Seconds an answer is kept.
TTL = 5.0


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MiB"


def problems(settings: Settings) -> list[str]:
    """What keeps this process from writing jobs into DATA_DIR, each a sentence; [] when nothing."""
    data, jobs = Path(settings.DATA_DIR), settings.jobs_dir
    if not data.is_dir():
        return ["the data directory (DATA_DIR) does not exist: run `opus init`"]
    # jobs/ is made on demand: without it, the server must be able to make it in DATA_DIR.
    target, what = (jobs, "its jobs directory") if jobs.exists() else (data, "it")
    out = []
    try:
        fd, probe = tempfile.mkstemp(prefix=".opus-write-probe-", dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        out.append(f"the data directory cannot be written: {what} refuses new files ({exc.strerror or exc}) "
                   "to the user the server runs as, so no job can start (`opus init --user` that user)")
    if settings.DATA_DIR_MIN_FREE:
        try:
            fs = os.statvfs(data)
        except OSError as exc:
            return [*out, f"the data directory's free space cannot be read ({exc.strerror or exc})"]
        free = fs.f_bavail * fs.f_frsize
        if free < settings.DATA_DIR_MIN_FREE:
            out.append(f"the data directory's disk is full or nearly: {_mib(free)} free, less than "
                       f"DATA_DIR_MIN_FREE ({_mib(settings.DATA_DIR_MIN_FREE)}): jobs, uploads and results may fail")
        elif fs.f_files and not fs.f_favail:
            out.append("the data directory's disk has no free inode left: no file can be created")
    return out


class DataDirCheck:
    """``problems`` with its answer kept ``ttl`` seconds (thread-safe)."""

    def __init__(self, settings: Settings, ttl: float = TTL, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._answer: list[str] = []
        self._at: float | None = None

    def problems(self) -> list[str]:
        with self._lock:
            now = self._clock()
            if self._at is None or now - self._at >= self.ttl:
                self._answer = problems(self.settings)
                self._at = now
            return list(self._answer)
