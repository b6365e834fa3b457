"""create_app(settings): the bottle application, its plugins and error handling."""

from __future__ import annotations

import logging
import os

import bottle
from bottle import Bottle, HTTPError, HTTPResponse, request

from opus.observability import logcontext
from opus.errors import ConfigurationError, OpusError, Unauthorized
from opus.auth.authenticate import CHALLENGE
from opus.service.root import Services
from opus.server import cors
from opus.settings import Settings
from opus.server import admin_routes, jdl_routes, metrics, openapi, prov_routes, store_routes, uws_routes, vosi
from opus.server import limits, web_routes
from opus.server.web import as_json, base_url, text, wants_json
log = logging.getLogger(__name__)
# Bodies of forms up to this size are parsed in memory; larger ones (uploads) spool to disk.
bottle.BaseRequest.MEMFILE_MAX = 1024 * 1024


class IdentityPlugin:
    """Resolves the caller once per request into ``environ['opus.identity']`` (401 on bad
    credentials).  Routes declared with ``opus_public=True`` (VOSI, the wrapper callback, the
    OpenAPI document) are served to anyone and resolve no identity.  Routes with an
    ``opus_unauthorized`` handler (the web pages) answer a 401 with it (the sign-in form)."""

    name = "opus_identity"
    api = 2

    def __init__(self, auth):
        self.auth = auth

    def apply(self, callback, route):
        if route.config.get("opus_public"):
            return callback

        def wrapper(*args, **kwargs):
            try:
                request.environ["opus.identity"] = self.auth.identify(request.environ)
            except Unauthorized as exc:
                if route.config.get("opus_unauthorized") is None:
                    raise
                return route.config["opus_unauthorized"](exc)
            return callback(*args, **kwargs)

        return wrapper


class ErrorPlugin:
    """Turns OpusError into its HTTP status with a plain-text (or JSON) message; logs the rest."""

    name = "opus_errors"
    api = 2

    def apply(self, callback, route):
        def wrapper(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except HTTPResponse:
                raise
            except OpusError as exc:
                response = error_response(exc.status, exc.message)
                for name, value in getattr(exc, "headers", {}).items():  # e.g. 429's Retry-After
                    response.set_header(name, value)
                return response
            except ConfigurationError as exc:
                log.error("configuration error: %s", exc)
                return error_response(500, f"server configuration error: {exc}")

        return wrapper


def error_response(status: int, message: str) -> HTTPResponse:
    response = as_json({"error": message, "status": status}, status) if wants_json() else text(message + "\n", status)
    if status == 401:
        response.set_header("WWW-Authenticate", CHALLENGE)
    return response


def create_app(settings: Settings, services: Services | None = None, start: bool = True) -> Bottle:
    """The WSGI application for ``settings``.

    Background work (notifications, the manager, maintenance) starts in the serving process:
    at once when ``start`` is true, and again in any forked worker on its first request.
    """
    logcontext.install_record_factory()  # every record gets request_id and job_id
    if not logging.getLogger().handlers:  # under gunicorn/mod_wsgi: log to stderr, their error log
        logging.basicConfig(format=logcontext.LOG_FORMAT)
        for handler in logging.getLogger().handlers:
            handler.addFilter(logcontext.ContextFilter())
    logging.getLogger("opus").setLevel(settings.LOG_LEVEL)
    services = services or Services.build(settings)
    app = Bottle(catchall=True)
    app.config["json.enable"] = False
    app.config["opus.service.root"] = services
    app.install(metrics.JobContextPlugin())  # first: outermost, so the job id is on every line
    app.install(ErrorPlugin())
    # Before identity: a body over its route's ceiling costs no credential check and is not read.
    app.install(limits.BodyLimitPlugin(settings))
    app.install(IdentityPlugin(services.auth))
    cors.install(app, settings)

    if start:
        services.start()

        @app.hook("before_request")
        def _start_in_worker():
            if services._started_pid != os.getpid():
                services.start()

    @app.get("/")
    def index():
        base = base_url(settings)
        names = services.registry.names()
        if wants_json():
            return as_json({"jobDefinitions": [{"name": n, "href": f"{base}/rest/{n}"} for n in names]})
        lines = ["OPUS: an IVOA UWS 1.1 job server", "", "Job lists:"]
        lines += [f"  {base}/rest/{n}" for n in names]
        lines += ["", f"VOSI: {base}/capabilities  {base}/availability", f"Job definitions: {base}/jdl",
                  f"Provenance: {base}/provsap?ID=<job or entity id>  Result store: {base}/store?ID=<entity id>",
                  f"API description: {base}/openapi.json"]
        lines += [f"Web client: {base}/web/"]
        return text("\n".join(lines) + "\n")

    uws_routes.install(app, services)
    jdl_routes.install(app, services)
    store_routes.install(app, services)
    prov_routes.install(app, services)
    vosi.install(app, services)
    admin_routes.install(app, services)
    web_routes.install(app, services)
    openapi.install(app, services)
    metrics.install(app, services)

    def _plain_error(err: HTTPError):
        status = err.status_code
        message = {404: "not found", 405: "method not allowed"}.get(status, err.body or err.status_line)
        if status == 500:
            log.error("unhandled error on %s %s: %s", request.method, request.path, err.exception,
                      exc_info=err.exception)
            message = "internal server error"
        if status == 405:
            err.set_header("Allow", err.headers.get("Allow", ""))
        err.content_type = "text/plain; charset=UTF-8"
        return f"{message}\n"

    for code in (400, 404, 405, 413, 500):
        app.error(code)(_plain_error)
    return app
