"""VOSI availability and capabilities (CHECKLIST §9.2), readable anonymously."""

from __future__ import annotations

import logging
from datetime import datetime
from email.utils import formatdate
from xml.sax.saxutils import escape as xml_escape

from bottle import Bottle, HTTPResponse, request

from opus.errors import ConfigurationError, NotFound
from opus.jobdef import limits
from opus.listen import NO_CALLBACK_URL, callback_base
from opus.server import urls
from opus.server.render import HEAD
from opus.server.routing import RouteTable, services
from opus.server.web import base_url
from opus.service.root import Root
from opus.storage.datadir import DataDirCheck
from opus.timeutil import format_instant, utcnow

log = logging.getLogger(__name__)
VOSI_AVAIL = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"
VOSI_CAPS = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
XML = {"Content-Type": "text/xml; charset=UTF-8"}
#: Where install() keeps the instant the application was made (the VOSI upSince).
UP_SINCE_KEY = "opus.up_since"
#: Where the data directory's check (kept a few seconds: monitors poll /availability) is kept.
DATA_DIR_KEY = "opus.data_dir_check"
routes = RouteTable()


def install(app: Bottle) -> None:
    app.config[UP_SINCE_KEY] = utcnow()
    routes.install(app)


def _up_since() -> datetime:
    found: datetime = request.app.config[UP_SINCE_KEY]
    return found


def _notes(root: Root) -> tuple[bool, list[str]]:
    """(available, the notes that say why) of this server."""
    notes = []
    ok = True
    try:
        root.store.ping()
        notes.append("the database answers")
    except Exception as exc:  # reported, not raised: availability must say why
        ok = False
        notes.append(f"the database does not answer: {type(exc).__name__}")
    if root.manager.is_alive():
        notes.append(f"the {root.manager.name} execution manager is ready")
    else:
        ok = False
        why = root.manager.problem()
        notes.append(f"the {root.manager.name} execution manager is not available"
                     + (f": {why}" if why else ""))
    if callback_base(root.settings) is None:  # jobs would be refused (opus.listen)
        ok = False
        notes.append(NO_CALLBACK_URL)
    check = request.app.config.get(DATA_DIR_KEY)
    if not isinstance(check, DataDirCheck) or check.settings is not root.settings:
        check = request.app.config[DATA_DIR_KEY] = DataDirCheck(root.settings)
    problems = check.problems()
    ok = ok and not problems
    notes += problems or ["the data directory can be written and has free space"]
    return ok, notes


@routes.get("/availability", opus_public=True)
def availability() -> HTTPResponse:
    ok, notes = _notes(services())
    body = (HEAD + f'<vosi:availability xmlns:vosi="{VOSI_AVAIL}">'
            f"<vosi:available>{'true' if ok else 'false'}</vosi:available>"
            f"<vosi:upSince>{format_instant(_up_since())}</vosi:upSince>"
            + "".join(f"<vosi:note>{xml_escape(n)}</vosi:note>" for n in notes) + "</vosi:availability>")
    return HTTPResponse(body=body, headers=XML)


def _capability(standard: str, url: str, extra: str = "", use: str = "full", description: str = "") -> str:
    text = f"<description>{xml_escape(description)}</description>" if description else ""
    return (f'<capability standardID="{standard}">{text}<interface xsi:type="vs:ParamHTTP"{extra}>'
            f'<accessURL use="{use}">{xml_escape(url)}</accessURL></interface></capability>')


def _limits_of(root: Root, name: str) -> str:
    """The bounds of a definition's jobs, as a sentence; "" when the definition cannot be read."""
    try:
        return limits.describe(limits.job_limits(root.registry.get(name), root.settings))
    except (NotFound, ConfigurationError):  # broken (InvalidDefinitionFile) or removed meanwhile: no bounds
        return ""


@routes.get("/capabilities", opus_public=True)
def capabilities() -> HTTPResponse:
    root = services()
    base = base_url(root.settings)
    parts = [HEAD, f'<vosi:capabilities xmlns:vosi="{VOSI_CAPS}" '
                   'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                   'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">',
             _capability("ivo://ivoa.net/std/VOSI#capabilities", f"{base}/capabilities"),
             _capability("ivo://ivoa.net/std/VOSI#availability", f"{base}/availability")]
    for name in root.registry.names():
        parts.append(_capability("ivo://ivoa.net/std/UWS#rest-1.1", urls.job_list(base, name),
                                 ' role="std" version="1.1"', use="base", description=_limits_of(root, name)))
    parts.append("</vosi:capabilities>")
    changed = max(_up_since().timestamp(), root.registry.last_changed())
    return HTTPResponse(body="".join(parts), headers={**XML, "Last-Modified": formatdate(changed, usegmt=True)})
