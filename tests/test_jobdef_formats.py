"""Job definitions as JSON, VOTable (ProvDM ActivityDescription) and WADL: lossless, valid and safe."""

from __future__ import annotations

import io
import json
import random
import warnings
from pathlib import Path

import astropy
import pytest
from astropy.io.votable import parse as parse_votable
from lxml import etree

from opus.errors import ConfigurationError
from opus.jobdef import formats
from opus.jobdef.formats import (
    CONTENT_TYPES,
    FORMATS,
    MAX_SIZE,
    convert,
    detect_format,
    read_definition,
    write_definition,
)
from opus.jobdef.model import GeneratedDescription, JobDefinition, ParameterDescription, UsedDescription
from opus.jobdef.votable import NS as VO
from opus.jobdef.wadl import OPUS, WADL
ROOT = Path(__file__).resolve().parents[1]
SLIDE = Path(__file__).parent / "data" / "gammapy_maps_slide.vot"
VOTABLE_XSD = Path(astropy.__file__).parent / "io" / "votable" / "data" / "VOTable.v1.3.xsd"
OBSCORE = {"dataproduct_type": "image", "calib_level": "3", "obs_collection": "OPUS tests", "custom_key": "x y"}


def everything() -> JobDefinition:
    """Every field of every dataclass set to something other than its default."""
    return JobDefinition(
        name="every_thing-1",
        script="#!/bin/bash\nset -e\necho \"double\" 'single' < in.txt && cat >> out.txt\n\tprintf 'é ü 日本 ✓'\r\n]]>\n",
        description="Every field <set> & \"quoted\"\n  second line: é 日本  ",
        version="3.2b", type="test", subtype="everything", doculink="https://example.org/doc?a=1&b=2",
        contact_name="Zoë O'Neil", contact_email="zoe@example.org", execution_duration=0, quote=42,
        parameters={
            "count": ParameterDescription(
                "count", type="int", default="3 4", required=True, description="How many <n> & more",
                options=["3", "4", "5"], min=1, max=10.5, unit="s", ucd="meta.number", utype="opus:Job.count",
                multiplicity="2..*"),
            "label": ParameterDescription("label", default="café", options=["café", "thé", ""], description="é"),
            "ratio": ParameterDescription("ratio", type="float", default="0.5", min=0.25, max=1e16),
            "coords": ParameterDescription("coords", type="double", default="1.5 -2e3", multiplicity="3",
                                           unit="deg", ucd="pos.eq.ra;meta.main"),
            "big": ParameterDescription("big", type="long", default="9000000000", min=-(2 ** 40)),
            "flag": ParameterDescription("flag", type="boolean", default="true", required=True),
            "link": ParameterDescription("link", type="anyURI", default="https://example.org/?q=1&r=<2>"),
            "when": ParameterDescription("when", type="dateTime", default="2030-01-01T00:00:00Z"),
            "blob": ParameterDescription("blob", type="file", required=True, multiplicity="0..1"),
        },
        used={
            "ids": UsedDescription("ids", description="Identifiers <resolved> & fetched", role="DL3",
                                   content_type="application/fits", multiplicity="2..*", default="47802 47803",
                                   required=False, url="https://example.org/data/$ID.fits?x=1&y=2"),
            "upload": UsedDescription("upload", description="Any file"),
        },
        generated={
            "map": GeneratedDescription(
                "map", file="count_map.fits", content_type="application/fits", description="The <map> & co",
                role="DL4 image", required=True, obscore=dict(OBSCORE), derived_from=["ids", "upload"]),
            "previews": GeneratedDescription("previews", file="*.png", content_type="image/png", required=False),
            "log": GeneratedDescription("log", file="log.txt", content_type="text/plain", role="log"),
        },
        slurm={"mem": "2G", "partition": "debug"}, network=True,
    )


