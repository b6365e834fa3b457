"""create_app(settings): the bottle application, its plugins, its routes and error handling."""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable
from typing import Any

import bottle
from bottle import Bottle, HTTPResponse, Route, request
from sqlalchemy.exc import SQLAlchemyError

from opus.auth.authenticate import Authenticator
from opus.observability import logcontext
from opus.server import (admin_routes, callback_routes, compat_routes, cors, errors, jdl_routes, limits, metrics,
                         openapi, pages, progress_routes, prov_routes, routing, share_routes, store_routes, urls,
                         uws_routes, vosi, web_routes)
from opus.server import account_routes
from opus.server import oidc_routes
from opus.server.routing import RouteTable, services
from opus.server.web import (HTML_MEDIA, JSON_MEDIA, TEXT_MEDIA, as_json, base_url, preferred, text,
                             vary_on_accept)
from opus.service.root import Root
from opus.settings import Settings
from opus.storage.database import error_line, require_current_schema

log = logging.getLogger(__name__)
# Bodies of forms up to this size are parsed in memory; larger ones (uploads) spool to disk.
bottle.BaseRequest.MEMFILE_MAX = 1024 * 1024
routes = RouteTable()


class IdentityPlugin:
    """Resolves the caller once per request into ``environ['opus.identity']`` (401 on bad
    credentials, rendered by the route's kind: the sign-in form on pages).  Routes declared with
    ``opus_public=True`` (VOSI, the wrapper callback, the OpenAPI document) are served to anyone
    and resolve no identity."""

    name = "opus_identity"
    api = 2

    def __init__(self, auth: Authenticator):
        self.auth = auth

    def apply(self, callback: Callable[..., Any], route: Route) -> Callable[..., Any]:
        if route.config.get("opus_public"):
            return callback

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            request.environ["opus.identity"] = self.auth.identify(request.environ)
            return callback(*args, **kwargs)

        return wrapper


@routes.get("/")
def index() -> HTTPResponse:
    """What this server offers: plain text by default (curl), JSON, or an HTML page for a browser."""
    base = base_url(services().settings)
    names = services().registry.names()
    kind = preferred(TEXT_MEDIA, JSON_MEDIA, HTML_MEDIA)
    if kind == 1:
        return as_json({"jobDefinitions": [{"name": n, "href": urls.job_list(base, n)} for n in names]})
    if kind == 2:
        return HTTPResponse(_index_html(base, names).encode("utf-8"), headers=pages.PAGE_HEADERS)
    lines = ["OPUS: an IVOA UWS 1.1 job server", "", "Job lists:"]
    lines += [f"  {urls.job_list(base, n)}" for n in names]
    lines += ["", f"VOSI: {base}/capabilities  {base}/availability", f"Job definitions: {urls.jdl_list(base)}",
              f"Provenance: {base}/provsap?ID=<job or entity id>  Result store: {base}/store?ID=<entity id>",
              f"API description: {base}/openapi.json"]
    lines += [f"Web client: {urls.web(base)}"]
    return text("\n".join(lines) + "\n")


def _index_html(base: str, names: list[str]) -> str:
    """The index for a browser: the web client first, then the same links as the text."""
    def link(url: str, label: str | None = None) -> str:
        return f'<a href="{html.escape(url)}">{html.escape(label or url)}</a>'

    lists = "".join(f"<li>{link(urls.job_list(base, n), n)}</li>" for n in names)
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><title>OPUS</title></head>'
            "<body><h1>OPUS: an IVOA UWS 1.1 job server</h1>"
            f"<p>{link(urls.web(base), 'Open the web client')}</p>"
            f"<h2>Job lists (UWS)</h2><ul>{lists}</ul><h2>More</h2><ul>"
            f"<li>VOSI: {link(base + '/capabilities')}, {link(base + '/availability')}</li>"
            f"<li>Job definitions: {link(urls.jdl_list(base))}</li>"
            f"<li>API description: {link(base + '/openapi.json')}</li></ul></body></html>\n")


def configure_logging(settings: Settings) -> None:
    """Every record gets request_id and job_id; under gunicorn/mod_wsgi (no handler yet) records go
    to stderr, their error log."""
    logcontext.install_record_factory()
    if not logging.getLogger().handlers:
        logging.basicConfig(format=logcontext.LOG_FORMAT)
        for handler in logging.getLogger().handlers:
            handler.addFilter(logcontext.ContextFilter())
    logging.getLogger("opus").setLevel(settings.LOG_LEVEL)


def _install_routes(app: Bottle, root: Root) -> None:
    """Every route, in this order (bottle tries dynamic routes in the order they were added)."""
    routes.install(app)
    for table in (uws_routes.routes, jdl_routes.routes, store_routes.routes, prov_routes.routes,
                  progress_routes.routes, share_routes.routes):
        table.install(app)
    vosi.install(app)
    # Last: the original OPUS's URLs (deprecated aliases) never shadow a current route.
    for table in (callback_routes.routes, admin_routes.routes, account_routes.routes, oidc_routes.routes,
                  web_routes.routes, openapi.routes,
                  compat_routes.routes):
        table.install(app)
    metrics.install(app, root)


def _require_current_schema(root: Root) -> None:
    """A serving process does not start on a database whose schema is not its own: every request
    would fail (SQLite's 'no such table' even read as an outage, 503 'retry in a few seconds'), and
    /availability would still say the database answers.  Under gunicorn the worker fails to boot
    with this message; under mod_wsgi each request logs it.  A database that cannot be reached now
    is not refused: requests say so (503) until it is back."""
    try:
        require_current_schema(root.store.engine, root.settings.database_url)
    except SQLAlchemyError as exc:
        log.warning("the database schema could not be checked at start-up (%s); requests will answer 503 "
                    "until the database can be reached", error_line(exc))


def create_app(settings: Settings, services: Root | None = None, start: bool = True) -> Bottle:
    """The WSGI application for ``settings``.

    Background work (notifications, the manager, maintenance) starts in the serving process:
    at once when ``start`` is true, and again in any forked worker on its first request.
    """
    configure_logging(settings)
    root = services or Root.build(settings)
    app = Bottle(catchall=True)
    app.config["json.enable"] = False
    app.config[routing.SERVICES_KEY] = root
    app.install(metrics.JobContextPlugin())  # first: outermost, so the job id is on every line
    app.install(errors.ErrorPlugin())
    # Before identity: a body over its route's ceiling costs no credential check and is not read.
    app.install(limits.BodyLimitPlugin(settings))
    app.install(IdentityPlugin(root.auth))
    # Before cors: after_request hooks run last-added first, so this one adds Accept to its Vary.
    app.add_hook("after_request", vary_on_accept)
    cors.install(app, settings)
    if start:
        _require_current_schema(root)
        root.start()

        def _start_in_worker() -> None:
            if root._started_pid != os.getpid():
                root.start()

        app.add_hook("before_request", _start_in_worker)

    _install_routes(app, root)
    for code in errors.BOTTLE_STATUSES:
        app.error(code)(errors.bottle_error)
    return app
