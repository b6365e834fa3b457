"""Request ids, job ids on log lines, and the Prometheus metrics at ``GET /metrics``.

``install(app, services)`` wraps the application's WSGI entry with ``RequestObserver``, which for
every request
- takes ``X-Request-ID`` when it is a sane token (1 to 64 of [A-Za-z0-9._-]) or makes one, returns
  it in the ``X-Request-ID`` response header and puts it on every log line written meanwhile;
- counts the request by method and status and its duration (``opus.observability.metrics``);
and adds the ``/metrics`` route.  ``JobContextPlugin`` names the job of routes with a ``job_id``.

``/metrics`` is for admins unless ``METRICS_PUBLIC`` (then restrict it at the front end).  It is
the text exposition format 0.0.4, written by prometheus_client; counters are totals over the
server's processes on this host, and the gauges below are read from the database at each scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bottle import Bottle, HTTPResponse, Route, request
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from opus import __version__
from opus.observability import metrics
from opus.observability.logcontext import JOB_ID, REQUEST_ID, new_request_id, sane, set_job_id
from opus.server import routing
from opus.server.web import identity, require_admin
from opus.service.root import Root
from opus.storage.stats import jobs_by_phase
from opus.uws import Phase

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))
# WSGI's own types: the environ and the start_response callable are the boundary (PEP 3333).
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class RequestObserver:
    """WSGI middleware: request id in and out, request counted and timed."""

    def __init__(self, wsgi: WSGIApp, process_metrics: metrics.ServerMetrics):
        self.wsgi = wsgi
        self.metrics = process_metrics

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = sane(environ.get("HTTP_X_REQUEST_ID")) or new_request_id()
        environ["opus.request_id"] = request_id
        request_token = REQUEST_ID.set(request_id)
        job_token = JOB_ID.set("-")
        status = "500"

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status
            status = status_line[:3]
            headers.append(("X-Request-ID", request_id))
            return start_response(status_line, headers, exc_info)

        try:
            return self.wsgi(environ, start)
        finally:
            method = environ.get("REQUEST_METHOD", "")
            try:
                self.metrics.observe_request(method if method in METHODS else "other", status,
                                             time.perf_counter() - started)
            except Exception:  # counting must never break what is counted
                log.exception("metrics: cannot count a request")
            JOB_ID.reset(job_token)
            REQUEST_ID.reset(request_token)


class JobContextPlugin:
    """Puts the ``job_id`` URL argument of a route on the log lines of its requests."""

    name = "opus_job_context"
    api = 2

    def apply(self, callback: Callable[..., Any], route: Route) -> Callable[..., Any]:
        if "<job_id" not in route.rule:
            return callback

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            request.environ["opus.job_id"] = set_job_id(kwargs.get("job_id"))  # for an access log
            return callback(*args, **kwargs)

        return wrapper


# ---- the exposition format -------------------------------------------------------------------------------
class Scrape(Collector):
    """What one scrape shows: this server, its jobs by phase (database), the processes' totals."""

    def __init__(self, services: Root, process_metrics: metrics.ServerMetrics):
        self.services = services
        self.metrics = process_metrics

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("opus_info", "This OPUS server; the value is always 1.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        up = GaugeMetricFamily("opus_database_up", "1 when the database answered this scrape, else 0.")
        jobs = GaugeMetricFamily("opus_jobs", "Jobs in the database, by phase.", labels=["phase"])
        try:
            phases = jobs_by_phase(self.services.store.engine)
        except Exception as exc:  # a scrape still answers, saying why
            log.warning("metrics: cannot count jobs: %s", exc)
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
            known = [p.value for p in Phase]
            for phase in known + sorted(set(phases) - set(known)):
                jobs.add_metric([phase], phases.get(phase, 0))
        yield from (up, jobs)
        yield from self.metrics.collect()


def render(services: Root, process_metrics: metrics.ServerMetrics) -> str:
    """The metrics page: the jobs by phase from the database, and the totals of the processes."""
    return generate_latest(Scrape(services, process_metrics)).decode()


def prometheus_metrics() -> HTTPResponse:
    """``GET /metrics``."""
    services = routing.services()
    if not services.settings.METRICS_PUBLIC:
        require_admin(identity(), "reading the metrics")
    body = render(services, metrics.for_settings(services.settings))
    return HTTPResponse(body=body, headers={"Content-Type": CONTENT_TYPE})


def install(app: Bottle, services: Root) -> None:
    """Wrap ``app``'s WSGI entry with ``RequestObserver`` and add ``GET /metrics``."""
    settings = services.settings
    process_metrics = metrics.for_settings(settings)
    process_metrics.declare("opus_manager_errors_total", manager=services.manager.name)
    app.wsgi = RequestObserver(app.wsgi, process_metrics)  # Bottle.__call__ calls self.wsgi
    app.route("/metrics", "GET", prometheus_metrics, opus_public=settings.METRICS_PUBLIC)