def edge() -> JobDefinition:
    """Empty-string values that differ from None or from a non-empty default; names that collide as IDs."""
    return JobDefinition(
        name="edge", script="x", version="", execution_duration=None, quote=None,
        parameters={"edge": ParameterDescription("edge", default=""),
                    "param_edge": ParameterDescription("param_edge", type="int"),
                    "bare": ParameterDescription("bare", type="boolean"),
                    "empties": ParameterDescription("empties", type="int", default="", multiplicity="*")},
        used={"u": UsedDescription("u", default="")},
        generated={"g": GeneratedDescription("g", file="g.txt", content_type="")},
    )


def jdl(name: str) -> JobDefinition:
    return JobDefinition.from_dict(json.loads((ROOT / "jdl" / f"{name}.json").read_text()))


JDL = sorted(p.stem for p in (ROOT / "jdl").glob("*.json"))
DEFINITIONS = {**{f"jdl:{n}": (lambda n=n: jdl(n)) for n in JDL}, "everything": everything, "edge": edge,
               "slide": lambda: read_definition(SLIDE.read_bytes())}
CONTROL = [ParameterDescription("RUNID", description="Your label"),
           ParameterDescription("EXECUTIONDURATION", "int", min=0, max=3600, unit="s"),
           ParameterDescription("PHASE", options=["RUN"]),
           ParameterDescription("slurm_mem", description="Memory, e.g. 4G")]


@pytest.fixture(params=sorted(DEFINITIONS))
def definition(request) -> JobDefinition:
    return DEFINITIONS[request.param]()


