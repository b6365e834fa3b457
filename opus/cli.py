"""The ``opus`` command: serve, init, maintenance, check."""

from __future__ import annotations

import argparse
import logging
import sys

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

    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    upgrade_schema(create_engine_for(settings.database_url))
    print(f"database schema is up to date ({settings.database_url})")
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
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.settings)
    except ConfigurationError as exc:
        print(f"opus: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = {"serve": _serve, "init": _init, "maintenance": _maintenance, "check": _check}[args.command]
    try:
        return handler(settings, args)
    except ConfigurationError as exc:
        print(f"opus: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
