"""What the SLURM manager reads besides its own jobs' reports: SLURM's answers and records.

* ``is_transient``: an sbatch/squeue failure that says the scheduler is out of reach (retry later,
  the job stays QUEUED) rather than a refusal of the job (ERROR with SLURM's words).
* ``Backoff``: the one outage clock of the dispatcher (not one retry loop per job).
* ``parse_queue``: ``squeue -t all -o %i|%T|%r|%k`` read once for every job.
* ``JobcompFollower``: the jobcomp/filetxt log followed as it grows (an offset, never re-read).
* ``SubmitLock``: held by every sbatch of a job, so that a dead server's sbatch is waited for.
* ``EpilogSpool``: hints the epilog could not deliver while the server was down, drained at start
  and on every turn of the dispatcher.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from opus.managers.cluster import SSH_FAILURE

log = logging.getLogger(__name__)

TRANSIENT = ("Unable to contact slurm controller", "Socket timed out", "Zero Bytes were transmitted",
             "Connection refused", "Connection reset", "temporarily unavailable", "Slurm temporarily unable",
             "Communication", "Connection timed out", "No route to host", "Transport endpoint",
             "Slurm backup controller in standby mode", "Network is unreachable", "Name or service not known",
             "did not answer", "Resource temporarily unavailable", "Broken pipe")

_JOBCOMP_ID = re.compile(r"^JobId=(\d+)\s")
_JOBCOMP_STATE = re.compile(r"\sJobState=(\S+)")
_JOBCOMP_EXIT = re.compile(r"\sExitCode=(\S+)")
# WorkDir= is followed by the next field (" ReservationName=" in every SLURM version that has it);
# a directory name with spaces is read up to that field.
_JOBCOMP_WORKDIR = re.compile(r"\sWorkDir=(.*?)\s(?:ReservationName|Tres|Account|QOS|WcKey|Cluster)=")
_SPOOL_NAME = re.compile(r"^([0-9a-zA-Z_-]{1,64})-([0-9]{1,12})\.json\Z")
#: A spooled hint is tiny; anything bigger is not one.
SPOOL_MAX_BYTES = 4096
SUBMIT_LOCK = "slurm-submit.lock"


def is_transient(error: str, returncode: int | None = None) -> bool:
    """Whether a failed command says the scheduler could not be reached (as opposed to a refusal)."""
    lowered = error.lower()
    return returncode == SSH_FAILURE or any(t.lower() in lowered for t in TRANSIENT)


class Backoff:
    """One outage of the scheduler: retry after 1, 2, 4 ... 30 s, for as long as it lasts."""

    def __init__(self, first: float = 1.0, longest: float = 30.0):
        self.first, self.longest = first, longest
        self.reason: str | None = None
        self.since = 0.0
        self._delay = first
        self._due = 0.0

    @property
    def active(self) -> bool:
        return self.reason is not None

    def failed(self, reason: str) -> None:
        """The scheduler did not answer: wait, longer each time until a submission works again
        (a squeue that answers while sbatch still fails does not bring the wait back to 1 s)."""
        now = time.monotonic()
        if self.reason is None:
            self.since = now
        self.reason = reason
        self._due = now + self._delay
        self._delay = min(self._delay * 2, self.longest)

    def reset(self) -> None:
        """A submission worked: the next outage starts with the shortest wait."""
        self._delay = self.first

    def due(self) -> bool:
        return time.monotonic() >= self._due

    def ended(self) -> float:
        """The outage is over: how long it lasted (s)."""
        lasted = time.monotonic() - self.since if self.reason is not None else 0.0
        self.reason = None
        return lasted


@dataclass
class Queue:
    """One ``squeue -t all`` answer: state and reason by SLURM id, SLURM ids by OPUS job id."""

    jobs: dict[str, tuple[str, str]]
    by_opus_id: dict[str, list[str]]


def parse_queue(stdout: str) -> Queue:
    jobs: dict[str, tuple[str, str]] = {}
    by_opus_id: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4 and parts[0].isdigit():
            jobs[parts[0]] = (parts[1], parts[2])
            if parts[3].startswith("opus:"):
                by_opus_id.setdefault(parts[3][5:].split()[0] if parts[3][5:] else "", []).append(parts[0])
    for ids in by_opus_id.values():
        ids.sort(key=int)
    return Queue(jobs, by_opus_id)


@dataclass(frozen=True)
class Ended:
    """One jobcomp line: a SLURM job ended."""

    slurm_id: str
    state: str
    exit_code: str
    job_id: str  #: the OPUS job (the last part of WorkDir)


class JobcompFollower:
    """The jobcomp/filetxt log, read from where the last read stopped.

    Only lines whose WorkDir is directly under ``jobs_root`` (this server's jobs) are kept.  A log
    that shrinks or is replaced (rotation) is read again from its start.  Thread-safe: the epilog's
    hints (any request thread) look jobs up, the dispatcher takes what is new (``new``): a line read
    for a lookup is still new to the dispatcher.  What the log held at the first read is history,
    never new (reconciliation covers the jobs it concerns).
    """

    def __init__(self, path: str | None, jobs_root: str):
        self.path = path
        self.jobs_root = jobs_root.rstrip("/")
        self._lock = threading.Lock()
        self._offset = 0
        self._inode: tuple[int, int] | None = None
        self._partial = b""
        self._read_once = False
        self._taking = False  # only the dispatcher takes new lines: no other process keeps them
        self._fresh: list[Ended] = []
        self.ended: dict[str, Ended] = {}
        self.by_job: dict[str, list[str]] = {}

    def new(self) -> list[Ended]:
        """Lines (of this server's jobs) added since the last call; [] without a log."""
        self._taking = True
        self.poll()
        with self._lock:
            fresh, self._fresh = self._fresh, []
        return fresh

    def poll(self) -> None:
        """Read what the log gained since the last read."""
        if not self.path:
            return
        with self._lock:
            try:
                with open(self.path, "rb") as f:
                    info = os.fstat(f.fileno())
                    if (info.st_dev, info.st_ino) != self._inode or info.st_size < self._offset:
                        self._inode, self._offset, self._partial = (info.st_dev, info.st_ino), 0, b""
                    if info.st_size == self._offset:
                        return
                    f.seek(self._offset)
                    chunk = f.read()
            except OSError as exc:
                log.warning("cannot read the jobcomp log %s: %s", self.path, exc)
                return
            self._offset += len(chunk)
            data = self._partial + chunk
            complete, _, self._partial = data.rpartition(b"\n")
            added = list(self._index(complete.decode(errors="replace")))
            if self._read_once and self._taking:
                self._fresh.extend(added)
            self._read_once = True

    def _index(self, text: str) -> Iterator[Ended]:
        prefix = self.jobs_root + "/"
        for line in text.splitlines():
            job = _JOBCOMP_ID.match(line)
            where = _JOBCOMP_WORKDIR.search(line)
            if not job or not where or not where.group(1).startswith(prefix):
                continue
            job_id = where.group(1)[len(prefix):]
            if "/" in job_id or not job_id:
                continue
            state = _JOBCOMP_STATE.search(line)
            code = _JOBCOMP_EXIT.search(line)
            ended = Ended(job.group(1), state.group(1) if state else "", code.group(1) if code else "", job_id)
            self.ended[ended.slurm_id] = ended
            self.by_job.setdefault(job_id, []).append(ended.slurm_id)
            yield ended

    def state_of(self, slurm_id: str) -> tuple[str, str]:
        """(JobState, ExitCode) of an ended SLURM job, or ("", "") when the log has no line for it."""
        self.poll()
        found = self.ended.get(slurm_id)
        return (found.state, found.exit_code) if found else ("", "")

    def of_job(self, job_id: str) -> list[str]:
        """The SLURM ids that the log says ran (and ended) for OPUS job ``job_id``."""
        self.poll()
        return list(self.by_job.get(job_id, ()))


@dataclass(frozen=True)
class Hint:
    job_id: str
    slurm_id: str
    exit_code: str


class EpilogSpool:
    """``DATA_DIR/slurm-spool``: where scripts/opus-slurm-epilog leaves the hints it could not POST.

    The directory is the server user's, mode 1733 (the epilog, running as SlurmUser, can add a file
    but not list or remove others').  A hint is only a hint: the server checks it like a POSTed one.
    """

    def __init__(self, path: Path):
        self.path = path

    def create(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.path.chmod(0o1733)
        except OSError as exc:
            log.warning("cannot create the epilog spool %s: %s", self.path, exc)

    def drain(self) -> list[Hint]:
        """Every spooled hint, each removed as it is read (malformed ones too)."""
        hints: list[Hint] = []
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return hints
        for entry in entries:
            if entry.name.startswith("."):  # the epilog is still writing it
                continue
            hint = self._read(entry)
            try:
                os.unlink(entry.path)
            except OSError as exc:
                log.warning("cannot remove the spooled hint %s: %s", entry.path, exc)
                continue
            if hint is not None:
                hints.append(hint)
        return hints

    @staticmethod
    def _read(entry: os.DirEntry[str]) -> Hint | None:
        name = _SPOOL_NAME.match(entry.name)
        if name is None:
            return None
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    return None
                body = json.loads(f.read(SPOOL_MAX_BYTES + 1)[:SPOOL_MAX_BYTES])
        except (OSError, ValueError):
            return None
        exit_code = body.get("exit_code", "") if isinstance(body, dict) else ""
        return Hint(name.group(1), name.group(2), str(exit_code)[:32])


class SubmitLock:
    """``<job dir>/slurm-submit.lock``, held while an sbatch for the job may run (flock, non-blocking)."""

    def __init__(self, root: Path):
        self.path = root / SUBMIT_LOCK
        self.fd: int | None = None

    def __enter__(self) -> SubmitLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return self
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @classmethod
    def held(cls, root: Path) -> bool:
        """Whether some process (a dead server's sbatch) holds the job's lock now."""
        if not (root / SUBMIT_LOCK).exists():
            return False
        try:
            with cls(root) as lock:
                return lock.fd is None
        except OSError:  # the job's directory is gone
            return False
