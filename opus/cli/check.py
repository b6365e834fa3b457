"""``opus check``: what would keep this server from running jobs, one line each.

``ok`` lines for what works, ``WARNING`` for what works with a caveat, ``PROBLEM``, ``INVALID`` and
``MISSING`` for what does not (exit status 1 when there is any).
"""

from __future__ import annotations

import argparse
import os
import pwd
from sqlalchemy.exc import SQLAlchemyError

from opus.cli import init
from opus.errors import ConfigurationError
from opus.jobdef import JobDefinitionRegistry, health
from opus.managers import sandbox
from opus.settings import Settings
from opus.storage import datadir
from opus.storage.database import create_engine_for, error_line, schema_problem, shown_url, sqlite_file


def _callbacks(settings: Settings) -> None:
    """Say where job wrappers will report (never to a URL taken from a request: opus.listen)."""
    url = settings.CALLBACK_URL or settings.BASE_URL
    if url:
        print(f"ok       callbacks: jobs report to {url.rstrip('/')}/handler/job_event")
        return
    far = " (SLURM compute nodes cannot reach a loopback address)" if settings.MANAGER == "slurm" else ""
    print("WARNING  callbacks: CALLBACK_URL and BASE_URL are unset: jobs report to the address the "
          f"server listens on (`opus serve --host/--port`, gunicorn's bind){far}; under mod_wsgi or on a "
          "unix socket no job can start: set CALLBACK_URL")


def _sandbox(settings: Settings) -> int:
    problem = sandbox.probe(settings)
    if settings.JOB_SANDBOX == "none":
        print("WARNING  JOB_SANDBOX is 'none': job scripts run unsandboxed, with the rights of the process "
              "that starts them")
    elif problem:
        print(f"PROBLEM  job sandbox: {problem}")
        return 1
    else:
        print(f"ok       job sandbox (bubblewrap{', job user ' + settings.JOB_USER if os.geteuid() == 0 else ''})")
    return 0


def _database(settings: Settings) -> int:
    """Can the server use its database: reachable, and at the schema this OPUS needs."""
    url = settings.database_url
    shown = shown_url(url)
    file = sqlite_file(url)
    if file is not None and not file.is_file():  # connecting would create it
        print(f"PROBLEM  database {shown}: no such file: create it with `opus init` and these settings")
        return 1
    try:
        engine = create_engine_for(url)
    except ConfigurationError as exc:
        print(f"PROBLEM  database: {exc}")
        return 1
    try:
        problem = schema_problem(engine)
    except SQLAlchemyError as exc:
        print(f"PROBLEM  database {shown}: cannot connect: {error_line(exc)}")
        return 1
    finally:
        engine.dispose()
    if problem:
        print(f"PROBLEM  database {shown}: {problem}")
        return 1
    print(f"ok       database {shown} (schema current)")
    return 0


def _definitions(settings: Settings) -> int:
    bad = 0
    for h in health.report(JobDefinitionRegistry(settings.JDL_DIR)):
        if h.state == health.OK:
            print(f"ok       {h.name}")
            continue
        bad += 1
        if h.state == health.UNMET:
            print(f"MISSING  {h.name}: " + "; ".join(h.problems) + " (its jobs would fail)")
        elif h.state == health.INVALID:
            print(f"INVALID  {h.name} ({h.file}): " + "; ".join(h.problems))
        else:
            print(f"INVALID  {h.file}: " + "; ".join(h.problems))
    return bad


def run(settings: Settings, args: argparse.Namespace) -> int:
    bad = 0
    _callbacks(settings)
    bad += _sandbox(settings)
    for line in sandbox.check_files(settings):
        bad += 1
        print(f"PROBLEM  {line}")
    problems = datadir.problems(settings)
    for line in problems:
        bad += 1
        print(f"PROBLEM  {line} (as {_me()})")
    if not problems:
        print(f"ok       data directory {settings.DATA_DIR} (writable by {_me()})")
    for line in _ownership(settings):
        bad += 1
        print(f"PROBLEM  {line}")
    bad += _database(settings)
    bad += _definitions(settings)
    return 1 if bad else 0


def _ownership(settings: Settings) -> list[str]:
    """What `opus init` should have given SERVICE_USER and did not (e.g. made by root since)."""
    if not settings.SERVICE_USER:
        return []
    try:
        owner = pwd.getpwnam(settings.SERVICE_USER)
    except KeyError:
        return [f"SERVICE_USER {settings.SERVICE_USER!r} is not a user of this host"]
    return [f"{path} belongs to uid {path.stat().st_uid}, not to SERVICE_USER {owner.pw_name!r}: the server "
            f"may not be able to write it (`opus init` as root gives it to {owner.pw_name!r})"
            for path in init.owned_paths(settings) if path.stat().st_uid != owner.pw_uid]


def _me() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"
