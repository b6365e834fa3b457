"""The ``opus`` command: serve, init, maintenance, check, user, jdl, migrate."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sqlalchemy.exc import SQLAlchemyError

from opus import __version__, listen
from opus.auth.admin import UNCHANGED, UserAdmin
from opus.cli import check as check_cli
from opus.cli import init as init_cli
from opus.cli import jdl as jdl_cli
from opus.errors import ConfigurationError, OpusError
from opus.jobdef import JobDefinitionRegistry
from opus.observability import logcontext
from opus.settings import Settings, load_settings
from opus.storage import create_engine_for, upgrade_schema
from opus.storage.database import error_line, require_current_schema, shown_url
from opus.storage.userstore import UserStore


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


#: The ids of the request this thread last served (the development server serves one request per
#: thread): its access line is written after the application's context has ended.
_served = threading.local()


def _noting_ids(app: Callable[..., Any]) -> Callable[..., Any]:
    """``app``, keeping the ids it put in each request's environ for that request's access line."""
    def noted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            return app(environ, start_response)
        finally:
            _served.ids = (environ.get("opus.request_id", "-"), environ.get("opus.job_id", "-"))
    return noted


class _QuietHandler(WSGIRequestHandler):
    """The development server's access lines, through logging, ending with the request's ids as
    every other line does."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        request_id, job_id = getattr(_served, "ids", ("-", "-"))
        _served.ids = ("-", "-")
        request = logcontext.REQUEST_ID.set(request_id)
        job = logcontext.JOB_ID.set(job_id)
        try:
            logging.getLogger("opus.access").info("%s %s", self.address_string(), format % args)
        finally:
            logcontext.JOB_ID.reset(job)
            logcontext.REQUEST_ID.reset(request)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from opus.server import create_app  # here: the other commands (and --version) need no web application

    upgrade_schema(create_engine_for(settings.database_url))
    # No app yet: it is made once the port is bound (set_app below), before anything is served.
    httpd = make_server(args.host, args.port, None,  # type: ignore[call-overload]
                        server_class=_ThreadingServer, handler_class=_QuietHandler)
    # Bound first, so that the app knows the address it listens on (port 0 resolved): the URL jobs
    # call back without CALLBACK_URL/BASE_URL, and the Host names allowed by default.
    settings = listen.with_listen_address(settings, args.host, httpd.server_port)
    httpd.set_app(_noting_ids(create_app(settings)))
    print(f"OPUS serving on http://{args.host}:{httpd.server_port}/ (database {shown_url(settings.database_url)}; "
          "development server: use gunicorn in production, see README)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _user(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine_for(settings.database_url)
    require_current_schema(engine, settings.database_url)  # not SQL's words: 'no such table: users'
    admin = UserAdmin(UserStore(engine, settings), JobDefinitionRegistry(settings.JDL_DIR).known)
    try:
        if args.action == "add":
            user, token = admin.add(args.name, args.admin, args.jobdefs, args.max_jobs, editor=args.editor,
                                    groups=args.groups)
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
                                max_active_jobs=UNCHANGED if args.max_jobs is None else args.max_jobs,
                                editor=None if args.editor is None else args.editor == "yes",
                                groups=UNCHANGED if args.groups is None else args.groups)
            print(json.dumps(user.public()))
        elif args.action == "delete":
            admin.delete(args.name)
            print(f"user {args.name!r} deleted")
    except OpusError as exc:
        print(f"opus user: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _maintenance(settings: Settings, args: argparse.Namespace) -> int:
    from opus.service.root import Root

    root = Root.build(settings)
    require_current_schema(root.store.engine, settings.database_url)
    count = root.maintenance.destroy_expired()
    verb = "archived" if settings.DESTRUCTION_POLICY == "archive" else "destroyed"
    print(f"{count} expired job(s) {verb}")
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from opus.migration import migrate  # here: only this command needs it

    print(migrate(settings, args.source, dry_run=args.dry_run).text(), end="")
    return 0


def _version() -> str:
    try:
        return metadata.version("opus-uws")
    except metadata.PackageNotFoundError:  # run from a checkout that pip did not install
        return __version__


def _add_user_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="manage users and their tokens (in the database of these settings)")
    actions = user.add_subparsers(dest="action", required=True, metavar="ACTION", help="what to do")
    add = actions.add_parser("add", help="create a user and print its token (once)")
    add.add_argument("name", help="the new user's name")
    add.add_argument("--admin", action="store_true", help="give the admin role")
    add.add_argument("--editor", action="store_true", help="give the editor role (may propose job definitions)")
    add.add_argument("--jobdefs", default="*", help="job definitions allowed, comma-separated ('*': all)")
    add.add_argument("--max-jobs", type=int, default=None, help="limit of unfinished jobs (default: "
                     "DEFAULT_MAX_ACTIVE_JOBS)")
    add.add_argument("--groups", default=None, help="the groups the user belongs to, comma-separated "
                     "(jobs may be shared with a group)")
    actions.add_parser("list", help="list users (JSON lines)")
    for name, text in (("disable", "stop a user signing in"), ("enable", "let a disabled user sign in again"),
                       ("token", "replace a user's token and print the new one"), ("delete", "delete a user")):
        actions.add_parser(name, help=text).add_argument("name", help="the user's name")
    for name, text in (("grant", "allow job definitions"), ("revoke", "disallow job definitions")):
        p = actions.add_parser(name, help=text)
        p.add_argument("name", help="the user's name")
        p.add_argument("jobdefs_list", nargs="+", metavar="jobdef",
                       help="job definition names ('*': all)" + (" (each must exist)" if name == "grant" else ""))
    setp = actions.add_parser("set", help="change a user's limit, roles or groups")
    setp.add_argument("name", help="the user's name")
    setp.add_argument("--max-jobs", type=int, default=None, help="the new limit of unfinished jobs")
    setp.add_argument("--admin", choices=("yes", "no"), default=None, help="give (yes) or take away (no) "
                      "the admin role")
    setp.add_argument("--editor", choices=("yes", "no"), default=None, help="give (yes) or take away (no) "
                      "the editor role (proposing job definitions)")
    setp.add_argument("--groups", default=None, help="the user's groups, comma-separated, replacing the "
                      "old ones ('' for none)")


