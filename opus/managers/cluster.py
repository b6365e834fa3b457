"""How the SLURM manager reaches the cluster: commands and files.

* Local (default): the server host is a submit host and shares DATA_DIR with the nodes; commands
  run here and files need no copying.
* ssh (SLURM_SSH_HOST set): commands run on a login node through ssh, every argument quoted for
  the remote shell.  With SLURM_REMOTE_DIR set, nothing is shared: a job's directory is copied to
  ``<SLURM_REMOTE_DIR>/<job id>`` before sbatch and copied back (results, output, report) when
  the job ends, as tar streams over the same ssh connection.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

from opus.settings import Settings


#: ssh's exit status when ssh itself failed (the login node is out of reach).
SSH_FAILURE = 255


class Unreachable(OSError):
    """The cluster could not be reached (ssh failed or timed out): a transient failure, not the job's."""


class ClusterAccess:
    """Run SLURM commands and move job directories, locally or through ssh."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.host = settings.SLURM_SSH_HOST
        self.remote_dir = settings.SLURM_REMOTE_DIR if self.host else None

    @property
    def copies_files(self) -> bool:
        return self.remote_dir is not None

    def job_root(self, local_root: Path) -> PurePosixPath | Path:
        """Where the job's directory is on the cluster."""
        if self.remote_dir is None:
            return local_root
        return PurePosixPath(self.remote_dir) / local_root.name

    # ---- commands ------------------------------------------------------------------------------
    def _ssh(self) -> list[str]:
        s = self.settings
        cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-p", str(s.SLURM_SSH_PORT)]
        if s.SLURM_SSH_KEY:
            cmd += ["-i", s.SLURM_SSH_KEY, "-o", "IdentitiesOnly=yes"]
        if s.SLURM_SSH_KNOWN_HOSTS:
            cmd += ["-o", f"UserKnownHostsFile={s.SLURM_SSH_KNOWN_HOSTS}", "-o", "StrictHostKeyChecking=yes"]
        if not self.host:
            raise RuntimeError("ssh to the cluster without SLURM_SSH_HOST")
        target = f"{s.SLURM_SSH_USER}@{self.host}" if s.SLURM_SSH_USER else self.host
        return [*cmd, target, "--"]

    def _exe(self, name: str) -> str:
        return os.path.join(self.settings.SLURM_BIN_DIR, name) if self.settings.SLURM_BIN_DIR else name

    def run(self, name: str, *args: str, timeout: float = 60, stdin: bytes | None = None,
            pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
        """Run a command (``name`` is looked up in SLURM_BIN_DIR) here or on the login node.

        ``pass_fds``: descriptors the command inherits (e.g. a lock it must hold while it runs)."""
        argv = [self._exe(name), *args]
        if self.host:
            argv = [*self._ssh(), " ".join(shlex.quote(a) for a in argv)]
        return subprocess.run(argv, capture_output=True, text=stdin is None, timeout=timeout,
                              input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                              pass_fds=pass_fds)

    def _remote_shell(self, script: str, stdin: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*self._ssh(), script], stdin=stdin or subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    # ---- files ---------------------------------------------------------------------------------
    def push(self, local_root: Path, timeout: float = 600) -> None:
        """Copy the job's directory to the cluster (nothing to do on a shared filesystem)."""
        if not self.copies_files:
            return
        remote = shlex.quote(str(self.job_root(local_root)))
        tar = subprocess.Popen(["tar", "-C", str(local_root), "-cf", "-", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None  # stdout=PIPE
        ssh = self._remote_shell(f"mkdir -p {remote} && tar -C {remote} -xf -", stdin=tar.stdout)
        tar.stdout.close()
        try:
            _, err = ssh.communicate(timeout=timeout)
            tar.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            ssh.kill()
            tar.kill()
            raise Unreachable(f"copying the job to the cluster took more than {timeout:.0f} s") from None
        if ssh.returncode == SSH_FAILURE:
            raise Unreachable(f"the cluster cannot be reached: {err.decode(errors='replace').strip()}")
        if ssh.returncode != 0 or tar.returncode != 0:
            raise OSError(f"copying the job to the cluster failed: {err.decode(errors='replace').strip()}")

    def pull(self, local_root: Path, timeout: float = 600) -> None:
        """Copy what the job wrote (results, output, report) back from the cluster."""
        if not self.copies_files:
            return
        remote = shlex.quote(str(self.job_root(local_root)))
        members = "results stdout.log stderr.log report.json wrapper.log slurm.log"
        ssh = self._remote_shell(f"cd {remote} && tar -cf - --ignore-failed-read {members} 2>/dev/null; true")
        try:
            # The job's own script could have put anything there: the "data" filter refuses links
            # out of the directory, absolute paths and device files.
            with tarfile.open(fileobj=ssh.stdout, mode="r|") as archive:
                archive.extractall(local_root, filter="data")
        except (tarfile.TarError, OSError) as exc:
            ssh.kill()
            raise OSError(f"copying the job back from the cluster failed: {exc}") from None
        finally:
            ssh.wait(timeout=timeout)

    def remove(self, local_root: Path) -> None:
        """Remove the job's directory on the cluster (the local one is the caller's)."""
        if not self.copies_files:
            return
        remote = shlex.quote(str(self.job_root(local_root)))
        self._remote_shell(f"rm -rf {remote}").communicate(timeout=60)
