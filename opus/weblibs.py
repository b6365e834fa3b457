"""The web client's third-party libraries (Bootstrap, CodeMirror, ...): which files are served.

One rule for the two places the libraries live:
- a checkout: ``node_modules/``, filled by ``npm ci`` from ``package-lock.json``;
- an installed wheel: ``opus/web/lib/``, which the build (``build_web.py``) fills with exactly the
  files this rule serves, in the same layout, at packaging time.

Each holds a ``.package-lock.json`` (npm writes it in ``node_modules/``; the build copies the lock
file there): its packages are the ones served (in a directory without one, set by hand as
WEB_LIBRARIES_DIR: every package in it).  Of a package, only the files a browser loads are
served: scripts, styles, fonts and raster images, and its licence — never its
``package.json``, documentation, source maps, HTML or
SVG (both may carry scripts).

Standard library only: the build loads this file by path, before OPUS or its dependencies exist.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

#: The package list inside a libraries directory (npm's "hidden lockfile" name).
LOCK_NAME = ".package-lock.json"
#: The file types a page loads from a library.
SERVED_SUFFIXES = frozenset({".js", ".mjs", ".cjs", ".css", ".woff", ".woff2", ".ttf", ".otf", ".eot",
                             ".png", ".gif", ".jpg", ".jpeg", ".webp"})
#: A package's licence files, shipped with it (their licences ask for it), served as text.
LICENCE_PREFIXES = ("LICENSE", "LICENCE", "COPYING", "NOTICE")


def packages(lock: dict[str, Any]) -> list[str]:
    """The installed packages a lock file lists, as paths below node_modules ("bootstrap",
    "@popperjs/core", "a/node_modules/b"), development-only and linked ones left out."""
    found = []
    for key, entry in (lock.get("packages") or {}).items():
        if not key.startswith("node_modules/") or not isinstance(entry, dict):
            continue
        if entry.get("dev") or entry.get("link"):
            continue
        found.append(key[len("node_modules/"):])
    return sorted(found)


def installed(directory: Path) -> list[str]:
    """The packages of a libraries directory: those of its lock file; without one (a directory made
    by hand, WEB_LIBRARIES_DIR), every package directory in it."""
    lock = directory / LOCK_NAME
    if lock.is_file():
        return packages(read_lock(lock))
    try:
        entries = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    names: list[str] = []
    for entry in entries:
        if entry.name.startswith("@"):
            names.extend(f"{entry.name}/{p.name}" for p in sorted(entry.iterdir()) if p.is_dir())
        else:
            names.append(entry.name)
    return names


def read_lock(path: Path) -> dict[str, Any]:
    """A lock file's JSON ({} when absent)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def package_of(path: str, names: list[str]) -> str | None:
    """The package (the longest listed name) a relative path is inside, if any."""
    best = None
    for name in names:
        if path.startswith(name + "/") and (best is None or len(name) > len(best)):
            best = name
    return best


def is_served_file(path: str) -> bool:
    """Whether a path inside a package is one of the files a browser loads (no hidden files)."""
    parts = PurePosixPath(path).parts
    if not parts or any(p.startswith(".") or p in ("", "..") for p in parts):
        return False
    name = parts[-1]
    return PurePosixPath(name).suffix.lower() in SERVED_SUFFIXES or name.upper().startswith(LICENCE_PREFIXES)


def served(path: str, names: list[str]) -> bool:
    """Whether ``/web/lib/<path>`` may be answered from a directory whose packages are ``names``."""
    package = package_of(path, names)
    if package is None:
        return False
    inside = path[len(package) + 1:]  # a nested package not listed is not served
    return is_served_file(inside) and "node_modules" not in PurePosixPath(inside).parts


def served_files(root: Path, names: list[str]) -> Iterator[str]:
    """Every served file below ``root`` (a node_modules directory), as a relative POSIX path."""
    for name in names:
        base = root / name
        for directory, subdirs, files in os.walk(base):
            subdirs[:] = sorted(d for d in subdirs if d != "node_modules" and not d.startswith("."))
            for file in sorted(files):
                relative = (Path(directory) / file).relative_to(root).as_posix()
                if served(relative, names) and package_of(relative, names) == name:
                    yield relative
