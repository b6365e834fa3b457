"""The bounds a server puts on a definition's jobs, shown to clients (/capabilities, the JSON form).

They restate what the job service applies (``opus.service.jobs``, ``SubmissionRules``): a job
without EXECUTIONDURATION gets the definition's executionDuration, else DEFAULT_EXECUTION_DURATION,
capped at MAX_EXECUTION_DURATION (0 asks for no limit and gets the cap when there is one); a job
without DESTRUCTION is destroyed DESTRUCTION_INTERVAL after its creation; a DESTRUCTION later than
MAX_DESTRUCTION_INTERVAL after creation is shortened to that (UWS lets the server do so).
"""

from __future__ import annotations

from typing import Any

from opus.jobdef.model import JobDefinition
from opus.settings import Settings


def job_limits(jobdef: JobDefinition, settings: Settings) -> dict[str, Any]:
    """{"executionDuration": {"default", "max"}, "destruction": {"default", "max"}}: seconds (a
    destruction's: after the job's creation); a "max" of None means no limit."""
    cap = settings.MAX_EXECUTION_DURATION
    duration = settings.DEFAULT_EXECUTION_DURATION if jobdef.execution_duration is None else jobdef.execution_duration
    if cap and (duration == 0 or duration > cap):
        duration = cap
    return {"executionDuration": {"default": duration, "max": cap or None},
            "destruction": {"default": settings.DESTRUCTION_INTERVAL, "max": settings.MAX_DESTRUCTION_INTERVAL}}


def _span(seconds: int) -> str:
    if seconds and seconds % 86400 == 0:
        return f"{seconds // 86400} day{'s' if seconds != 86400 else ''}"
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds} s"


def describe(limits: dict[str, Any]) -> str:
    """The limits as a sentence for people (the capability's description)."""
    run, gone = limits["executionDuration"], limits["destruction"]
    default = "no limit" if run["default"] == 0 else f"{run['default']} s"
    longest = f"at most {run['max']} s" if run["max"] else "no maximum"
    return (f"executionDuration: {default} by default, {longest}. "
            f"destruction: {_span(gone['default'])} after creation by default, at most {_span(gone['max'])} "
            "after creation (a later DESTRUCTION is shortened to it).")
