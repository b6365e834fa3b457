"""A private Apache for the deployment tests (tests/test_packaging.py: mod_wsgi as docs/deployment.md
says; tests/test_oidc_apache.py: mod_auth_openidc in front, as docs/single-sign-on.md says): its own
port, pid file, runtime directory and logs under ``root``, started as a system service is (as root,
the daemon processes as ``APACHE_USER``), stopped however the test ends."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import wait_for

MODULES = Path("/usr/lib/apache2/modules")
APACHE_USER = "www-data"


def apache_binary(*modules: str) -> str:
    """Debian's apache2, with ``modules`` (e.g. "wsgi"); a missing one fails the test, naming the package."""
    apache = shutil.which("apache2") or "/usr/sbin/apache2"
    missing = [m for m in modules if not (MODULES / f"mod_{m}.so").exists()]
    if not Path(apache).exists() or missing:
        pytest.fail(f"apache2 or its modules {missing} are missing: scripts/setup.sh --test installs them")
    if os.geteuid() != 0:
        pytest.fail("the Apache tests start Apache as root, as a system service does")
    return apache


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(root: Path, port: int, modules: tuple[str, ...], body: str) -> Path:
    """``root``/httpd.conf: a server on 127.0.0.1:``port`` loading ``modules``, then ``body``."""
    loads = "\n".join(f"LoadModule {name}_module {MODULES}/mod_{name}.so" for name in modules)
    config = root / "httpd.conf"
    config.write_text(f"""\
ServerRoot {root}
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {root}/apache.pid
DefaultRuntimeDir {root}
Mutex file:{root}
User {APACHE_USER}
Group {APACHE_USER}
ErrorLog {root}/error.log
LogLevel warn
WSGISocketPrefix {root}/wsgi
TypesConfig /etc/mime.types
{loads}
{body}
""")
    return config


@contextmanager
def running(apache: str, config: Path, env: dict[str, str]) -> Iterator[None]:
    """Apache checked (-t), started, and stopped on leaving (its pid file gone)."""
    for action in (["-t"], ["-k", "start"]):
        run = subprocess.run([apache, "-f", str(config), *action], env=env, capture_output=True, text=True,
                             timeout=60, check=False)
        assert run.returncode == 0, f"apache2 {' '.join(action)}: {run.stdout}{run.stderr}"
    try:
        yield
    finally:
        subprocess.run([apache, "-f", str(config), "-k", "stop"], capture_output=True, timeout=60, check=False)
        wait_for(lambda: not (config.parent / "apache.pid").exists(), timeout=30, what="Apache to stop",
                 quietly=True)
