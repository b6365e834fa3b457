"""A job's launch record and its reserved report slot, shared by the server and the job wrapper.

Standard library only: the wrapper imports it by bare name, on SLURM compute nodes too (it travels
with the wrapper, like ``jobsandbox.py``).

**The launch record** (``launch.lock`` in the job's directory) makes a launch happen once.  The
local manager creates it exclusively, with an exclusive ``flock`` and a first line, *before* it
starts the wrapper; the wrapper inherits that locked descriptor and holds it for its whole life (a
wrapper started otherwise, e.g. by SLURM, opens and locks the record itself).  The wrapper appends a
line with its pid when it starts, and one before it starts the job's script.  So, whatever process
died when:

* no record: the job was never launched, and may be;
* a record whose lock is held: its wrapper lives (its pid is in the record): adopt it;
* a record with no holder: the wrapper is gone.  Its report says how the job ended; without one,
  a record that says the script started means the script may have run: the job is never run again.

**What is fsynced, and why only that.**  A process that dies (``kill -9``, a crash) loses nothing
it wrote: the kernel keeps it.  Only a crash of the machine itself loses writes, and then every
wrapper and script died with it; what must survive is the one fact that forbids running a job
again: that its script was started.  So the wrapper's "script" line is made durable (the file,
then the directory that names it: ``note_durable``) before the script starts, and the report slot
when the report is written; the other lines and the reserved slot are not.  A record lost with the
machine said at most "launched", which allows a new launch anyway.  (Before: 7 fsyncs per job, 5 of
them between PHASE=RUN and the script's start; now 2, and 1 for the report.)

**The report slot** (``report.slot``) is a file of ``SLOT_SIZE`` bytes written when the job is
launched.  The wrapper writes its final report there first, over the reserved bytes (padded with
spaces), so that a full disk cannot stop it; then it writes ``report.json`` as usual.  Readers take
``report.json``, else the slot.

``opus.storage.jobfiles`` names the same files (it cannot import this module: layers).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

LAUNCH = "launch.lock"
SLOT = "report.slot"
REPORT = "report.json"
#: Bytes reserved for the final report: room for about 250 results.
SLOT_SIZE = 64 * 1024


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def note(fd: int, **fields: Any) -> None:
    """Append one line to a launch record (open for appending): one write, seen at once by every
    process, kept through any process's death (not through the machine's: ``note_durable``)."""
    os.write(fd, (json.dumps(fields) + "\n").encode())


def note_durable(fd: int, root: Path, **fields: Any) -> None:
    """``note``, then make the record durable: its data, then the directory entry that names it
    (the record may be as new as this launch).  For the line that must survive a crash of the
    machine: the script's start."""
    note(fd, **fields)
    os.fsync(fd)
    _fsync_dir(root)


def reserve_slot(root: Path) -> None:
    """Write the report slot's ``SLOT_SIZE`` bytes (blanks: no report yet).  The write itself
    reserves the space (the file system allocates, or reserves for delayed allocation, at write);
    no fsync: the report written over it is fsynced (``write_slot``)."""
    fd = os.open(root / SLOT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b" " * SLOT_SIZE)
    finally:
        os.close(fd)


def launch(root: Path) -> int:
    """Record a launch before it happens (the server): reserve the report slot, create the launch
    record exclusively, lock it, note who launched; the locked descriptor, which the wrapper must
    inherit.  FileExistsError if the job was launched before.  No fsync (the module's docstring
    says why): the wrapper makes the record durable before the script starts."""
    reserve_slot(root)
    fd = os.open(root / LAUNCH, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        note(fd, launched=now_iso(), by=os.getpid())
    except BaseException:
        os.close(fd)
        raise
    return fd


class Busy(Exception):
    """Another live process holds the job's launch record: its wrapper runs already."""


def hold(root: Path, tries: int = 20) -> int:
    """For a wrapper that inherited nothing (SLURM): open and lock the launch record itself.

    Busy if another process holds it (a server probing it holds it a moment: retried briefly)."""
    fd = os.open(root / LAUNCH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if attempt + 1 < tries:
                time.sleep(0.1)
    os.close(fd)
    raise Busy(f"{root / LAUNCH} is held by another process")


class LaunchState(NamedTuple):
    """What a job's launch record says (see the module's docstring).  A NamedTuple, not a dataclass:
    the wrapper imports this module at every job start, and dataclasses costs ~7 ms of import."""

    recorded: bool
    #: A live process holds the record's lock (the wrapper).
    live: bool = False
    #: The wrapper's pid, once it noted it.
    wrapper_pid: int | None = None
    #: The wrapper noted that it started the job's script.
    script_started: bool = False


def lines(root: Path) -> list[dict[str, Any]]:
    """The launch record's lines (unreadable ones skipped)."""
    try:
        text = (root / LAUNCH).read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def launch_state(root: Path) -> LaunchState:
    """Read the launch record, and whether a live process holds it (a non-blocking shared lock
    that fails means an exclusive holder)."""
    try:
        fd = os.open(root / LAUNCH, os.O_RDONLY)
    except FileNotFoundError:
        return LaunchState(False)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            live = False
        except BlockingIOError:
            live = True
    finally:
        os.close(fd)
    pid = None
    started = False
    for item in lines(root):
        if isinstance(item.get("wrapper"), int):
            pid = item["wrapper"]
        started = started or "script" in item
    return LaunchState(True, live, pid, started)


def forget(root: Path) -> None:
    """Remove a launch record no wrapper got to use (the job may then be launched again)."""
    (root / LAUNCH).unlink(missing_ok=True)
    _fsync_dir(root)


# ---- the report ----------------------------------------------------------------------------------
def write_slot(root: Path, report: dict[str, Any]) -> None:
    """Write the final report over the reserved slot (no new space needed); created if missing."""
    data = json.dumps(report).encode()
    if len(data) > SLOT_SIZE:
        data = json.dumps({"phase": "ERROR", "end_time": report.get("end_time"), "message": (
            f"the job's report ({len(report.get('results') or [])} results) was too large for its "
            f"reserved place, and report.json could not be written: {report.get('message') or ''}"
        )[:4000]}).encode()
    fd = os.open(root / SLOT, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data.ljust(max(SLOT_SIZE, len(data)), b" "), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_report(root: Path, report: dict[str, Any]) -> None:
    """Replace ``report.json`` atomically (OSError, e.g. ENOSPC, is the caller's)."""
    tmp = root / f"{REPORT}.tmp"
    try:
        tmp.write_text(json.dumps(report))
        os.replace(tmp, root / REPORT)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _parsed(path: Path) -> dict[str, Any] | None:
    try:
        report = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and report.get("phase") else None


def saved_report(root: Path) -> dict[str, Any] | None:
    """The wrapper's final report: ``report.json``, else the report slot; None when there is none."""
    return _parsed(root / REPORT) or _parsed(root / SLOT)


def is_full(exc: BaseException) -> bool:
    """Whether an error is a full disk (or quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
