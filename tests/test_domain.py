"""Pure domain rules: phases and transitions, instants, settings, job definitions."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from opus.errors import BadRequest, ConfigurationError, IllegalTransition, NotFound
from opus.jobdef import JobDefinition, JobDefinitionRegistry
from opus.settings import REPO_ROOT, load_settings
from opus.timeutil import format_instant, parse_instant, parse_int
from opus.uws import ACTIVE, FINAL, TRANSITIONS, WAITABLE, Phase, check_transition, parse_phase
def test_ten_phases_and_named_sets():
    assert len(Phase) == 10
    assert WAITABLE == {Phase.PENDING, Phase.QUEUED, Phase.EXECUTING}
    assert not (ACTIVE & FINAL)


@pytest.mark.parametrize("current,target", [
    (Phase.PENDING, Phase.QUEUED), (Phase.QUEUED, Phase.EXECUTING), (Phase.EXECUTING, Phase.COMPLETED),
    (Phase.EXECUTING, Phase.ERROR), (Phase.PENDING, Phase.ABORTED), (Phase.EXECUTING, Phase.ABORTED),
    (Phase.HELD, Phase.QUEUED), (Phase.SUSPENDED, Phase.EXECUTING), (Phase.COMPLETED, Phase.ARCHIVED),
    (Phase.PENDING, Phase.ERROR),
])
def test_allowed_transitions(current, target):
    check_transition(current, target)


@pytest.mark.parametrize("current,target", [
    (Phase.COMPLETED, Phase.QUEUED), (Phase.ABORTED, Phase.EXECUTING), (Phase.PENDING, Phase.COMPLETED),
    (Phase.ERROR, Phase.ABORTED), (Phase.ARCHIVED, Phase.COMPLETED), (Phase.QUEUED, Phase.PENDING),
    (Phase.COMPLETED, Phase.ERROR),
])
def test_illegal_transitions_raise_403(current, target):
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, target)
    assert info.value.status == 403


def test_no_transition_leaves_a_final_phase_except_archiving():
    for target, sources in TRANSITIONS.items():
        if target is not Phase.ARCHIVED and target is not Phase.UNKNOWN:
            assert not (sources & FINAL), target


def test_parse_phase_is_exact():
    assert parse_phase("EXECUTING") is Phase.EXECUTING
    with pytest.raises(BadRequest):
        parse_phase("executing")


@pytest.mark.parametrize("text,expected", [
    ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
    ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
    ("2024-05-01T12:00:00.5Z", datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=timezone.utc)),
    ("2024-05-01T12:00:00.123456Z", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)),
    ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
    ("2024-05-01", datetime(2024, 5, 1, tzinfo=timezone.utc)),
    ("2024-05-01T12:00", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
])
def test_parse_instant_accepts_client_forms(text, expected):
    assert parse_instant(text) == expected


@pytest.mark.parametrize("text", ["", "now", "2024-13-01T00:00:00Z", "2024-05-01T25:00:00Z", "01/05/2024",
                                  "2024-05-01T12:00:00ZZ"])
def test_parse_instant_rejects_garbage(text):
    with pytest.raises(BadRequest):
        parse_instant(text, "AFTER")


def test_format_instant_is_uws_form():
    assert format_instant(datetime(2024, 5, 1, 12, 0, 5, 120999, tzinfo=timezone.utc)) == "2024-05-01T12:00:05.120Z"
    assert format_instant(None) == ""


def test_parse_int():
    assert parse_int(" 12 ", "X") == 12
    for bad in ("1.5", "x", ""):
        with pytest.raises(BadRequest):
            parse_int(bad, "X")
    with pytest.raises(BadRequest):
        parse_int("-1", "X", 0)
    # too big is said as such, not "not an integer"; digits beyond 19 are not converted (no cost)
    with pytest.raises(BadRequest, match=r"^X: 9{20}\.\.\. \(5000 digits\) is out of range: it must be at most 2147483647$"):
        parse_int("9" * 5000, "X")
    with pytest.raises(BadRequest, match=r"^X: -9{25} is out of range: it must be at least 0$"):
        parse_int("-" + "9" * 25, "X", 0)
    assert parse_int("0" * 30 + "7", "X") == 7


def test_settings_defaults_and_file(tmp_path):
    s = load_settings(None)
    assert s.MANAGER == "local" and s.database_url.startswith("sqlite:///")
    f = tmp_path / "s.py"
    f.write_text("DATA_DIR = '/tmp/x'\nMAX_WAIT = 30\nimport os\n_private = 1\n")
    s = load_settings(f)
    assert s.DATA_DIR == "/tmp/x" and s.MAX_WAIT == 30
    assert s.database_url == "sqlite:////tmp/x/opus.sqlite"


@pytest.mark.parametrize("content,message", [
    ("MAX_WAT = 3\n", "unknown setting 'MAX_WAT'"),
    ("MANAGER = 'pbs'\n", "unknown manager 'pbs'"),
    ("DESTRUCTION_POLICY = 'burn'\n", "DESTRUCTION_POLICY"),
    ("MAX_WAIT = -1\n", "MAX_WAIT"),
    ("BASE_URL = 'example.org'\n", "BASE_URL"),
])
def test_bad_settings_fail_clearly(tmp_path, content, message):
    f = tmp_path / "s.py"
    f.write_text(content)
    with pytest.raises(ConfigurationError) as info:
        load_settings(f)
    assert message in str(info.value)


def test_missing_settings_file(tmp_path):
    with pytest.raises(ConfigurationError):
        load_settings(tmp_path / "nope.py")


def test_example_settings_file_loads_and_documents_every_setting():
    from opus.settings import _FIELDS
    example = REPO_ROOT / "settings.example.py"
    text = example.read_text()
    for name in _FIELDS:
        assert f"{name} = " in text, f"settings.example.py does not document {name}"
    load_settings(example)


def test_shipped_job_definitions_are_valid():
    registry = JobDefinitionRegistry(REPO_ROOT / "jdl")
    names = registry.names()
    assert {"dummy", "sleep", "fail", "copy"} <= set(names)
    for name in names:
        jobdef = registry.get(name)
        assert JobDefinition.from_dict(jobdef.to_dict()) == jobdef  # the JSON form round-trips


def _jobdef(**extra):
    data = {"name": "t", "script": "true", "parameters": {"n": {"type": "int", "min": 1, "max": 10, "default": 2},
                                                          "mode": {"options": ["a", "b"]},
                                                          "flag": {"type": "boolean"},
                                                          "x": {"type": "double", "required": True}}}
    data.update(extra)
    return JobDefinition.from_dict(data)


def test_parameter_checks_name_the_parameter():
    jd = _jobdef()
    assert jd.check_value("n", "5") == "5"
    assert jd.check_value("unknown", "anything") == "anything"
    for name, value, words in [("n", "0", "minimum"), ("n", "11", "maximum"), ("n", "2.5", "integer"),
                               ("mode", "c", "allowed values"), ("flag", "maybe", "boolean"),
                               ("x", "nan", "number"), ("x", "abc", "number")]:
        with pytest.raises(BadRequest) as info:
            jd.check_value(name, value)
        assert name in info.value.message and words in info.value.message
    assert jd.missing_required({"n"}) == ["x"]


@pytest.mark.parametrize("data,words", [
    ({"name": "bad name", "script": "x"}, "name"),
    ({"name": "t"}, "script"),
    ({"name": "t", "script": "x", "parameters": {"PATH": {}}}, "reserved"),
    ({"name": "t", "script": "x", "parameters": {"LD_PRELOAD": {}}}, "reserved"),
    ({"name": "t", "script": "x", "parameters": {"runid": {}}}, "control parameter"),
    ({"name": "t", "script": "x", "parameters": {"a-b": {}}}, "parameter name"),
    ({"name": "t", "script": "x", "parameters": {"a": {"type": "complex"}}}, "type"),
    ({"name": "t", "script": "x", "parameters": {"a": {"colour": "red"}}}, "unknown field"),
    ({"name": "t", "script": "x", "parameters": {"a": {"type": "int", "default": "x"}}}, "default"),
    ({"name": "t", "script": "x", "generated": {"r": {"file": "../etc/passwd"}}}, "work directory"),
    ({"name": "t", "script": "x", "executionDuration": -1}, "executionDuration"),
])
def test_invalid_definitions_are_refused(data, words):
    with pytest.raises(ConfigurationError) as info:
        JobDefinition.from_dict(data)
    assert words in str(info.value)


def test_registry_reloads_changed_files_and_rejects_bad_names(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"name": "a", "script": "true", "description": "one"}))
    reg = JobDefinitionRegistry(tmp_path)
    assert reg.get("a").description == "one"
    import os
    import time

    (tmp_path / "a.json").write_text(json.dumps({"name": "a", "script": "true", "description": "two"}))
    os.utime(tmp_path / "a.json", (time.time() + 5, time.time() + 5))
    assert reg.get("a").description == "two"
    for bad in ("../a", "nope", ""):
        with pytest.raises(NotFound):
            reg.get(bad)
    (tmp_path / "b.json").write_text("{not json")
    assert [d.name for d in reg.all()] == ["a"]
