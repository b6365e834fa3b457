"""The server's side of the job sandbox: what the wrapper is told, whether the sandbox works here,
and the job user.

The sandbox itself is built by ``opus.managers.jobsandbox`` (standard library only, run by the job
wrapper, on SLURM compute nodes too).  Here:

* ``wrapper_config``: the ``sandbox`` section of a job's job.json (mode, job user, network, extra
  read-only paths, paths to hide);
* ``SandboxProbe``: runs ``true`` in a real sandbox, as jobs would be, and remembers the answer for
  a minute.  With ``JOB_SANDBOX = "bwrap"``, a server whose sandbox does not work starts no jobs
  (they wait in QUEUED) and says why in /availability and on the admin page;
* ``ensure_job_user``, ``check_files``: for ``opus init`` and ``opus check``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from opus.managers.jobsandbox import Sandbox, SandboxError
from opus.settings import Settings

#: Seconds a probe's answer is kept (a fixed installation is noticed within a minute).
PROBE_TTL = 60.0


def wrapper_config(settings: Settings, network: bool = False) -> dict[str, Any]:
    """The ``sandbox`` section of job.json for a job (``network``: the definition allows it)."""
    hide: list[str] = [settings.DATA_DIR, settings.JDL_DIR]
    if settings.settings_file:
        hide.append(settings.settings_file)
    return {"mode": settings.JOB_SANDBOX, "bwrap": settings.JOB_SANDBOX_BWRAP, "user": settings.JOB_USER,
            "network": bool(network), "read_only": list(settings.JOB_SANDBOX_READ_ONLY), "hide": hide}


def probe(settings: Settings) -> str | None:
    """None when a job's script can run in the sandbox on this host, else why not."""
    if settings.JOB_SANDBOX == "none":
        return None
    try:
        sandbox = Sandbox(wrapper_config(settings))
        with tempfile.TemporaryDirectory(prefix="opus-sandbox-probe-") as tmp:
            work = Path(tmp) / "work"
            work.mkdir()
            sandbox.give_to_job([work])
            command = sandbox.command(["/bin/sh", "-c", "echo ok > probe && cat probe"], work, [])
            done = subprocess.run(command, cwd=work, capture_output=True, timeout=20,
                                  stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"})
    except SandboxError as exc:
        return str(exc)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap cannot be run: {exc}"
    if done.returncode != 0 or done.stdout.strip() != b"ok":
        said = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()
        return "bubblewrap cannot start a sandbox here: " + (said[-1] if said else f"exit status {done.returncode}")
    return None


class SandboxProbe:
    """``probe`` with its answer kept for ``PROBE_TTL`` seconds (thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._answer: str | None = None
        self._at = -PROBE_TTL

    def problem(self) -> str | None:
        """None if jobs may be started here, else the reason (for logs, /availability, the admin page)."""
        with self._lock:
            if time.monotonic() - self._at >= PROBE_TTL:
                self._answer = probe(self.settings)
                self._at = time.monotonic()
            return self._answer


def ensure_job_user(settings: Settings) -> str:
    """Create the job user if this process is root and it is missing; return what was done."""
    if settings.JOB_SANDBOX == "none":
        return "JOB_SANDBOX is 'none': no job user needed"
    name = settings.JOB_USER
    try:
        entry = pwd.getpwnam(name)
        return f"job user {name!r} exists (uid {entry.pw_uid})"
    except KeyError:
        pass
    if os.geteuid() != 0:
        return (f"job user {name!r} does not exist; not needed while OPUS runs as "
                f"{pwd.getpwuid(os.geteuid()).pw_name} (jobs then run in a user namespace)")
    useradd = shutil.which("useradd", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if useradd is None:
        raise RuntimeError(f"cannot create the job user {name!r}: useradd not found; create a system user "
                           "with no login shell by hand")
    subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", "--comment", "OPUS job scripts", name],
                   check=True, capture_output=True)
    return f"created the job user {name!r} (uid {pwd.getpwnam(name).pw_uid})"


def private_files(settings: Settings) -> list[Path]:
    """The files only the server's user may read: its secret, its SQLite database, its settings."""
    data = Path(settings.DATA_DIR)
    paths = [data / "secret.key"]
    if settings.DATABASE_URL is None:
        paths += [data / "opus.sqlite", data / "opus.sqlite-wal", data / "opus.sqlite-shm"]
    if settings.settings_file:
        paths.append(Path(settings.settings_file))
    return paths


def restrict_files(settings: Settings) -> list[str]:
    """chmod 600 the private files that exist (``opus init``); what was changed."""
    changed = []
    for path in private_files(settings):
        try:
            if path.stat().st_mode & 0o077 and path.stat().st_uid == os.geteuid():
                path.chmod(0o600)
                changed.append(str(path))
        except FileNotFoundError:
            continue
    return changed


def check_files(settings: Settings) -> list[str]:
    """Problems with who may read the server's secrets: each a sentence for ``opus check``."""
    problems = []
    data = Path(settings.DATA_DIR)  # itself traversable: SLURM's epilog reads callback_url (docs/slurm.md)
    for path in private_files(settings):
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & 0o077:
            problems.append(f"{path} can be read by others than its owner (mode {mode & 0o777:o}): "
                            f"chmod 600 {path}")
    return problems

