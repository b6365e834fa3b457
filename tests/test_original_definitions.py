"""The original OPUS's definition files (its VOTables, WADL files and JSON files) are imported, each
field mapped to the model or named in a warning (issue 16, point 7).  Test data: tests/data/original/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opus.errors import ConfigurationError
from opus.jobdef.formats import read_definition, write_definition
from opus.jobdef.importing import import_definition
from opus.jobdef.model import JobDefinition
from opus.jobdef.original import is_original_json
from opus.jobdef.original_json import to_original
from conftest import signed_in_sessions

DATA = Path(__file__).parent / "data" / "original"
TYPES = {"xs:string": "string", "xs:long": "long", "xs:double": "double", "xs:boolean": "boolean",
         "xs:anyURI": "anyURI", "xs:int": "int", "file": "file"}
#: Each example and the JSON file the original's own code wrote from it: the reference, field by field.
EXAMPLES = [
    ("votable/test_activity_1_vot.xml", "json/test_activity_1.json"),
    ("votable/test_activity_2_vot.xml", "json/test_activity_2.json"),
    ("json/test_activity_1.json", "json/test_activity_1.json"),
    ("json/test_activity_2.json", "json/test_activity_2.json"),
    ("wadl/ctbin.wadl", "json/ctbin.json"),
    ("wadl/gammastart.wadl", "json/gammastart.json"),
    ("wadl/serpe.wadl", "json/serpe.json"),
    ("json/ctbin.json", "json/ctbin.json"),
    ("json/gammastart.json", "json/gammastart.json"),
    ("json/serpe.json", "json/serpe.json"),
]


def script_of(name: str) -> str | None:
    path = DATA / "scripts" / f"{name}.sh"
    return path.read_text() if path.exists() else None


def imported(path: str):
    name = Path(path).name.split(".")[0].removesuffix("_vot")
    return import_definition((DATA / path).read_bytes(), script=script_of(name))


def text(value) -> str:
    return "" if value is None else str(value)


def check_against(d: JobDefinition, ref: dict) -> None:
    """Every field of the original's content dictionary ``ref`` against the imported definition."""
    assert d.name == ref["name"]
    assert d.description == text(ref.get("annotation"))
    assert d.version == (text(ref.get("version")) or "1")
    for key in ("type", "subtype", "doculink", "contact_name", "contact_email"):
        assert getattr(d, key) == text(ref.get(key)), key
    duration = ref.get("executionDuration") or ref.get("executionduration")
    assert d.execution_duration == int(duration)
    assert d.quote == int(ref["quote"])
    assert d.script == (ref.get("script") or script_of(d.name))
    inputs = set(ref["used"]) | {p for p, v in ref["parameters"].items() if v["datatype"] == "file"}
    assert list(d.parameters) == [p for p in ref.get("parameters_keys", ref["parameters"]) if p not in inputs]
    for name, p in d.parameters.items():
        original = ref["parameters"][name]
        assert p.type == TYPES[original["datatype"]], name
        assert p.required is (str(original["required"]).lower() == "true"), name
        assert p.default == original["default"], name
        assert p.description == text(original.get("annotation")), name
        for key in ("unit", "ucd", "utype"):
            assert getattr(p, key) == text(original.get(key)), (name, key)
        choices = original.get("options") or original.get("choices")
        if choices and p.options:
            assert p.options == choices.replace("|", ",").split(","), name
    assert set(d.used) == inputs
    for name, u in d.used.items():
        original = {**ref["parameters"].get(name, {}), **ref["used"].get(name, {})}
        assert u.default == (original.get("default") or None), name
        assert u.description == text(original.get("annotation")), name
        assert u.content_type == text(original.get("content_type")), name
        assert u.url == ("" if text(original.get("url")).startswith("file://") else text(original.get("url"))), name
        assert u.required is (str(original.get("required", "true")).lower() == "true"), name
    assert list(d.generated) == list(ref.get("generated_keys", ref["generated"]))
    for name, g in d.generated.items():
        original = ref["generated"][name]
        assert g.file == original["default"], name
        assert g.content_type == original["content_type"], name
        assert g.description == text(original.get("annotation")), name
        assert g.role == text(original.get("role")), name


