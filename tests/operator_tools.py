"""What the operator's tests (tests/test_operator*.py) share: the `opus` command run as a process,
a settings file, the current user's name and a JDL_DIR with some shipped definitions."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

OPUS = [sys.executable, "-m", "opus.cli"]


def run_opus(*args: str, settings: Path | None = None, **kw) -> subprocess.CompletedProcess:
    """`opus ARGS` (with ``--settings settings``) in a process of its own, from the checkout."""
    head = [*OPUS, "--settings", str(settings)] if settings else OPUS
    return subprocess.run([*head, *args], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, **kw)


def settings_file(path: Path, **values) -> Path:
    """A settings file at ``path`` setting ``values``, readable by its owner only (as `opus check` wants)."""
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
    path.chmod(0o600)  # as `opus check` wants it
    return path


def current_user() -> str:
    """The name of the user running the tests."""
    return pwd.getpwuid(os.geteuid()).pw_name


def jdl_dir(tmp_path: Path, *names: str) -> Path:
    """``tmp_path``/jdl holding copies of the shipped definitions ``names``."""
    jdl = tmp_path / "jdl"
    jdl.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(REPO_ROOT / "jdl" / f"{name}.json", jdl)
    return jdl
