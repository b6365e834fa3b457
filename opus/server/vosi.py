"""VOSI availability and capabilities (CHECKLIST §9.2), readable anonymously, and the handler
endpoint through which job wrappers report."""

from __future__ import annotations

import logging
from email.utils import formatdate
from xml.sax.saxutils import escape as xml_escape

from bottle import Bottle, HTTPResponse

from opus import safejson

from opus.observability import metrics
from opus.errors import BadRequest, Forbidden, NotFound, OpusError
from opus.listen import NO_CALLBACK_URL, callback_base
from opus.observability.logcontext import set_job_id
from opus.auth.identity import check_job_token
from opus.timeutil import format_instant, utcnow
from opus.server.render import HEAD
from opus.server.web import as_json, base_url, read_body
log = logging.getLogger(__name__)
VOSI_AVAIL = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"
VOSI_CAPS = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
XML = {"Content-Type": "text/xml; charset=UTF-8"}


def install(app: Bottle, services) -> None:
    settings = services.settings
    up_since = utcnow()

    @app.get("/availability", opus_public=True)
    def availability():
        notes = []
        ok = True
        try:
            services.store.ping()
            notes.append("the database answers")
        except Exception as exc:  # reported, not raised: availability must say why
            ok = False
            notes.append(f"the database does not answer: {type(exc).__name__}")
        if services.manager.is_alive():
            notes.append(f"the {services.manager.name} execution manager is ready")
        else:
            ok = False
            why = services.manager.problem()
            notes.append(f"the {services.manager.name} execution manager is not available"
                         + (f": {why}" if why else ""))
        if callback_base(settings) is None:  # jobs would be refused (opus.listen)
            ok = False
            notes.append(NO_CALLBACK_URL)
        body = (HEAD + f'<vosi:availability xmlns:vosi="{VOSI_AVAIL}">'
                f"<vosi:available>{'true' if ok else 'false'}</vosi:available>"
                f"<vosi:upSince>{format_instant(up_since)}</vosi:upSince>"
                + "".join(f"<vosi:note>{xml_escape(n)}</vosi:note>" for n in notes) + "</vosi:availability>")
        return HTTPResponse(body=body, headers=XML)

    @app.get("/capabilities", opus_public=True)
    def capabilities():
        base = base_url(settings)

        def cap(standard: str, url: str, extra: str = "", use: str = "full") -> str:
            return (f'<capability standardID="{standard}"><interface xsi:type="vs:ParamHTTP"{extra}>'
                    f'<accessURL use="{use}">{url}</accessURL></interface></capability>')

        parts = [HEAD, f'<vosi:capabilities xmlns:vosi="{VOSI_CAPS}" '
                       'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                       'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">',
                 cap("ivo://ivoa.net/std/VOSI#capabilities", f"{base}/capabilities"),
                 cap("ivo://ivoa.net/std/VOSI#availability", f"{base}/availability")]
        for name in services.registry.names():
            parts.append(cap("ivo://ivoa.net/std/UWS#rest-1.1", f"{base}/rest/{name}",
                             ' role="std" version="1.1"', use="base"))
        parts.append("</vosi:capabilities>")
        changed = max([up_since.timestamp()] + [services.registry.directory.joinpath(f"{n}.json").stat().st_mtime
                                                for n in services.registry.names()])
        return HTTPResponse(body="".join(parts), headers={**XML, "Last-Modified": formatdate(changed, usegmt=True)})

    @app.post("/handler/job_event", opus_public=True)
    def job_event():
        """A job wrapper's report: JSON {job_id, token, phase, message?, results?, start_time?, end_time?}."""
        body = read_body(settings.MAX_REPORT_SIZE)  # public: bounded before the token is checked
        try:
            report = safejson.loads(body or b"{}")  # 400 when nested deeper than MAX_JSON_DEPTH
        except ValueError:
            raise BadRequest("the report must be a JSON object") from None
        if not isinstance(report, dict):
            raise BadRequest("the report must be a JSON object")
        job_id = str(report.get("job_id") or "")
        if job_id:
            set_job_id(job_id)  # on the log lines of this request
        if report.get("event") == "slurm_end":
            # From scripts/opus-slurm-epilog, which holds no secret: a hint that the server checks
            # against its own sources before changing anything.
            hint = getattr(services.manager, "end_hint", None)
            if hint is None:
                raise BadRequest("this server does not run jobs on SLURM")
            if services.store.get_phase(job_id) is None:
                raise NotFound(f"no job {job_id!r}")
            outcome = hint(job_id, str(report.get("slurm_job_id", "")), str(report.get("exit_code", "")))
            metrics.count(settings, "opus_slurm_end_hints_total", outcome=outcome)
            return as_json({"job_id": job_id, "event": "slurm_end", "outcome": outcome})
        if not job_id or not check_job_token(settings, job_id, report.get("token")):
            metrics.count(settings, "opus_callbacks_total", outcome="refused")
            raise Forbidden("invalid job token")
        try:
            outcome = services.joblist.apply_report(job_id, report)
        except OpusError:
            metrics.count(settings, "opus_callbacks_total", outcome="invalid")
            raise
        metrics.count(settings, "opus_callbacks_total", outcome=outcome)
        log.info("job %s: report %s %s", job_id, report.get("phase"), outcome)
        return as_json({"job_id": job_id, "phase": report.get("phase"), "outcome": outcome})