def astropy_votable(data: bytes):
    """Parse as astropy does, every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return parse_votable(io.BytesIO(data), verify="exception")


# ---- round trips --------------------------------------------------------------------------------
def test_fixtures_are_valid_definitions():
    for make in (everything, edge):
        d = make()
        assert JobDefinition.from_dict(json.loads(write_definition(d, "json"))) == d


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(definition, fmt):
    data = write_definition(definition, fmt)
    assert read_definition(data, fmt) == definition
    assert read_definition(data) == definition  # format detected from the bytes
    assert detect_format(data) == fmt


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_with_access_url_and_control(definition, fmt):
    data = write_definition(definition, fmt, access_url=f"https://example.org/rest/{definition.name}",
                            control=CONTROL)
    assert read_definition(data, fmt) == definition


@pytest.mark.parametrize("src", FORMATS)
@pytest.mark.parametrize("dst", FORMATS)
def test_convert_every_pair(definition, src, dst):
    original = write_definition(definition, src)
    converted = convert(original, dst, src)
    assert read_definition(converted, dst) == definition
    assert convert(converted, src) == original  # and back, byte for byte


def test_bounds_keep_int_or_float():
    d = everything()
    for fmt in ("json", "wadl"):
        back = read_definition(write_definition(d, fmt))
        for name, p in d.parameters.items():
            for attr in ("min", "max"):
                assert type(getattr(back.parameters[name], attr)) is type(getattr(p, attr))


# ---- VOTable ------------------------------------------------------------------------------------
def test_votable_is_valid_for_astropy(definition):
    data = write_definition(definition, "votable", access_url="https://example.org/rest/x", control=CONTROL)
    vot = astropy_votable(data)
    (resource,) = vot.resources
    assert resource.utype == "voprov:ActivityDescription" and resource.type == "meta"
    assert resource.ID == definition.name
    params = {p.name: p for p in resource.params}
    assert params["accessURL"].value == "https://example.org/rest/x"
    assert params["standardID"].value == "ivo://ivoa.net/std/UWS#async-1.1"
    assert params["script"].value == definition.script
    assert params["annotation"].utype == "voprov:ActivityDescription.annotation"
    assert params["contact_name"].utype == "voprov:Agent.name"
    groups = {g.name: g for g in resource.groups}
    assert set(groups) >= {"InputParams", "Used", "Generated", "ControlParams"}
    inputs = [e.name for e in groups["InputParams"].entries if not hasattr(e, "entries")]
    assert inputs == [*definition.parameters, *definition.used]
    used = groups["Used"].entries
    assert [(g.name, g.utype) for g in used] == [(u, "voprov:UsedDescription") for u in definition.used]
    generated = groups["Generated"].entries
    assert groups["Generated"].utype == "voprov:WasGeneratedBy"
    assert [(g.name, g.utype) for g in generated] == [(n, "voprov:EntityDescription") for n in definition.generated]
    assert [e.name for e in groups["ControlParams"].entries] == [p.name for p in CONTROL]
    if definition.slurm:
        assert {e.name: e.value for e in groups["slurm"].entries} == definition.slurm


def test_votable_is_schema_valid(definition):
    schema = etree.XMLSchema(etree.parse(str(VOTABLE_XSD)))
    for control in ((), CONTROL):
        doc = etree.fromstring(write_definition(definition, "votable", control=control))
        assert schema.validate(doc), schema.error_log


def test_votable_layout():
    root = etree.fromstring(write_definition(everything(), "votable"))
    ns = {"v": VO}
    count = root.find(".//v:GROUP[@name='InputParams']/v:PARAM[@name='count']", ns)
    assert count.get("datatype") == "int" and count.get("arraysize") == "*" and count.get("type") is None
    assert [o.get("value") for o in count.findall("v:VALUES/v:OPTION", ns)] == ["3", "4", "5"]
    assert count.find("v:VALUES/v:MIN", ns).get("value") == "1"
    extra = root.find(".//v:GROUP[@name='InputParams']/v:GROUP[@ref='count']", ns)
    assert extra.find("v:PARAM[@name='multiplicity']", ns).get("value") == "2..*"
    label = root.find(".//v:PARAM[@name='label']", ns)
    assert label.get("datatype") == "unicodeChar" and label.get("type") == "no_query"
    assert root.find(".//v:PARAM[@name='when']", ns).get("xtype") == "timestamp"
    assert root.find(".//v:PARAM[@name='blob']", ns).get("xtype") == "application/octet-stream"
    assert root.find(".//v:PARAM[@name='coords']", ns).get("arraysize") == "3*"
    ids = root.find(".//v:GROUP[@name='Used']/v:GROUP[@name='ids']", ns)
    assert ids.get("ref") == "ids" and root.find(".//v:GROUP[@name='InputParams']/v:PARAM[@ID='ids']", ns) is not None
    assert ids.find("v:PARAM[@name='url']", ns).get("value") == "https://example.org/data/$ID.fits?x=1&y=2"
    result = root.find(".//v:GROUP[@name='Generated']/v:GROUP[@name='map']", ns)
    assert result.find("v:PARAM[@name='default']", ns).get("utype") == "voprov:Entity.id"
    dpt = result.find("v:GROUP[@name='obscore']/v:PARAM[@name='dataproduct_type']", ns)
    assert dpt.get("utype") == "obscore:ObsDataset.dataProductType" and dpt.get("value") == "image"


# ---- WADL ---------------------------------------------------------------------------------------
def test_wadl_layout():
    data = write_definition(everything(), "wadl", access_url="https://example.org/rest/every_thing-1",
                            control=CONTROL)
    root = etree.fromstring(data)
    ns = {"w": WADL, "opus": OPUS}
    resources = root.find("w:resources", ns)
    assert resources.get("base") == "https://example.org/rest/"
    joblist = resources.find("w:resource", ns)
    assert joblist.get("path") == "every_thing-1"
    form = joblist.find("w:method[@name='POST']/w:request/w:representation", ns)
    assert form.get("mediaType") == "multipart/form-data"
    params = {p.get("name"): p for p in form.findall("w:param", ns)}
    assert list(params) == [*everything().parameters, *everything().used, *(p.name for p in CONTROL)]
    count = params["count"]
    assert (count.get("type"), count.get("required"), count.get("default"), count.get("repeating")) == (
        "xs:int", "true", "3 4", "true")
    assert [o.get("value") for o in count.findall("w:option", ns)] == ["3", "4", "5"]
    assert count.find("w:doc", ns).text == "How many <n> & more"
    assert count.get(f"{{{OPUS}}}multiplicity") == "2..*" and count.get(f"{{{OPUS}}}max") == "10.5"
    assert params["when"].get("type") == "xs:dateTime" and params["ratio"].get("repeating") is None
    assert params["ids"].get(f"{{{OPUS}}}used") == "true" and params["ids"].get("type") == "xs:anyURI"
    assert params["upload"].get("type") == "opus:file" and params["RUNID"].get(f"{{{OPUS}}}control") == "true"
    assert joblist.find("opus:definition/opus:script", ns).text == everything().script
    assert joblist.find("w:resource[@path='{job-id}']/w:resource[@path='phase']", ns) is not None


def test_wadl_base_without_access_url():
    root = etree.fromstring(write_definition(jdl("dummy"), "wadl"))
    resources = root.find(f"{{{WADL}}}resources")
    assert resources.get("base") == "/rest/" and resources[0].get("path") == "dummy"


# ---- JSON ---------------------------------------------------------------------------------------
def test_json_extras():
    data = json.loads(write_definition(jdl("dummy"), "json", access_url="https://h/rest/dummy", control=CONTROL))
    assert data["accessURL"] == "https://h/rest/dummy"
    assert [p["name"] for p in data["controlParameters"]] == [p.name for p in CONTROL]
    assert data["controlParameters"][1] == {"name": "EXECUTIONDURATION", "type": "int", "required": False,
                                            "min": 0, "max": 3600, "unit": "s", "multiplicity": "1"}


def test_json_keeps_empty_defaults():
    data = json.loads(write_definition(edge(), "json"))
    assert data["parameters"]["edge"]["default"] == "" and "default" not in data["parameters"]["param_edge"]
    assert data["used"]["u"]["default"] == "" and data["generated"]["g"]["content_type"] == ""


# ---- the slide ----------------------------------------------------------------------------------
def test_slide_imports():
    d = read_definition(SLIDE.read_bytes(), content_type="application/x-votable+xml")
    assert d.name == "gammapy_maps"
    assert d.description == "Use gammapy to generate a count map from a list of observations"
    assert (d.execution_duration, d.quote, d.contact_name, d.contact_email) == (600, 120, "Julien Lefaucheur", "")
    assert (d.type, d.subtype, d.version) == ("None", "None", "None")  # as written on the slide
    assert list(d.parameters) == ["RA", "Dec", "nxpix", "nypix", "binsz"]
    ra = d.parameters["RA"]
    assert (ra.type, ra.default, ra.unit, ra.required) == ("double", "329.7169379", "deg", True)
    assert d.parameters["Dec"].default == "-30.2255883"
    nxpix = d.parameters["nxpix"]
    assert (nxpix.type, nxpix.default, nxpix.min, nxpix.max) == ("int", "400", 0, 1000)
    assert nxpix.multiplicity == "*"  # arraysize="*" on an int PARAM: an array
    assert (d.parameters["binsz"].type, d.parameters["binsz"].default) == ("float", "0.02")
    # obs_ids is both an InputParam and a Used entity: it becomes the input, keeping the PARAM's details
    assert list(d.used) == ["obs_ids"]
    obs = d.used["obs_ids"]
    assert (obs.description, obs.default, obs.role, obs.content_type, obs.url, obs.required) == (
        "List of runs", "47802 47803 47804", "DL3", "application/fits", "", True)
    assert {n: (g.file, g.content_type, g.description) for n, g in d.generated.items()} == {
        "count_map": ("count_map.fits", "application/fits", "Count map"),
        "count_preview": ("count_map.png", "image/png", "Count map preview")}
    assert d.generated["count_map"].role == "DL4 image"
    assert d.script.startswith("gammapy_maps.py --obs_ids")


def test_slide_is_valid_for_astropy():
    resource = astropy_votable(SLIDE.read_bytes()).resources[0]
    assert resource.utype == "voprov:ActivityDescription"


@pytest.mark.parametrize("fmt", FORMATS)
def test_slide_exports_and_back(fmt):
    d = read_definition(SLIDE.read_bytes())
    assert read_definition(write_definition(d, fmt, access_url="https://voparis-uws-test.obspm.fr/rest/gammapy_maps"),
                           fmt) == d


# ---- format detection ---------------------------------------------------------------------------
@pytest.mark.parametrize("content_type, filename, data, expected", [
    ("application/json; charset=utf-8", "", b"", "json"),
    ("application/x-votable+xml", "", b"", "votable"),
    ("text/xml;content=x-votable", "", b"", "votable"),
    ("application/vnd.sun.wadl+xml", "", b"", "wadl"),
    ("", "def.JSON", b"", "json"),
    ("", "def.vot", b"", "votable"),
    ("application/octet-stream", "def.wadl", b"", "wadl"),
    ("application/x-www-form-urlencoded", "", b'\xef\xbb\xbf  {"name": "x"}', "json"),
    ("text/xml", "a.xml", b'<?xml version="1.0"?>\n<!-- <application> -->\n<v:VOTABLE xmlns:v="x"/>', "votable"),
    ("", "", b"<?xml version='1.0'?><!DOCTYPE application><application/>", "wadl"),
    ("", "", '<?xml version="1.0" encoding="UTF-16"?><VOTABLE/>'.encode("utf-16"), "votable"),
])
def test_detect_format(content_type, filename, data, expected):
    assert detect_format(data, content_type, filename) == expected


@pytest.mark.parametrize("data", [b"", b"hello", b"<html><body/></html>", b"\xff\xfe\x00"])
def test_detect_format_unknown(data):
    with pytest.raises(ConfigurationError, match="cannot tell the format"):
        detect_format(data, "text/plain", "x.txt")


def test_content_types():
    assert set(CONTENT_TYPES) == set(FORMATS)
    for fmt, ctype in CONTENT_TYPES.items():
        assert detect_format(b"", ctype) == fmt


# ---- errors and safety --------------------------------------------------------------------------
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE VOTABLE [<!ENTITY x SYSTEM "file:///etc/hostname">]>
<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE name="x" utype="voprov:ActivityDescription">
<PARAM name="script" datatype="char" arraysize="*" value="&x;"/><DESCRIPTION>&x;</DESCRIPTION></RESOURCE></VOTABLE>"""
LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE application [\n <!ENTITY lol "lol">\n'
          + b"".join(b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                     for i in range(1, 10))
          + b']>\n<application xmlns="http://wadl.dev.java.net/2009/02"><doc>&lol9;</doc></application>')