@pytest.mark.parametrize("path,reference", EXAMPLES)
def test_each_original_example_is_imported_field_by_field(path, reference):
    ref = json.loads((DATA / reference).read_text())
    result = imported(path)
    check_against(result.definition, ref)
    # What is imported is a definition like any other: every format writes it and reads it back.
    for fmt in ("json", "votable", "wadl"):
        assert read_definition(write_definition(result.definition, fmt), fmt) == result.definition


def test_what_is_not_kept_is_named_in_a_warning():
    # ctbin's "prefix" has choices="0" (a leftover of the .par import), which its default is not one of.
    for path in ("wadl/ctbin.wadl", "json/ctbin.json"):
        result = imported(path)
        assert result.definition.parameters["prefix"].options == []
        assert result.warnings == ["job definition 'ctbin': parameter 'prefix': its choices ['0'] do not include "
                                   "its default 'cntmap_': not kept as allowed values"]
        assert result.definition.parameters["ebinalg"].options == ["FILE", "LIN", "LOG"]
    # The examples without such a field import without a warning.
    for path in ("votable/test_activity_2_vot.xml", "json/serpe.json", "wadl/gammastart.wadl"):
        assert imported(path).warnings == []


def test_json_fields_without_a_place_are_reported():
    content = json.loads((DATA / "json/test_activity_2.json").read_text())
    content["group"] = "tests"
    content["owner_note"] = "kept by hand"
    content["generated"]["output"]["multiplicity"] = "*"
    content["used"]["input"]["url"] = "https://archive.example.org/data/file.fits"
    content["parameters"]["text"]["min_length"] = "3"
    result = import_definition(json.dumps(content))
    assert sorted(result.warnings) == sorted([
        "job definition 'test_activity_2': field 'owner_note' (\"kept by hand\") is not part of a definition "
        "here: not kept",
        "job definition 'test_activity_2': group 'tests' is not kept: definitions have no groups here",
        "job definition 'test_activity_2': parameter 'text': field 'min_length' (\"3\") has no place here: not kept",
        "job definition 'test_activity_2': input 'input': url 'https://archive.example.org/data/file.fits' holds no "
        "$ID (the original fetched that one URL whatever the value): not kept; give the URL as the input's value "
        "or default",
        "job definition 'test_activity_2': result 'output': multiplicity '*' is not kept: a result of several files "
        "is a glob pattern in 'file' here",
    ])
    assert result.definition.used["input"].url == ""


def test_a_link_in_a_used_group_is_kept():
    """The 2017 layout: an input is a PARAM of GROUP Used with <LINK content-role="location" href>."""
    result = import_definition((DATA / "votable/ctbin_2017_vot.xml").read_bytes(), script="echo ctbin\n")
    d = result.definition
    assert result.warnings == []
    assert d.used["evfile"].url == "https://voparis-cta-test.obspm.fr/data/$ID"
    assert d.used["evfile"].content_type == "application/fits"
    assert d.used["evfile"].default == "events.fits"
    assert d.used["evfile"].description == "Input event list or observation definition file"
    assert d.used["bkgfile"].url == ""  # file://$ID: an upload
    assert d.used["bkgfile"].default == "background.fits"
    assert "evfile" not in d.parameters  # its InputParams PARAM is the input (ref="evfile")
    assert d.execution_duration == 60 and d.quote == 20 and d.version == "1.2"
    assert d.parameters["emin"].min == 0.01 and d.parameters["emin"].max == 100 and d.parameters["emin"].unit == "TeV"
    assert d.parameters["usepnt"].type == "boolean" and d.parameters["usepnt"].required is False
    assert [(g.name, g.file, g.content_type) for g in d.generated.values()] == [
        ("outfile", "cntmap.fits", "image/fits"), ("logfile", "ctbin.log", "text/plain")]
    # The same through the ordinary reader (POST /jdl, JDL_DIR): the LINK is kept there too.
    assert read_definition((DATA / "votable/ctbin_2017_vot.xml").read_bytes().replace(
        b'<GROUP name="InputParams"', b'<PARAM name="script" datatype="char" arraysize="*" value="echo ctbin&#10;"/>'
        b'<GROUP name="InputParams"')).used["evfile"].url == "https://voparis-cta-test.obspm.fr/data/$ID"


