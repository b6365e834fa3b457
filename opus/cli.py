"""The ``opus`` command: serve, init, maintenance, check, user, jdl."""

from __future__ import annotations

import argparse
import logging
import sys

from . import jdl_cli, logcontext
from .errors import ConfigurationError
from .settings import load_settings


def _serve(settings, args) -> int:
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from .server import create_app
    from .storage import create_engine_for, upgrade_schema

    upgrade_schema(create_engine_for(settings.database_url))
    app = create_app(settings)

    class ThreadingServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, fmt, *a):
            logging.getLogger("opus.access").info("%s %s", self.address_string(), fmt % a)

    httpd = make_server(args.host, args.port, app, server_class=ThreadingServer, handler_class=QuietHandler)
    print(f"OPUS serving on http://{args.host}:{httpd.server_port}/ (database {settings.database_url}; "
          "development server: use gunicorn in production, see README)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _init(settings, args) -> int:
    from .storage import create_engine_for, upgrade_schema
    from .storage.userstore import UserStore
    from .useradmin import UserAdmin

    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine_for(settings.database_url)
    upgrade_schema(engine)
    print(f"database schema is up to date ({settings.database_url})")
    first = UserAdmin(UserStore(engine)).ensure_admin()
    if first is not None:
        user, token = first
        print(f"created the first admin user {user.name!r}; its token, shown only now:\n  {token}\n"
              f"(sign in with HTTP Basic {user.name}:<token> or 'Authorization: Bearer <token>'; "
              f"`opus user token {user.name}` makes a new one)")
    return 0


def _user(settings, args) -> int:
    import json

    from .errors import OpusError
    from .storage import create_engine_for
    from .storage.userstore import UserStore
    from .useradmin import UserAdmin

    admin = UserAdmin(UserStore(create_engine_for(settings.database_url)))
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
            kwargs = {}
            if args.max_jobs is not None:
                kwargs["max_active_jobs"] = args.max_jobs
            if args.admin is not None:
                kwargs["admin"] = args.admin == "yes"
            print(json.dumps(admin.update(args.name, **kwargs).public()))
        elif args.action == "delete":
            admin.delete(args.name)
            print(f"user {args.name!r} deleted")
    except OpusError as exc:
        print(f"opus user: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _maintenance(settings, args) -> int:
    from .services import Services

    services = Services.build(settings)
    count = services.joblist.destroy_expired()
    verb = "archived" if settings.DESTRUCTION_POLICY == "archive" else "destroyed"
    print(f"{count} expired job(s) {verb}")
    return 0


def _check(settings, args) -> int:
    from .jobdef import JobDefinitionRegistry

    registry = JobDefinitionRegistry(settings.JDL_DIR)
    bad = 0
    for name in registry.names():
        try:
            registry.get(name)
            print(f"ok       {name}")
        except ConfigurationError as exc:
            bad += 1
            print(f"INVALID  {name}: {exc}")
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
    handler = {"serve": _serve, "init": _init, "maintenance": _maintenance, "check": _check,
               "user": _user, "jdl": jdl_cli.run}[args.command]
    try:
        return handler(settings, args)
    except ConfigurationError as exc:
        print(f"opus: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
