"""What a job definition needs on the host that runs its script: Python modules and commands.

A definition may declare ``"needs": {"python": ["astropy"], "commands": ["gzip"]}``.  Nothing is
installed from it: ``opus check`` and the admin page say when a need is missing, so that an admin
learns it before the first job fails.  The check is made on the server host:

* a Python module is looked up (without importing it, except the parents of a dotted name) in the
  interpreter running OPUS, which is the one job scripts get as ``$OPUS_PYTHON`` (on SLURM, unless
  ``SLURM_PYTHON`` names another);
* a command is looked up on the ``PATH`` job scripts get (``/usr/local/bin:/usr/bin:/bin``), or
  checked as given when it is an absolute path.

The VOTable and WADL forms carry ``needs`` too (``needs_xml``); a document without them needs nothing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from typing import Any

from opus.errors import ConfigurationError

#: The kinds of need, as the keys of the ``needs`` object.
KINDS = ("python", "commands")
#: The PATH job scripts run with (``opus.managers.wrapper.SAFE_PATH``, repeated: jobdef sits below managers).
JOB_PATH = "/usr/local/bin:/usr/bin:/bin"
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){0,15}\Z")
_COMMAND = re.compile(r"^(?:/[A-Za-z0-9_.+-]+)*/?[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,127}\Z")
_MAX_NEEDS = 100


def parse(ctx: str, data: Any) -> dict[str, list[str]]:
    """The ``needs`` object of a definition's JSON form, checked (ConfigurationError naming the field)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{ctx}: needs must be an object such as "
                                 '{"python": ["astropy"], "commands": ["gzip"]}')
    unknown = sorted(set(data) - set(KINDS))
    if unknown:
        raise ConfigurationError(f"{ctx}: needs: unknown kind(s) {unknown}; allowed {list(KINDS)}")
    out: dict[str, list[str]] = {}
    for kind in KINDS:
        names = data.get(kind)
        if names is None:
            continue
        if not isinstance(names, list) or len(names) > _MAX_NEEDS:
            raise ConfigurationError(f"{ctx}: needs.{kind} must be a list of at most {_MAX_NEEDS} names")
        pattern = _MODULE if kind == "python" else _COMMAND
        for name in names:
            if not isinstance(name, str) or not pattern.match(name):
                what = "a module name such as astropy.io.fits" if kind == "python" else \
                    "a command name such as gzip, or an absolute path"
                raise ConfigurationError(f"{ctx}: needs.{kind}: {str(name)[:80]!r} is not {what}")
        if names:
            out[kind] = list(dict.fromkeys(names))
    return out


def missing(needs: dict[str, list[str]]) -> list[str]:
    """The needs not met on this host, each as a phrase ("Python module 'astropy'"); [] when all are."""
    out = []
    if needs.get("python"):
        importlib.invalidate_caches()  # a package installed since the server started is found
    for module in needs.get("python", []):
        if not _module_found(module):
            out.append(f"Python module {module!r}")
    for command in needs.get("commands", []):
        if not _command_found(command):
            out.append(f"command {command!r}")
    return out


def _module_found(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except Exception:  # noqa: BLE001 (a parent package missing or failing to import: not usable either)
        return False


def _command_found(name: str) -> bool:
    if name.startswith("/"):
        return os.path.isfile(name) and os.access(name, os.X_OK)
    return shutil.which(name, path=JOB_PATH) is not None
