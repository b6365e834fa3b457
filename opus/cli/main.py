"""The ``opus`` command: serve, init, maintenance, check, user, jdl."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from opus import listen
from opus.auth.admin import UNCHANGED, UserAdmin
from opus.auth.identity import server_secret
from opus.cli import jdl as jdl_cli
from opus.errors import ConfigurationError, OpusError
from opus.jobdef import JobDefinitionRegistry
from opus.managers import sandbox
from opus.observability import logcontext
from opus.server import create_app
from opus.service.root import Root
from opus.settings import Settings, load_settings
from opus.storage import create_engine_for, upgrade_schema
from opus.storage.userstore import UserStore


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        logging.getLogger("opus.access").info("%s %s", self.address_string(), format % args)

def _serve(settings: Settings, args: argparse.Namespace) -> int:
    upgrade_schema(create_engine_for(settings.database_url))
    # No app yet: it is made once the port is bound (set_app below), before anything is served.
    httpd = make_server(args.host, args.port, None,  # type: ignore[call-overload]
                        server_class=_ThreadingServer, handler_class=_QuietHandler)
    # Bound first, so that the app knows the address it listens on (port 0 resolved): the URL jobs
    # call back without CALLBACK_URL/BASE_URL, and the Host names allowed by default.
    settings = listen.with_listen_address(settings, args.host, httpd.server_port)
    httpd.set_app(create_app(settings))
    print(f"OPUS serving on http://{args.host}:{httpd.server_port}/ (database {settings.database_url}; "
          "development server: use gunicorn in production, see README)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _init(settings: Settings, args: argparse.Namespace) -> int:
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine_for(settings.database_url)
    upgrade_schema(engine)
    print(f"database schema is up to date ({settings.database_url})")
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
    return 0


def _user(settings: Settings, args: argparse.Namespace) -> int:
    admin = UserAdmin(UserStore(create_engine_for(settings.database_url), settings))
    try:
        if args.action == "add":
            user, token = admin.add(args.name, args.admin, args.jobdefs, args.max_jobs)
            print(f"user {user.name!r} created; its token, shown only now:\n  {token}")
        elif args.action == "list":
            for u in admin.list():
                print(json.dumps(u.public()))
        elif args.action in ("disable", "enable"):
            admin.update(args.name, enabled=args.action == "enable")
            print(f"user {args.name!r} {args.action}d")
        elif args.action == "token":
            print(f"new token for {args.name!r} (the old one no longer works), shown only now:\n  "
                  f"{admin.new_token(args.name)}")
        elif args.action in ("grant", "revoke"):
            user = admin.update(args.name, **{args.action: args.jobdefs_list})
            print(f"user {args.name!r} may use: {' '.join(sorted(user.jobdefs)) or '(nothing)'}")
        elif args.action == "set":
            user = admin.update(args.name, admin=None if args.admin is None else args.admin == "yes",
                                max_active_jobs=UNCHANGED if args.max_jobs is None else args.max_jobs)
            print(json.dumps(user.public()))
        elif args.action == "delete":
            admin.delete(args.name)
            print(f"user {args.name!r} deleted")
    except OpusError as exc:
        print(f"opus user: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _maintenance(settings: Settings, args: argparse.Namespace) -> int:
    count = Root.build(settings).maintenance.destroy_expired()
    verb = "archived" if settings.DESTRUCTION_POLICY == "archive" else "destroyed"
    print(f"{count} expired job(s) {verb}")
    return 0


def _check_callbacks(settings: Settings) -> None:
    """Say where job wrappers will report (never to a URL taken from a request: opus.listen)."""
    url = settings.CALLBACK_URL or settings.BASE_URL
    if url:
        print(f"ok       callbacks: jobs report to {url.rstrip('/')}/handler/job_event")
        return
    far = " (SLURM compute nodes cannot reach a loopback address)" if settings.MANAGER == "slurm" else ""
    print("WARNING  callbacks: CALLBACK_URL and BASE_URL are unset: jobs report to the address the "
          f"server listens on (`opus serve --host/--port`, gunicorn's bind){far}; under mod_wsgi or on a "
          "unix socket no job can start: set CALLBACK_URL")


def _check(settings: Settings, args: argparse.Namespace) -> int:
    registry = JobDefinitionRegistry(settings.JDL_DIR)
    bad = 0
    _check_callbacks(settings)
    problem = sandbox.probe(settings)
    if settings.JOB_SANDBOX == "none":
        print("WARNING  JOB_SANDBOX is 'none': job scripts run unsandboxed, with the rights of the process "
              "that starts them")
    elif problem:
        bad += 1
        print(f"PROBLEM  job sandbox: {problem}")
    else:
        print(f"ok       job sandbox (bubblewrap{', job user ' + settings.JOB_USER if os.geteuid() == 0 else ''})")
    for line in sandbox.check_files(settings):
        bad += 1
        print(f"PROBLEM  {line}")
    for name in registry.names():
        try:
            registry.get(name)
            print(f"ok       {name}")
        except ConfigurationError as exc:
            bad += 1
            print(f"INVALID  {name}: {exc}")
    for path in registry.misnamed_files():
        bad += 1
        print(f"INVALID  {path}: not offered: a definition name is a letter, then letters, digits, '_' or '-' "
              "(at most 64)")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opus", description="OPUS UWS job server")
    parser.add_argument("--settings", help="settings file (default: $OPUS_SETTINGS, else built-in defaults)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the development server (threaded; gunicorn for production)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    sub.add_parser("init", help="create or upgrade the database schema")
    sub.add_parser("maintenance", help="destroy or archive expired jobs (for cron)")
    sub.add_parser("check", help="validate every job definition in JDL_DIR")
    user = sub.add_parser("user", help="manage users and their tokens")
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create a user and print its token (once)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="give the admin role")
    add.add_argument("--jobdefs", default="*", help="job definitions allowed, comma-separated ('*': all)")
    add.add_argument("--max-jobs", type=int, default=None, help="limit of unfinished jobs")
    actions.add_parser("list", help="list users (JSON lines)")
    for name, text in (("disable", "stop a user signing in"), ("enable", "let a disabled user sign in again"),
                       ("token", "replace a user's token and print the new one"), ("delete", "delete a user")):
        actions.add_parser(name, help=text).add_argument("name")
    for name, text in (("grant", "allow job definitions"), ("revoke", "disallow job definitions")):
        p = actions.add_parser(name, help=text)
        p.add_argument("name")
        p.add_argument("jobdefs_list", nargs="+", metavar="jobdef")
    jdl_cli.add_parser(sub)
    setp = actions.add_parser("set", help="change a user's limit or role")
    setp.add_argument("name")
    setp.add_argument("--max-jobs", type=int, default=None)
    setp.add_argument("--admin", choices=("yes", "no"), default=None)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.settings)
    except ConfigurationError as exc:
        print(f"opus: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":  # a server's lines carry the request id and the job id
        logcontext.install_record_factory()
        logging.basicConfig(level=settings.LOG_LEVEL, format=logcontext.LOG_FORMAT)
    else:
        logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Callable[[Settings, argparse.Namespace], int] = {"serve": _serve, "init": _init, "maintenance": _maintenance, "check": _check,
               "user": _user, "jdl": jdl_cli.run}[args.command]
    try:
        return handler(settings, args)
    except ConfigurationError as exc:
        print(f"opus: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