@pytest.mark.parametrize("prescan", [True, False], ids=["byte-scan", "parsed-DTD-check"])
@pytest.mark.parametrize("data", [XXE, LAUGHS, XXE.decode().encode("utf-16")], ids=["xxe", "laughs", "xxe16"])
def test_entities_refused(data, prescan, monkeypatch):
    if not prescan:  # the check on the parsed DTD must hold on its own
        monkeypatch.setattr(formats, "_ENTITY_DECLARATIONS", ())
    hostname = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else "\0"
    for fmt in ("votable", "wadl", None):  # refused, not expanded (an expansion would never end)
        with pytest.raises(ConfigurationError, match="entit") as info:
            read_definition(data, fmt)
        assert hostname not in str(info.value)


def test_undeclared_entity_refused():
    data = write_definition(jdl("dummy"), "votable").replace(b'value="test"', b'value="&ext;"')
    with pytest.raises(ConfigurationError, match="VOTable"):
        read_definition(data)


def test_size_cap():
    data = write_definition(jdl("dummy"), "json")
    padded = data[:-2] + b" " * (MAX_SIZE - len(data) + 1) + data[-2:]
    with pytest.raises(ConfigurationError, match="limit"):
        read_definition(padded)


VOT_HEAD = b'<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE name="j" utype="voprov:ActivityDescription">'
VOT_TAIL = b'<PARAM name="script" datatype="char" arraysize="*" value="x"/></RESOURCE></VOTABLE>'