def test_a_link_that_is_no_template_is_reported():
    data = (DATA / "votable/ctbin_2017_vot.xml").read_bytes().replace(
        b"https://voparis-cta-test.obspm.fr/data/$ID", b"ftp://archive.example.org/events.fits")
    result = import_definition(data, script="true")
    assert result.definition.used["evfile"].url == ""
    assert result.warnings == ["job definition 'ctbin_2017': input 'evfile': LINK: url "
                               "'ftp://archive.example.org/events.fits' is not an http(s) template holding $ID: not kept"]


def test_result_multiplicity_in_a_votable_is_reported():
    data = (DATA / "votable/test_activity_1_vot.xml").read_bytes().replace(
        b'name="multiplicity" value=""', b'name="multiplicity" value="*"')
    result = import_definition(data)
    assert result.warnings == ["job definition 'test_activity_1': result 'output': multiplicity '*' is not kept: "
                               "a result of several files is a glob pattern in its file name here"]


def test_an_original_wadl_without_its_script_is_refused_clearly():
    with pytest.raises(ConfigurationError, match=r"holds no script .*jdl/scripts/<name>.sh"):
        read_definition((DATA / "wadl/ctbin.wadl").read_bytes())


def test_an_original_wadl_proposed_over_http_answers_400_saying_why(api):
    alice = signed_in_sessions(api, users=(("alice", {"editor": True}),))["alice"]
    r = alice.post(f"{api.url}/jdl", data=(DATA / "wadl/ctbin.wadl").read_bytes(),
                   headers={"Content-Type": "application/vnd.sun.wadl+xml"})
    assert r.status_code == 400
    assert "WADL of the original OPUS for 'ctbin': it holds no script" in r.text


def test_our_json_is_not_taken_for_the_original():
    ours = json.loads(write_definition(imported("json/ctbin.json").definition, "json"))
    assert not is_original_json(ours)
    assert all(is_original_json(json.loads(p.read_text())) for p in (DATA / "json").glob("*.json"))


def test_the_original_json_shape_reads_back_as_the_same_definition():
    for path, _ in EXAMPLES:
        d = imported(path).definition
        again = import_definition(json.dumps(to_original(d)))
        assert again.definition == d and again.warnings == []


def test_an_original_doculink_that_is_not_a_url_is_left_out_with_a_warning():
    """Definitions here take only an absolute URL as doculink (it is published as a link); the
    original took any text: an import keeps the definition and says what it left out."""
    content = json.loads((DATA / "json" / "test_activity_1.json").read_text())
    content["doculink"] = "docs/test_activity.html"
    done = import_definition(json.dumps(content), script="echo x > output.txt\n")
    assert done.definition.doculink == ""
    assert any('doculink "docs/test_activity.html" is not an absolute URL: not kept' in w for w in done.warnings)
    content["doculink"] = "https://example.org/test_activity"
    assert import_definition(json.dumps(content), script="echo x\n").definition.doculink == \
        "https://example.org/test_activity"


@pytest.mark.parametrize("link", ["docs/job-definitions.md#x", "/doc.html", "https://example.org/a b", 12])
def test_a_doculink_must_be_an_absolute_url(link):
    """It is published as a link (in /jdl, the VOTable's LINK, provenance's ActivityDescription):
    gammapy_maps shipped a path of the repository, which no client could follow."""
    with pytest.raises(ConfigurationError, match="doculink must be an absolute URL"):
        JobDefinition.from_dict({"name": "linked", "script": "true", "doculink": link})


@pytest.mark.parametrize("link, kept", [("https://example.org/doc#x", "https://example.org/doc#x"),
                                        ("ivo://ivoa.net/std/ProvenanceDM", "ivo://ivoa.net/std/ProvenanceDM"),
                                        ("", ""), (None, "")])
def test_a_doculink_may_be_any_absolute_uri_or_none(link, kept):
    assert JobDefinition.from_dict({"name": "linked", "script": "true", "doculink": link}).doculink == kept
