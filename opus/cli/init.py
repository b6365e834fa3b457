"""``opus init``: the data directory, the schema, the secret, the job user and the first admin.

What it creates in DATA_DIR, and the settings file it makes readable by its owner only, belong to
the user the server runs as (``--user`` or SERVICE_USER),
so that a server started as that user can write its jobs: ``opus init`` run as root (as it must be
to create the job user) would otherwise leave DATA_DIR/jobs owned by root, and every job would
fail with "Permission denied".  As root with no such user named, it refuses and says how.
"""

from __future__ import annotations

import argparse
import os
import pwd
import subprocess
import sys
from pathlib import Path

from opus.auth.admin import UserAdmin
from opus.auth.identity import server_secret
from opus.managers import sandbox
from opus.settings import Settings
from opus.storage import create_engine_for, upgrade_schema
from opus.storage.database import schema_revisions, shown_url
from opus.storage.userstore import UserStore


class InitRefused(Exception):
    """``opus init`` cannot go on: its message says why and what to do (one line)."""


def service_user(settings: Settings, given: str | None) -> pwd.struct_passwd | None:
    """The account to own what ``opus init`` creates; None: this process's own (no chown needed)."""
    name = given or settings.SERVICE_USER
    if name is None:
        if os.geteuid() == 0:
            raise InitRefused("opus init is running as root: name the user the server runs as, who will own "
                              "DATA_DIR (`opus init --user NAME`, or SERVICE_USER in the settings; "
                              "`--user root` if the server itself runs as root)")
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise InitRefused(f"opus init: there is no user {name!r} on this host: create it first "
                          f"(for example `useradd --system --home-dir /nonexistent {name}`)") from None
    if entry.pw_uid == os.geteuid():
        return None
    if os.geteuid() != 0:
        raise InitRefused(f"opus init: only root can create files for {name!r}: run it as root, or as {name!r}")
    return entry


def owned_paths(settings: Settings) -> list[Path]:
    """What ``opus init`` makes, that the server must be able to write (those that exist), and the
    settings file, which ``opus init`` makes readable by its owner only: the server must read it."""
    data = Path(settings.DATA_DIR)
    candidates = [data, settings.jobs_dir, settings.run_dir, data / "secret.key"]
    if settings.DATABASE_URL is None:
        candidates += [data / "opus.sqlite", data / "opus.sqlite-wal", data / "opus.sqlite-shm"]
    if settings.settings_file:
        candidates.append(Path(settings.settings_file))
    return [p for p in candidates if p.exists()]


def give_to(settings: Settings, owner: pwd.struct_passwd) -> list[str]:
    """chown what ``opus init`` made to ``owner``; the paths changed (not recursive: job
    directories are the server's own)."""
    changed = []
    for path in owned_paths(settings):
        st = path.lstat()
        if (st.st_uid, st.st_gid) != (owner.pw_uid, owner.pw_gid):
            os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
            changed.append(str(path))
    return changed


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        owner = service_user(settings, getattr(args, "user", None))
    except InitRefused as exc:
        print(exc, file=sys.stderr)
        return 2
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine_for(settings.database_url)
    before = schema_revisions(engine)
    upgrade_schema(engine)
    done = ("created, " if not before else "" if schema_revisions(engine) == before
            else f"upgraded from revision {', '.join(sorted(before))}, ")
    print(f"database schema {done}up to date ({shown_url(settings.database_url)})")
    server_secret(settings)
    for path in sandbox.restrict_files(settings):
        print(f"made {path} readable by its owner only")
    try:
        print(sandbox.ensure_job_user(settings))
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"WARNING: {exc}", file=sys.stderr)
    problem = sandbox.probe(settings)
    if problem:
        print(f"WARNING: jobs will not start until the job sandbox works: {problem} (see SECURITY.md)",
              file=sys.stderr)
    first = UserAdmin(UserStore(engine, settings)).ensure_admin()
    if first is not None:
        user, token = first
        print(f"created the first admin user {user.name!r}; its token, shown only now:\n  {token}\n"
              f"(sign in with HTTP Basic {user.name}:<token> or 'Authorization: Bearer <token>'; "
              f"`opus user token {user.name}` makes a new one)")
    engine.dispose()  # SQLite's -wal and -shm files closed before they change hands
    if owner is not None:
        changed = give_to(settings, owner)
        print(f"DATA_DIR and the settings file belong to {owner.pw_name!r}, the user the server runs as"
              + (f" (changed: {', '.join(changed)})" if changed else ""))
    return 0
