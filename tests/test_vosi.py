"""VOSI availability and capabilities (CHECKLIST §9.2, UWS-88).

Availability is validated against ``VOSIAvailability-v1.0.xsd``.  The capabilities schema imports
VOResource from the network, so capabilities are checked structurally here and parsed strictly by
pyvo's offline VOSI parser.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import requests
from lxml import etree
from pyvo.io.vosi import parse_availability, parse_capabilities

import uwsschema as U

VOSI_AVAIL = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"
VOSI_CAPS = "http://www.ivoa.net/xml/VOSICapabilities/v1.0"
VS_NS = "http://www.ivoa.net/xml/VODataService/v1.1"
UWS_STD = "ivo://ivoa.net/std/UWS#rest-1.1"
XSI_TYPE = f"{{{U.XSI_NS}}}type"
FILES_IN_JDL_DIR = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "jdl").glob("*.json"))


def anonymous_get(url: str) -> requests.Response:
    """A GET with no session, no cookies, no credentials."""
    r = requests.get(url)   # a fresh connection: no session, cookies or credentials
    assert r.status_code == 200, (url, r.status_code, r.text)
    assert r.headers["Content-Type"].split(";")[0].strip() in ("text/xml", "application/xml")
    return r


def strict(parse, source):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return parse(source, pedantic=True)


def xsi_type(el) -> tuple[str | None, str]:
    """The xsi:type of ``el`` as (namespace URI, local name), its prefix resolved in scope."""
    value = el.get(XSI_TYPE)
    assert value is not None, etree.tostring(el)
    prefix, _, local = value.rpartition(":")
    return el.nsmap.get(prefix or None), local


# ---- availability ------------------------------------------------------------------------------------------
def test_availability_is_valid_and_available(live):
    r = anonymous_get(f"{live.url}/availability")
    root = U.validate(r.content, U.VOSI_AVAILABILITY_XSD)
    assert root.tag == f"{{{VOSI_AVAIL}}}availability"
    assert root.find(f"{{{VOSI_AVAIL}}}available").text == "true"
    assert root.find(f"{{{VOSI_AVAIL}}}upSince").text.endswith("Z")
    assert root.findall(f"{{{VOSI_AVAIL}}}note")


def test_availability_parses_with_pyvo(live):
    avail = strict(parse_availability, f"{live.url}/availability")
    assert avail.available is True
    assert avail.upsince is not None


def test_availability_says_false_when_the_database_is_down(live, monkeypatch):
    def broken():
        raise ConnectionError("database gone")

    monkeypatch.setattr(live.services.store, "ping", broken)
    r = anonymous_get(f"{live.url}/availability")
    root = U.validate(r.content, U.VOSI_AVAILABILITY_XSD)
    assert root.find(f"{{{VOSI_AVAIL}}}available").text == "false"
    notes = " ".join(n.text for n in root.findall(f"{{{VOSI_AVAIL}}}note"))
    assert "database" in notes
    assert strict(parse_availability, f"{live.url}/availability").available is False


def test_the_availability_validator_rejects_a_wrong_document():
    bad = (f'<vosi:availability xmlns:vosi="{VOSI_AVAIL}"><vosi:note>x</vosi:note>'
           "<vosi:available>yes</vosi:available></vosi:availability>")
    assert U.errors(bad.encode(), U.VOSI_AVAILABILITY_XSD)


# ---- capabilities ------------------------------------------------------------------------------------------
def capabilities(live):
    r = anonymous_get(f"{live.url}/capabilities")
    root = U.parse(r.content)
    assert root.tag == f"{{{VOSI_CAPS}}}capabilities"
    return root


def test_capabilities_structure(live):
    root = capabilities(live)
    caps = list(root)
    assert caps, "no capability"
    for cap in caps:
        assert cap.tag == "capability"                 # unqualified children (VOSI schema)
        assert cap.get("standardID")
        interfaces = cap.findall("interface")
        assert len(interfaces) == 1
        assert xsi_type(interfaces[0]) == (VS_NS, "ParamHTTP")
        (access,) = interfaces[0].findall("accessURL")
        assert access.text.startswith(live.url + "/")

    by_std = {}
    for cap in caps:
        by_std.setdefault(cap.get("standardID"), []).append(cap.find("interface/accessURL"))
    (caps_url,) = by_std["ivo://ivoa.net/std/VOSI#capabilities"]
    assert caps_url.text == f"{live.url}/capabilities" and caps_url.get("use") == "full"
    (avail_url,) = by_std["ivo://ivoa.net/std/VOSI#availability"]
    assert avail_url.text == f"{live.url}/availability" and avail_url.get("use") == "full"


def test_capabilities_list_a_uws_endpoint_per_job_definition(live):
    root = capabilities(live)
    uws_caps = [c for c in root if c.get("standardID") == UWS_STD]
    urls = sorted(c.find("interface/accessURL").text for c in uws_caps)
    assert FILES_IN_JDL_DIR == ["copy", "dummy", "fail", "gammapy_maps", "sleep", "types"]
    assert urls == [f"{live.url}/rest/{name}" for name in FILES_IN_JDL_DIR]
    assert sorted(live.services.registry.names()) == FILES_IN_JDL_DIR
    for cap in uws_caps:
        interface = cap.find("interface")
        assert interface.get("role") == "std"
        assert interface.get("version") == "1.1"
        access = interface.find("accessURL")
        assert access.get("use") == "base"
        # each accessURL is a working UWS job list (UWS-13)
        jobs = U.validate(requests.get(access.text).content)
        assert jobs.tag == U.uws("jobs") and jobs.get("version") == "1.1"


def test_capabilities_parse_with_pyvo(live):
    caps = strict(parse_capabilities, f"{live.url}/capabilities")
    std_ids = [c.standardid for c in caps]
    assert "ivo://ivoa.net/std/VOSI#capabilities" in std_ids
    assert "ivo://ivoa.net/std/VOSI#availability" in std_ids
    uws = [c for c in caps if c.standardid == UWS_STD]
    assert sorted(c.interfaces[0].accessurls[0].content for c in uws) == [
        f"{live.url}/rest/{name}" for name in FILES_IN_JDL_DIR]
    for c in uws:
        assert c.interfaces[0].role == "std"
        assert c.interfaces[0].accessurls[0].use == "base"


def test_capabilities_follow_the_host_the_client_used(live):
    port = live.url.rsplit(":", 1)[1]
    r = requests.get(f"{live.url}/capabilities", headers={"Host": f"localhost:{port}"})
    root = U.parse(r.content)
    urls = [a.text for a in root.iter("accessURL")]
    assert urls and all(u.startswith(f"http://localhost:{port}/") for u in urls), urls


# ---- HTTP methods ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/availability", "/capabilities"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_vosi_resources_are_get_only(live, path, method):
    r = requests.request(method, f"{live.url}{path}", data={"x": "1"})
    assert r.status_code == 405, (method, path, r.status_code)
    assert "GET" in r.headers.get("Allow", "")


@pytest.mark.parametrize("path", ["/availability", "/capabilities"])
def test_vosi_head_answers(live, path):
    r = requests.head(f"{live.url}{path}")
    assert r.status_code == 200
