"""Packaging hook: put the web client's libraries into the sdist and the wheel.

The pages load Bootstrap, CodeMirror and the other npm packages that ``package-lock.json`` lists
from ``/web/lib/``.  A checkout serves them from ``node_modules/`` (``npm ci``); an installed
package has no checkout, so the build copies the files the server serves (``opus/weblibs.py``
decides which) into ``opus/web/lib/`` of the sdist and of the wheel, with the lock file beside
them as ``.package-lock.json``.

Where the files come from, in order:
1. ``opus/web/lib/`` already in the source tree: an unpacked sdist (building its wheel needs no npm);
2. ``node_modules/`` of the checkout, when it holds exactly what the lock file lists;
3. ``npm ci --ignore-scripts`` from the lock file, in a temporary directory.

``setup.py`` passes ``cmdclass`` to setuptools.  Standard library and setuptools only.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from setuptools.command.build_py import build_py as _build_py
from setuptools.command.sdist import sdist as _sdist

HERE = Path(__file__).resolve().parent
LOCK = "package-lock.json"
TARGET = Path("opus", "web", "lib")


def _rules() -> ModuleType:
    """opus/weblibs.py, loaded by path: importing the opus package would need its dependencies."""
    spec = importlib.util.spec_from_file_location("_opus_weblibs", HERE / "opus" / "weblibs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _installed(lock: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.get("version"), v.get("integrity")) for k, v in (lock.get("packages") or {}).items() if k}


def _copy(source: Path, lock_file: Path, dest: Path) -> int:
    """Copy the served files of ``source`` (a node_modules directory) to ``dest``; return their count."""
    rules = _rules()
    names = rules.packages(rules.read_lock(lock_file))
    if dest.exists():
        shutil.rmtree(dest)
    count = 0
    for relative in rules.served_files(source, names):
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, dest / relative)
        count += 1
    entries = rules.read_lock(lock_file).get("packages") or {}
    missing = [n for n in names if not (source / n).is_dir()
               and not entries.get(f"node_modules/{n}", {}).get("optional")]  # e.g. another platform's
    if missing:
        raise SystemExit(f"build_web: the lock file lists {missing} but {source} does not hold them")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(lock_file, dest / rules.LOCK_NAME)
    return count


def _npm_ci(work: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("build_web: building OPUS from a checkout needs npm, to fetch the web client's "
                         "libraries from package-lock.json (Debian: apt-get install npm); or install the "
                         "published sdist or wheel, which contain them")
    for name in ("package.json", LOCK):
        shutil.copyfile(HERE / name, work / name)
    result = subprocess.run([npm, "ci", "--ignore-scripts", "--omit=dev", "--no-audit", "--no-fund",
                             "--prefer-offline"], cwd=work, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"build_web: npm ci failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return work / "node_modules"


def build_libraries(dest: Path, log: Any = print) -> None:
    """Fill ``dest`` (an ``opus/web/lib`` directory of a build) with the web client's libraries."""
    prebuilt = HERE / TARGET
    rules = _rules()
    if (prebuilt / rules.LOCK_NAME).is_file():
        if prebuilt.resolve() != dest.resolve():
            shutil.copytree(prebuilt, dest, dirs_exist_ok=True)
        log(f"build_web: web client libraries from {prebuilt}")
        return
    lock_file = HERE / LOCK
    if not lock_file.is_file():
        raise SystemExit(f"build_web: neither {prebuilt} nor {lock_file} exists")
    lock = json.loads(lock_file.read_text(encoding="utf-8"))
    checkout = HERE / "node_modules"
    if _installed(rules.read_lock(checkout / rules.LOCK_NAME)) == _installed(lock):
        count = _copy(checkout, lock_file, dest)
        log(f"build_web: {count} files of the web client libraries from {checkout}")
        return
    with tempfile.TemporaryDirectory(prefix="opus-npm-") as tmp:
        log("build_web: npm ci (the web client libraries of package-lock.json)")
        count = _copy(_npm_ci(Path(tmp)), lock_file, dest)
        log(f"build_web: {count} files of the web client libraries")


class build_py(_build_py):  # noqa: N801 (setuptools' command names)
    """build_py, plus the libraries in ``opus/web/lib`` (not for editable installs: they use node_modules)."""

    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):
            build_libraries(Path(self.build_lib) / TARGET, log=self.announce_info)

    def announce_info(self, message: str) -> None:
        self.announce(message, level=2)


class sdist(_sdist):  # noqa: N801
    """sdist, plus the libraries in ``opus/web/lib`` so that installing it needs no npm."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        build_libraries(Path(base_dir) / TARGET, log=lambda m: self.announce(m, level=2))


cmdclass = {"build_py": build_py, "sdist": sdist}
