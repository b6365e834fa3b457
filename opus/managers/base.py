"""The Manager interface every execution back end implements, and the choice by settings."""

from __future__ import annotations

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
