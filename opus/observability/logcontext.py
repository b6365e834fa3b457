"""The request id and the job id of the work at hand, on every log line.

Two context variables hold them: the HTTP layer sets them for the request it serves
(``opus.server.metrics``); anywhere else (dispatcher, maintenance, other background threads) they
are ``-``.  Every log record gets them as the attributes ``request_id`` and ``job_id`` (a record
factory, so any handler and any format may use them, e.g. ``%(request_id)s``); ``ContextFilter``
does the same for a handler of one's own logging configuration.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from contextvars import ContextVar
from typing import Any

REQUEST_ID: ContextVar[str] = ContextVar("opus_request_id", default="-")
JOB_ID: ContextVar[str] = ContextVar("opus_job_id", default="-")

#: The log format of a server process: the historical one, extended at the end (so that parsers of
#: the beginning of the line keep working) with the request id and the job id.
LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s [request=%(request_id)s job=%(job_id)s]"

_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def sane(value: object) -> str | None:
    """``value`` if it is a token fit for a log line (1 to 64 of [A-Za-z0-9._-]), else None."""
    return value if isinstance(value, str) and _SANE.fullmatch(value) else None


class _RequestIds:
    """16 hex digits: 6 drawn at random once per process (again in a forked child), then a counter.
    Unique within a process, and across processes but for a 1 in 16 million chance per pair; no
    system call per request (``os.urandom`` was one, and released the GIL to the other threads)."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = os.urandom(3).hex()
        self.counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFF:010x}"  # count(): atomic under the GIL


_ids = _RequestIds()
new_request_id = _ids.next


def set_job_id(value: object) -> str:
    """Name the job the current request is about (until the end of the request); the name logged."""
    shown = sane(value) or "invalid"
    JOB_ID.set(shown)
    return shown


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``job_id`` to each record (for handlers of one's own configuration)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        record.job_id = JOB_ID.get()
        return True


_installed = False


def install_record_factory() -> None:
    """Give every log record of this process ``request_id`` and ``job_id`` (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        record.job_id = JOB_ID.get()
        return record

    logging.setLogRecordFactory(factory)
