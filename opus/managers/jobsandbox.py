"""The job sandbox: the bubblewrap command line that runs a job's script, and how to stop it.

Standard library only: the job wrapper imports it on SLURM compute nodes too (and it is copied
beside the wrapper when the cluster does not share OPUS's files).

A job's script is untrusted code with respect to the server and to other users.  It sees:

* its own work directory, read-write (also its current directory and ``HOME``);
* its staged inputs (``uploads/``), ``parameters.json`` and ``script.sh``, read-only;
* the system, read-only: ``/usr``, ``/etc``, ``/opt`` and the merged-/usr links, the Python
  installation running the wrapper (``OPUS_PYTHON``) and its packages, OPUS's own package (the
  examples run ``python -m opus.examples...``), and the definition's extra read-only paths;
* a private ``/tmp``, ``/dev`` (null, zero, random, ...) and ``/proc`` of its own PID namespace;

and nothing else: not ``DATA_DIR``, not other jobs, not the server's settings, secret or database.
Paths that the server names to hide (the settings file, ``DATA_DIR``, ``JDL_DIR``) are covered
by an empty file system where they fall inside a mounted tree.  The network is a separate
namespace with only a loopback interface unless the definition allows the network.

Started by root (the local manager as root, a SLURM job of root), bubblewrap sets the namespaces
up with root's rights, then ``setpriv`` drops to the unprivileged job user (``JOB_USER``) with no
capabilities, no supplementary groups and ``no_new_privs``: the script never runs as root.
Started by another user, bubblewrap uses an unprivileged user namespace; the script keeps that
user's uid outside the sandbox, but sees none of its files beyond the mounts above.

**Nothing of a job survives it.**  The sandbox is a PID namespace whose first process is
bubblewrap's own init: when it dies (the script ended, the group was killed, or the wrapper died and
``--die-with-parent`` killed the sandbox), the kernel kills every process inside, ``setsid`` or
not.  Without the sandbox (``JOB_SANDBOX = "none"``) the wrapper makes itself a child subreaper, so
that what the script leaves behind stays its descendant, and ``kill_descendants`` ends it when the
script ends or is stopped; that needs the wrapper alive (a SIGKILLed wrapper leaves the server to
kill the script's process group, and a ``setsid`` child can then survive).

The processes inside stay in the process group of the outer ``bwrap`` (no ``--new-session``; jobs
have no terminal).  A SIGTERM to that outer process would end the sandbox at once through
``--die-with-parent``, so ``terminate`` signals the processes inside only, which keeps the
script's grace period; SIGKILL of the group then ends everything.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Read-only system trees, and the merged-/usr links (kept as links when they are links).
SYSTEM_TREES = ("/usr", "/etc", "/opt")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SETPRIV = "/usr/bin/setpriv"
#: The OPUS package that holds this module (``opus/managers/`` -> ``opus/``), when it is one.
_PACKAGE = Path(__file__).resolve().parent.parent


#: Run with ``errexit``: the script sourced by a bash that stops at the first failing command (also in
#: functions: ``-E``) and says which, on stderr (so in the job's error message), as the original
#: OPUS's ERR trap did.  ``$0`` is the script's path, as when bash runs it.
ERREXIT_RUNNER = ("set -eE; trap 'echo \"line $LINENO failed (exit status $?): $BASH_COMMAND\" >&2' ERR; "
                  '. "$0"')


def script_command(script: str, shell: str | None, errexit: bool) -> list[str]:
    """The bash command running ``script``: ``shell`` "login" runs ``bash -l`` (/etc/profile, then
    /etc/profile.d/*.sh, read inside the sandbox from its read-only /etc: what they load must lie in
    /usr, /etc, /opt or JOB_SANDBOX_READ_ONLY), anything else a plain bash with the wrapper's PATH."""
    command = ["/bin/bash", "-l"] if shell == "login" else ["/bin/bash"]
    return command + (["-c", ERREXIT_RUNNER, script] if errexit else [script])


class SandboxError(Exception):
    """The sandbox cannot be set up (the job then ends in ERROR with this message)."""


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def python_paths() -> list[str]:
    """The interpreter running this code, its packages, and OPUS's own package."""
    paths = []
    venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    candidates = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):  # the wrapper runs with -S: no site, no sys.prefix
        candidates.append(venv)
    for p in candidates:
        p = os.path.realpath(p)
        if p not in paths:
            paths.append(p)
    if (_PACKAGE / "__init__.py").is_file() and (_PACKAGE / "managers" / "wrapper.py").is_file():
        paths.append(str(_PACKAGE))
    return paths


def job_user(name: str | None) -> tuple[int, int]:
    """(uid, gid) of the job user; SandboxError if it is missing or privileged."""
    if not name:
        raise SandboxError("JOB_USER is not set: a job started by root must run as an unprivileged user")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SandboxError(f"the job user {name!r} (JOB_USER) does not exist on this host; "
                           "`opus init` creates it") from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise SandboxError(f"the job user {name!r} (JOB_USER) is root or in group root")
    return entry.pw_uid, entry.pw_gid


class Sandbox:
    """The command that runs one job's script inside the sandbox.

    ``config`` is the ``sandbox`` section of the wrapper's job.json: ``mode`` ("bwrap" or "none"),
    ``bwrap`` (its path or name), ``user`` (the job user, when started by root), ``network``
    (bool), ``read_only`` (extra read-only paths) and ``hide`` (paths to cover).
    """

    def __init__(self, config: dict[str, Any]) -> None:  # Any: job.json
        self.config = config or {}
        self.mode: str = self.config.get("mode", "bwrap")
        if self.mode not in ("bwrap", "none"):
            raise SandboxError(f"unknown sandbox mode {self.mode!r}")
        self.as_root = os.geteuid() == 0
        self.ids: tuple[int, int] | None = None
        if self.mode == "bwrap" and self.as_root:
            self.ids = job_user(self.config.get("user"))

    @property
    def enabled(self) -> bool:
        return self.mode == "bwrap"

    def bwrap(self) -> str:
        found = shutil.which(self.config.get("bwrap") or "bwrap", path="/usr/local/bin:/usr/bin:/bin")
        if not found:
            raise SandboxError(f"bubblewrap ({self.config.get('bwrap') or 'bwrap'}) is not installed on this host")
        return found

    def give_to_job(self, paths: list[Path]) -> None:
        """As root: hand the job's work directory and inputs to the job user (inputs stay read-only:
        they are mounted so)."""
        if self.ids is None:
            return
        uid, gid = self.ids
        for top in paths:
            if not top.exists():
                continue
            for path in [top, *(top.rglob("*") if top.is_dir() and not top.is_symlink() else [])]:
                os.lchown(path, uid, gid)

    def command(self, argv: list[str], work: Path, read_only: list[Path]) -> list[str]:
        """``argv`` (the script's command) wrapped in the sandbox; ``argv`` itself when disabled."""
        if not self.enabled:
            return argv
        args = [self.bwrap(), "--die-with-parent", "--unshare-ipc", "--unshare-pid", "--unshare-uts",
                "--unshare-cgroup-try", "--hostname", "opus-job"]
        if not self.as_root:
            args.append("--unshare-user")  # unprivileged: the namespaces come from a user namespace
        if not self.config.get("network"):
            args.append("--unshare-net")
        args += ["--perms", "1777", "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
        mounted: list[str] = []
        for tree in SYSTEM_TREES:
            if os.path.isdir(tree):
                args += ["--ro-bind", tree, tree]
                mounted.append(tree)
        for link in SYSTEM_LINKS:
            if os.path.islink(link):
                args += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link):
                args += ["--ro-bind", link, link]
                mounted.append(link)
        if self.config.get("network"):
            args += ["--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve"]
        created: set[str] = {"/", "/tmp", "/proc", "/dev", *mounted}
        extra = [*python_paths(), *self.config.get("read_only", [])]
        for path in extra:
            path = os.path.realpath(path)
            if _under(path, mounted) or not os.path.exists(path):
                continue
            args += self._parents(path, created) + ["--ro-bind", path, path]
            mounted.append(path)
        for path in self.config.get("hide", []):
            path = os.path.realpath(path)
            if os.path.isfile(path) and os.path.dirname(path) not in ("/", *SYSTEM_TREES):
                path = os.path.dirname(path)  # a settings file's folder may hold keys and certificates too
            if not _under(path, mounted) or path in SYSTEM_TREES:
                continue
            if os.path.isdir(path):
                args += ["--tmpfs", path]
            elif os.path.exists(path):
                args += ["--ro-bind", "/dev/null", path]
        for path in read_only:
            if path.exists():
                args += self._parents(str(path), created) + ["--ro-bind", str(path), str(path)]
        args += self._parents(str(work), created) + ["--bind", str(work), str(work), "--chdir", str(work)]
        args.append("--")
        if self.ids is not None:
            uid, gid = self.ids
            args += [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all",
                     "--bounding-set=-all", "--no-new-privs", "--"]
        return args + argv

    @staticmethod
    def _parents(path: str, created: set[str]) -> list[str]:
        """``--dir`` for each missing ancestor of ``path``, world-traversable (bwrap's default is 0700)."""
        out: list[str] = []
        parts = Path(path).parent.parts
        for i in range(2, len(parts) + 1):
            parent = str(Path(*parts[:i]))
            if parent not in created:
                out += ["--perms", "0755", "--dir", parent]
                created.add(parent)
        return out


def _processes() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ...) of every
    process that still exists while /proc is read."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                yield int(entry), f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue


def group_members(pgid: int) -> list[tuple[int, bytes]]:
    """(pid, state letter) of every process of process group ``pgid``, read from /proc."""
    return [(pid, fields[0]) for pid, fields in _processes() if int(fields[2]) == pgid]


def terminate(outer_pid: int, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to every process of the sandbox's process group except the outer ``bwrap``.

    The outer bwrap has no handler: a SIGTERM would kill it, and ``--die-with-parent`` would then
    SIGKILL the whole sandbox before the script used its grace period.  The sandbox's own init
    (PID 1 inside) ignores signals it has no handler for, so the script gets them alone.
    """
    for pid, _state in group_members(outer_pid):
        if pid != outer_pid:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def become_subreaper() -> None:
    """Make this process the reaper of its orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``)."""
    import ctypes  # only without the sandbox: ctypes costs start-up time

    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass  # not Linux: only the script's process group is stopped


def kill_descendants(ancestor: int) -> None:
    """SIGKILL every live descendant of ``ancestor`` (read from /proc), whatever its session."""
    for _ in range(10):  # a process may fork while we look: look again until none is left
        parents = {pid: int(fields[1]) for pid, fields in _processes() if fields[0] != b"Z"}
        found = [pid for pid in parents if _descends(pid, ancestor, parents)]
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _descends(pid: int, ancestor: int, parents: dict[int, int]) -> bool:
    seen = 0
    while pid in parents and seen < 1000:
        pid = parents[pid]
        if pid == ancestor:
            return True
        seen += 1
    return False
