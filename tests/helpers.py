"""The one way tests wait: for a job's phase with UWS WAIT long-polls, for anything else with ``wait_for``.

A job's phase is waited for with ``GET <job>?WAIT=..&PHASE=<current>``: the server answers as soon
as the phase changes (its notifier wakes the request), so no test sleeps to see a change.  What no
request can block on (a process gone, a file written by a job, a log line) is polled by
``wait_for``, with a short, growing interval and a deadline that names what did not happen.
"""

from __future__ import annotations

import os
import pwd
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

#: The phases a job ends in (UWS 1.1).
FINAL = ("COMPLETED", "ERROR", "ABORTED")
#: Phases a job never leaves (ARCHIVED: a final job whose results were removed).
SETTLED = FINAL + ("ARCHIVED",)


def wait_for(predicate: Callable[[], T], timeout: float = 30, what: str = "the condition",
             quietly: bool = False) -> T:
    """Call ``predicate`` until it returns something true (returned), at most ``timeout`` seconds.

    The interval grows from 10 ms to 0.25 s: a quick condition is seen at once, a slow one does
    not cost a busy loop.  At the deadline: AssertionError naming ``what``, or with ``quietly``
    (a best-effort wait, e.g. while cleaning up) the predicate's last value."""
    deadline = time.monotonic() + timeout
    interval = 0.01
    pause = threading.Event()  # never set: only its timed wait is used
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if quietly:
                return value
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        pause.wait(min(interval, remaining))
        interval = min(interval * 2, 0.25)


def phase_of(http: Any, job_url: str) -> str:
    r = http.get(job_url + "/phase")
    assert r.status_code == 200, (job_url, r.status_code, r.text)
    return str(r.text)


def wait_phase(http: Any, job_url: str, phases: Iterable[str] | str = FINAL, timeout: float = 60) -> str:
    """Block (WAIT long-polls) until the job at ``job_url`` is in one of ``phases``; the phase reached.

    ``http`` is a requests session (or anything with its ``get``).  Fails if the job reaches a final
    phase that is not wanted, or when ``timeout`` passes."""
    wanted = {phases} if isinstance(phases, str) else set(phases)
    deadline = time.monotonic() + timeout
    phase = phase_of(http, job_url)
    while phase not in wanted:
        if phase in SETTLED:
            raise AssertionError(f"{job_url} ended {phase}, not {sorted(wanted)}: {http.get(job_url).text}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{job_url} not {sorted(wanted)} after {timeout} s (phase {phase})")
        http.get(job_url, params={"WAIT": max(1, min(5, int(remaining))), "PHASE": phase})
        phase = phase_of(http, job_url)
    return phase


def wait_final(http: Any, job_url: str, timeout: float = 60) -> str:
    """Block until the job is COMPLETED, ERROR or ABORTED; that phase."""
    return wait_phase(http, job_url, FINAL, timeout)


#: The user these tests run as: the SERVICE_USER of servers they start with `opus init` (which, run as
#: root, must be told who will own DATA_DIR).
ME = pwd.getpwuid(os.geteuid()).pw_name


