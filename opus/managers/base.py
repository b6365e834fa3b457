"""The Manager interface every execution back end implements, and the choice by settings."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

#: Applies a wrapper-style report (parsed JSON) for a job (``CompletionService.replay``).
ReportSink = Callable[[str, dict[str, Any]], None]


class Manager(ABC):
    """Runs QUEUED jobs, stops them on request, and reconciles what the database believes."""

    name: str = "base"

    @abstractmethod
    def start(self, report: ReportSink) -> None:
        """Start background work in this process (dispatching, reconciliation)."""

    @abstractmethod
    def wake(self) -> None:
        """A job was queued or a slot was freed: look for work now."""

    @abstractmethod
    def abort(self, job_id: str, manager_id: str | None, then: Callable[[], None] | None = None) -> None:
        """Stop the job's processes (the phase has already been set by the caller).

        ``then`` is called once they are gone (e.g. to remove the job's files).
        """

    @abstractmethod
    def is_alive(self) -> bool:
        """Whether the manager can run jobs (for VOSI availability)."""

    def problem(self) -> str | None:
        """Why the manager cannot run jobs, when it knows (for VOSI availability and the admin page)."""
        return None

    def stop(self) -> None:
        """Stop background work (tests, shutdown)."""

    def collect(self, job_id: str) -> None:
        """Bring the job's files home before its final report is applied (nothing to do when shared)."""

    def discard(self, job_id: str) -> None:
        """The job is destroyed or archived: remove what the manager keeps of it elsewhere."""


class CachedCheck:
    """A probe's last answer, kept for ``ttl`` seconds so that VOSI availability never waits on (or
    multiplies) the probe: a stale answer is returned at once while one background thread refreshes it.

    ``note`` records what the manager learnt anyway (a command that worked or failed), which keeps
    the answer fresh under load without probing at all.
    """

    def __init__(self, probe: Callable[[], str | None], ttl: float = 5.0):
        """``probe`` returns None when all is well, else why not."""
        self._probe = probe
        self._ttl = ttl
        self._lock = threading.Lock()
        self._refreshing = False
        self._answer: str | None = None
        self._at = -1.0e9
        self._known = False

    def note(self, problem: str | None) -> None:
        with self._lock:
            self._answer, self._at, self._known = problem, time.monotonic(), True

    def _refresh(self) -> None:
        try:
            problem = self._probe()
        except Exception as exc:  # a probe that breaks says so instead of breaking availability
            problem = f"the check failed: {type(exc).__name__}: {exc}"
        self.note(problem)
        with self._lock:
            self._refreshing = False

    def problem(self) -> str | None:
        """The last answer (None: fine); the first call waits for one probe, later ones never do."""
        with self._lock:
            known, stale = self._known, time.monotonic() - self._at > self._ttl
            start = stale and not self._refreshing
            if start:
                self._refreshing = True
        if start and not known:
            self._refresh()
        elif start:
            threading.Thread(target=self._refresh, name="opus-availability-probe", daemon=True).start()
        with self._lock:
            return self._answer