@pytest.mark.parametrize("data, fmt, message", [
    (b"", None, "empty"),
    (b'{"name": "x", ', "json", "not valid JSON"),
    (b'\xff\xfe{"name": 1}', "json", "not UTF-8"),
    (b"[" * 100000, "json", "JSON"),
    (b'["x"]', "json", "JSON object"),
    (b'{"name": "x", "script": "y", "parameters": ["a"]}', "json", "malformed"),
    (b'{"name": "x", "script": "y", "parameters": {"p": {"type": "complex"}}}', "json", "type"),
    (b"<VOTABLE><RESOURCE", "votable", "not well-formed"),
    (b'<?xml version="1.0" encoding="ISO-8859-1"?><VOTABLE>\xe9\xff</VOTABLE>', "votable", "RESOURCE"),
    (b'<?xml version="1.0" encoding="utf-8"?><VOTABLE>\xe9\xff</VOTABLE>', "votable", "well-formed"),
    (b'<?xml version="1.0" encoding="nonsense"?><VOTABLE/>', "votable", "VOTable"),
    (b"<TABLE/>", "votable", "root element is <TABLE>"),
    (b'<VOTABLE xmlns="http://example.org/"/>', "votable", "not <VOTABLE>"),
    (b"<application/>", "wadl", "not <application>"),
    (b'<application xmlns="http://wadl.dev.java.net/2009/02"/>', "wadl", "opus:definition"),
    (b"<VOTABLE/>", "votable", "no RESOURCE"),
    (VOT_HEAD + b'<PARAM datatype="char" value="x"/>' + VOT_TAIL, "votable", "without a name"),
    (VOT_HEAD + b'<PARAM name="executionDuration" datatype="int" value="ten"/>' + VOT_TAIL, "votable",
     "'executionDuration'.*not an integer"),
    (VOT_HEAD + b'<PARAM name="colour" datatype="char" value="red"/>' + VOT_TAIL, "votable", "unknown PARAM 'colour'"),
    (VOT_HEAD + b'<GROUP name="Extras"/>' + VOT_TAIL, "votable", "unknown GROUP 'Extras'"),
    (VOT_HEAD + b'<GROUP name="InputParams"><PARAM name="p" datatype="floatComplex" value="1"/></GROUP>'
     + VOT_TAIL, "votable", "PARAM 'p': datatype 'floatComplex'"),
    (VOT_HEAD + b'<GROUP name="InputParams"><PARAM name="p" value="1"/></GROUP>' + VOT_TAIL, "votable",
     "PARAM 'p': datatype None"),
    (VOT_HEAD + b'<GROUP name="InputParams"><PARAM name="p" datatype="int" value="x"/></GROUP>' + VOT_TAIL,
     "votable", "'p'.*not an integer"),
    (VOT_HEAD + b'<GROUP name="InputParams"><PARAM name="p" datatype="int" value="1"><VALUES><MIN value="low"/>'
     b"</VALUES></PARAM></GROUP>" + VOT_TAIL, "votable", "PARAM 'p': MIN: 'low' is not a number"),
    (VOT_HEAD + b'<GROUP name="InputParams"><PARAM name="p" datatype="int" arraysize="2x3" value="1"/></GROUP>'
     + VOT_TAIL, "votable", "arraysize '2x3'"),
    (VOT_HEAD + b'<GROUP name="Used"><GROUP name="u" ref="nope"/></GROUP>' + VOT_TAIL, "votable",
     "Used GROUP 'u': ref 'nope'"),
    (VOT_HEAD + b'<GROUP name="Used"><GROUP name="u"><PARAM name="required" datatype="boolean" value="maybe"/>'
     b"</GROUP></GROUP>" + VOT_TAIL, "votable", "'u'.*not a boolean"),
    (VOT_HEAD + b'<GROUP name="Generated"><GROUP name="r"><PARAM name="size" datatype="int" value="1"/>'
     b"</GROUP></GROUP>" + VOT_TAIL, "votable", "Generated GROUP 'r': unknown PARAM 'size'"),
    (VOT_HEAD.replace(b'name="j"', b'name="bad name!"') + VOT_TAIL, "votable", "name"),
])
def test_bad_input(data, fmt, message):
    with pytest.raises(ConfigurationError, match=message):
        read_definition(data, fmt)