def build_parser() -> argparse.ArgumentParser:
    """The ``opus`` command line: every option and argument has its help text."""
    parser = argparse.ArgumentParser(prog="opus", description="OPUS, a UWS 1.1 job server: serve it and "
                                     "administer it on its host (see README, \"Commands\")")
    parser.add_argument("--version", action="version", version=f"opus {_version()}",
                        help="print the version of OPUS and exit")
    parser.add_argument("--settings", help="settings file (default: $OPUS_SETTINGS, else built-in defaults)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to do")
    serve = sub.add_parser("serve", help="run the development server (threaded; gunicorn for production)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0: any free one)")
    init = sub.add_parser("init", help="create DATA_DIR, create or upgrade the database schema, the job user "
                          "and the first admin")
    init.add_argument("--user", default=None, help="the OS user the server runs as, who will own what init "
                      "creates in DATA_DIR (default: SERVICE_USER; required when run as root)")
    sub.add_parser("maintenance", help="destroy or archive expired jobs (for cron)")
    sub.add_parser("check", help="check the job sandbox, DATA_DIR and every job definition in JDL_DIR "
                   "(exit status 1 if anything is wrong)")
    _add_user_parser(sub)
    jdl_cli.add_parser(sub)
    migrate = sub.add_parser("migrate", help="import an installation of the original OPUS: its definitions, "
                             "users and jobs (see docs/migration.md)")
    migrate.add_argument("--from", dest="source", required=True, metavar="PATH",
                         help="the original's settings file (settings_local.py), the directory holding it, "
                         "or its VAR_PATH")
    migrate.add_argument("--dry-run", action="store_true", help="print what would be imported; write nothing")
    return parser


def _database_error(settings: Settings, exc: SQLAlchemyError) -> str:
    """One line for a database that cannot be used (unreachable, refused, not a database)."""
    return f"opus: cannot use the database {shown_url(settings.database_url)}: {error_line(exc)}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    handlers: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
        "serve": _serve, "init": init_cli.run, "maintenance": _maintenance, "check": check_cli.run,
        "user": _user, "jdl": jdl_cli.run, "migrate": _migrate}
    try:
        return handlers[args.command](settings, args)
    except ConfigurationError as exc:
        print(f"opus: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(_database_error(settings, exc), file=sys.stderr)
        return 2
    except OSError as exc:  # a directory it may not create or write, a port in use, ...
        print(f"opus: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
