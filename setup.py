"""setuptools entry point: the configuration lives in pyproject.toml; this file only adds the build
hook that puts the web client's libraries (npm, package-lock.json) into the sdist and the wheel
(build_web.py)."""
import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent))  # PEP 517 backends do not put it there
from build_web import cmdclass  # noqa: E402

setup(cmdclass=cmdclass)
