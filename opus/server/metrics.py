"""Request ids, job ids on log lines, and the Prometheus metrics at ``GET /metrics``.

``install(app, services)`` wraps the application's WSGI entry with ``RequestObserver``, which for
every request
- takes ``X-Request-ID`` when it is a sane token (1 to 64 of [A-Za-z0-9._-]) or makes one, returns
  it in the ``X-Request-ID`` response header and puts it on every log line written meanwhile;
- counts the request by method and status and its duration (``opus.observability.metrics``);
and adds the ``/metrics`` route.  ``JobContextPlugin`` names the job of routes with a ``job_id``.

``/metrics`` is for admins unless ``METRICS_PUBLIC`` (then restrict it at the front end).  It is
the text exposition format 0.0.4; counters are totals over the server's processes on this host.
"""

from __future__ import annotations

import logging
import time

from bottle import Bottle, HTTPResponse

from opus import __version__

from opus.observability import metrics
from opus.errors import Forbidden, Unauthorized
from opus.observability.logcontext import JOB_ID, REQUEST_ID, new_request_id, sane, set_job_id
from opus.storage.stats import jobs_by_phase
from opus.uws import Phase
from opus.server.web import identity
log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))
CALLBACK_OUTCOMES = ("applied", "already", "ignored", "refused", "invalid")


class RequestObserver:
    """WSGI middleware: request id in and out, request counted and timed."""

    def __init__(self, wsgi, process_metrics: metrics.ProcessMetrics):
        self.wsgi = wsgi
        self.metrics = process_metrics

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        request_id = sane(environ.get("HTTP_X_REQUEST_ID")) or new_request_id()
        environ["opus.request_id"] = request_id
        request_token = REQUEST_ID.set(request_id)
        job_token = JOB_ID.set("-")
        status = "500"

        def start(status_line, headers, exc_info=None):
            nonlocal status
            status = status_line[:3]
            headers.append(("X-Request-ID", request_id))
            return start_response(status_line, headers, exc_info)

        try:
            return self.wsgi(environ, start)
        finally:
            method = environ.get("REQUEST_METHOD", "")
            self.metrics.observe_request(method if method in METHODS else "other", status,
                                         time.perf_counter() - started)
            JOB_ID.reset(job_token)
            REQUEST_ID.reset(request_token)


class JobContextPlugin:
    """Puts the ``job_id`` URL argument of a route on the log lines of its requests."""

    name = "opus_job_context"
    api = 2

    def apply(self, callback, route):
        if "<job_id" not in route.rule:
            return callback

        def wrapper(*args, **kwargs):
            set_job_id(kwargs.get("job_id"))
            return callback(*args, **kwargs)

        return wrapper


# ---- the exposition format -------------------------------------------------------------------------------
HELP = {
    "opus_info": ("gauge", "This OPUS server; the value is always 1"),
    "opus_processes": ("gauge", "Server processes of this host whose counters are in the totals"),
    "opus_database_up": ("gauge", "1 when the database answered this scrape, else 0"),
    "opus_jobs": ("gauge", "Jobs in the database, by phase"),
    "opus_http_requests_total": ("counter", "HTTP requests answered, by method and status"),
    "opus_http_request_duration_seconds": ("histogram", "Time to answer an HTTP request (blocking WAITs "
                                           "included; the streaming of result files excluded)"),
    "opus_callbacks_total": ("counter", "Job wrapper reports received at /handler/job_event, by outcome"),
    "opus_slurm_end_hints_total": ("counter", "SLURM epilog hints received at /handler/job_event, by outcome"),
    "opus_manager_errors_total": ("counter", "Jobs an execution manager could not start or submit"),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels) + "}"


def _number(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return repr(value)
    return str(int(value))


def render(services, totals: metrics.Totals) -> str:
    """The metrics page: totals of the processes, and the jobs by phase from the database."""
    samples: dict[str, list[tuple]] = {name: [] for name in HELP}
    samples["opus_info"].append(((("version", __version__),), 1))
    samples["opus_processes"].append(((), totals.processes))
    try:
        phases = jobs_by_phase(services.store.engine)
        samples["opus_database_up"].append(((), 1))
    except Exception as exc:  # a scrape still answers, saying why
        log.warning("metrics: cannot count jobs: %s", exc)
        phases = None
        samples["opus_database_up"].append(((), 0))
    if phases is not None:
        for phase in [p.value for p in Phase] + sorted(set(phases) - {p.value for p in Phase}):
            samples["opus_jobs"].append(((("phase", phase),), phases.get(phase, 0)))
    counters = dict(totals.counters)
    for outcome in CALLBACK_OUTCOMES:
        counters.setdefault(("opus_callbacks_total", (("outcome", outcome),)), 0)
    counters.setdefault(("opus_manager_errors_total", (("manager", services.manager.name),)), 0)
    for (name, labels), value in sorted(counters.items()):
        if name in samples:
            samples[name].append((labels, value))
    lines = []
    for name, (kind, text) in HELP.items():
        lines += [f"# HELP {name} {text}.", f"# TYPE {name} {kind}"]
        if kind == "histogram":
            running = 0
            for bound, n in zip([*metrics.BUCKETS, None], totals.buckets):
                running += n
                le = "+Inf" if bound is None else repr(float(bound))
                lines.append(f'{name}_bucket{{le="{le}"}} {running}')
            lines += [f"{name}_sum {_number(totals.duration_sum)}", f"{name}_count {running}"]
        for labels, value in samples.get(name, []):
            lines.append(f"{name}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


def install(app: Bottle, services) -> None:
    """Wrap ``app``'s WSGI entry with ``RequestObserver`` and add ``GET /metrics``."""
    settings = services.settings
    process_metrics = metrics.for_settings(settings)
    app.wsgi = RequestObserver(app.wsgi, process_metrics)  # Bottle.__call__ calls self.wsgi

    @app.get("/metrics", opus_public=settings.METRICS_PUBLIC)
    def prometheus_metrics():
        if not settings.METRICS_PUBLIC:
            who = identity()
            if who.anonymous:
                raise Unauthorized("the metrics need an admin's credentials")
            if not who.is_admin:
                raise Forbidden("the metrics are for admins only")
        body = render(services, metrics.collect(process_metrics))
        return HTTPResponse(body=body, headers={"Content-Type": CONTENT_TYPE})