@pytest.mark.parametrize("attr, value, message", [
    ("type", "xs:duration", "param 'count': type 'xs:duration'"),
    ("required", "perhaps", "param 'count': required"),
    (f"{{{OPUS}}}min", "one", "param 'count': opus:min"),
    (f"{{{OPUS}}}multiplicity", "lots", "multiplicity"),
])
def test_bad_wadl(attr, value, message):
    root = etree.fromstring(write_definition(everything(), "wadl"))
    param = root.find(f".//{{{WADL}}}param[@name='count']")
    param.set(attr, value)
    with pytest.raises(ConfigurationError, match=message):
        read_definition(etree.tostring(root), "wadl")


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzz(fmt):
    """Truncated, bit-flipped and pruned documents give a definition or ConfigurationError, nothing else."""
    rng = random.Random(20240611)
    data = write_definition(everything(), fmt, control=CONTROL)
    for _ in range(150):
        mutated = bytearray(data)
        action = rng.randrange(4)
        if action == 0:
            mutated = mutated[:rng.randrange(len(mutated))]
        elif action == 1:
            for _ in range(rng.randint(1, 5)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        elif action == 2:
            start = rng.randrange(len(mutated))
            del mutated[start:start + rng.randint(1, 200)]
        else:
            start = rng.randrange(len(mutated))
            mutated[start:start] = rng.choice([b"<", b"&", b'"', b"]]>", b"\x00", b"\xc3", b"&lt;", b"{}"])
        try:
            read_definition(bytes(mutated), fmt)
        except ConfigurationError:
            pass
    if fmt != "json":  # structural mutations: drop an element or an attribute
        for _ in range(150):
            root = etree.fromstring(data)
            nodes = [n for n in root.iter() if isinstance(n.tag, str)]
            node = rng.choice(nodes[1:])
            if node.attrib and rng.random() < 0.6:
                del node.attrib[rng.choice(list(node.attrib))]
            else:
                node.getparent().remove(node)
            try:
                read_definition(etree.tostring(root), fmt)
            except ConfigurationError:
                pass


@pytest.mark.parametrize("fmt", ["votable", "wadl"])
def test_control_characters_cannot_be_xml(fmt):
    d = jdl("dummy")
    d.script = "printf '\x1b[1m bold'\n"
    with pytest.raises(ConfigurationError, match="script: character U\\+001B"):
        write_definition(d, fmt)
    assert read_definition(write_definition(d, "json")) == d  # JSON carries it


def test_unknown_format():
    with pytest.raises(ConfigurationError, match="unknown job definition format"):
        write_definition(jdl("dummy"), "yaml")
    with pytest.raises(ConfigurationError, match="unknown job definition format"):
        convert(b"{}", "xml")


@pytest.mark.parametrize("multiplicity", ["1", "0..1", "1..1", "*", "3", "2..5", "1..*", "0"])
def test_every_type_and_multiplicity(multiplicity):
    types = ("string", "int", "long", "float", "double", "boolean", "anyURI", "dateTime", "file")
    d = JobDefinition(name="m", script="true", parameters={
        f"p_{t}": ParameterDescription(f"p_{t}", type=t, multiplicity=multiplicity, required=i % 2 == 0)
        for i, t in enumerate(types)},
        used={"u": UsedDescription("u", multiplicity=multiplicity)})
    for fmt in FORMATS:
        assert read_definition(write_definition(d, fmt)) == d
    astropy_votable(write_definition(d, "votable"))
