"""The operator's view (issue 13, points 5, 6, 15): definitions that declare needs, invalid
definition files (and the admin page that lists them), and the bounds of jobs in /capabilities and
the definition."""

from __future__ import annotations

import json
import pathlib
import sys
from pathlib import Path

import pytest
from lxml import etree

from conftest import REPO_ROOT, ApiServer, make_settings, signed_in_sessions
from operator_tools import current_user, jdl_dir, settings_file
from opus.cli.main import main as opus_main


# ---- point 5: definitions that declare needs -------------------------------------------------------------------
def test_check_says_gammapy_maps_misses_astropy(tmp_path, capsys, monkeypatch):
    jdl = jdl_dir(tmp_path, "gammapy_maps", "dummy")
    s = settings_file(tmp_path / "s.py", JDL_DIR=str(jdl), DATA_DIR=str(tmp_path), JOB_SANDBOX="none",
                       CALLBACK_URL="http://127.0.0.1:1", SERVICE_USER=current_user())
    assert opus_main(["--settings", str(s), "init"]) == 0  # `check` checks the database too
    assert opus_main(["--settings", str(s), "check"]) == 0
    assert "ok       gammapy_maps" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "astropy", None)  # as without the [science] extra: not importable
    assert opus_main(["--settings", str(s), "check"]) == 1
    out = capsys.readouterr().out
    assert "ok       gammapy_maps" not in out and "ok       dummy" in out
    assert "MISSING  gammapy_maps: needs Python module 'astropy', which is not found on this host" in out


def test_a_missing_command_is_reported_and_shown_to_admins(tmp_path, capsys):
    jdl = jdl_dir(tmp_path, "dummy")
    (jdl / "zipper.json").write_text(json.dumps({
        "name": "zipper", "script": "gzip -k input\n",
        "needs": {"commands": ["sh", "no-such-command-here", "/usr/bin/no-such-either"], "python": ["json"]}}))
    s = settings_file(tmp_path / "s.py", JDL_DIR=str(jdl), DATA_DIR=str(tmp_path), JOB_SANDBOX="none")
    assert opus_main(["--settings", str(s), "check"]) == 1
    out = capsys.readouterr().out
    assert ("MISSING  zipper: needs command 'no-such-command-here', which is not found on this host; "
            "needs command '/usr/bin/no-such-either'") in out
    server = ApiServer(make_settings(tmp_path, JDL_DIR=str(jdl)))
    try:
        sessions = signed_in_sessions(server)
        problems = sessions["root"].get(f"{server.url}/jdl").json()["problems"]
        assert [(p["name"], p["state"]) for p in problems] == [("zipper", "unmet")]
        assert "no-such-command-here" in problems[0]["problems"][0]
        assert "problems" not in sessions["alice"].get(f"{server.url}/jdl").json()  # admins only
        assert "zipper" in {d["name"] for d in sessions["alice"].get(f"{server.url}/jdl").json()["jobDefinitions"]}
    finally:
        server.stop()


@pytest.mark.parametrize("needs", [["astropy"], {"python": "astropy"}, {"python": ["astropy; rm -rf /"]},
                                   {"commands": ["../bin/sh"]}, {"perl": ["x"]}])
def test_malformed_needs_are_refused(needs):
    from opus.errors import ConfigurationError
    from opus.jobdef import JobDefinition
    with pytest.raises(ConfigurationError, match="needs"):
        JobDefinition.from_dict({"name": "x", "script": "true", "needs": needs})


def test_needs_survive_every_format_and_may_be_absent():
    from opus.jobdef import JobDefinition
    from opus.jobdef.formats import read_definition, write_definition
    d = JobDefinition.from_dict(json.loads((REPO_ROOT / "jdl" / "gammapy_maps.json").read_text()))
    assert d.needs == {"python": ["astropy", "numpy", "matplotlib"]}
    both = JobDefinition.from_dict({"name": "x", "script": "true", "needs": {"python": ["a.b"], "commands": ["gzip"]}})
    for jobdef in (d, both):
        for fmt in ("json", "votable", "wadl"):
            assert read_definition(write_definition(jobdef, fmt)) == jobdef
    slide = read_definition((REPO_ROOT / "tests" / "data" / "gammapy_maps_slide.vot").read_bytes())
    assert slide.needs == {}  # the original OPUS's VOTable: no needs, still read
    bad = write_definition(both, "wadl").replace(b'python="a.b"', b'python="a;b"')
    with pytest.raises(Exception, match="needs.python"):
        read_definition(bad)


# ---- point 6: invalid definition files ---------------------------------------------------------------------
BROKEN = {
    "badjson": b"{ this is not JSON",
    "schema": json.dumps({"name": "schema", "script": "true", "parameters": {"x": {"type": "complex"}}}).encode(),
    "wrongname": json.dumps({"name": "other", "script": "true"}).encode(),
}


def test_invalid_definition_files_answer_503_without_paths_and_admins_see_why(tmp_path, capsys, monkeypatch):
    jdl = jdl_dir(tmp_path, "dummy")
    for name, data in BROKEN.items():
        (jdl / f"{name}.json").write_bytes(data)
    (jdl / "unreadable.json").write_text(json.dumps({"name": "unreadable", "script": "true"}))
    (jdl / "bad.name.json").write_text("{}")
    real_read = pathlib.Path.read_bytes

    def read_bytes(self):  # a file the server may not read (root reads anything: simulated)
        if self.name == "unreadable.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    server = ApiServer(make_settings(tmp_path, JDL_DIR=str(jdl)))
    try:
        sessions = signed_in_sessions(server)
        for name in (*BROKEN, "unreadable"):
            for who in ("alice", "root"):
                for r in (sessions[who].get(f"{server.url}/jdl/{name}"),
                          sessions[who].get(f"{server.url}/jdl/{name}?format=json"),
                          sessions[who].post(f"{server.url}/rest/{name}", data={}, allow_redirects=False)):
                    assert r.status_code == 503, (name, r.status_code, r.text)
                    assert str(tmp_path) not in r.text and ".json" not in r.text, r.text
                    assert "cannot be used now" in r.text
        assert "'complex'" in sessions["alice"].get(f"{server.url}/jdl/schema").text  # what is wrong, not where
        assert "Permission denied" not in sessions["alice"].get(f"{server.url}/jdl/unreadable").text
        versions = sessions["alice"].get(f"{server.url}/jdl/badjson/versions")
        assert versions.status_code == 200 and versions.json()["live"] is None
        assert sessions["alice"].get(f"{server.url}/jdl/nosuchdef").status_code == 404
        assert sessions["alice"].get(f"{server.url}/jdl/bad.name").status_code == 404
        listing = sessions["alice"].get(f"{server.url}/jdl")
        assert listing.status_code == 200
        assert [d["name"] for d in listing.json()["jobDefinitions"]] == ["dummy"]
        problems = {p["name"]: p for p in sessions["root"].get(f"{server.url}/jdl").json()["problems"]}
        assert set(problems) == {*BROKEN, "unreadable", "bad.name"}
        assert problems["badjson"]["file"] == str(jdl / "badjson.json") and problems["badjson"]["state"] == "invalid"
        assert "not a JSON job definition" in problems["badjson"]["problems"][0]
        assert "complex" in problems["schema"]["problems"][0]
        assert "'other'" in problems["wrongname"]["problems"][0]
        assert "Permission denied" in problems["unreadable"]["problems"][0]
        assert problems["bad.name"]["state"] == "misnamed"
        assert server.http.get(f"{server.url}/capabilities").status_code == 200
        # An admin may remove a broken file (nothing to keep as a version).
        assert sessions["root"].delete(f"{server.url}/jdl/badjson", allow_redirects=False).status_code == 303
        assert sessions["root"].get(f"{server.url}/jdl/badjson").status_code == 404
        assert not (jdl / "badjson.json").exists()
    finally:
        server.stop()
    s = settings_file(tmp_path / "s.py", JDL_DIR=str(jdl), DATA_DIR=str(tmp_path), JOB_SANDBOX="none")
    assert opus_main(["--settings", str(s), "check"]) == 1
    out = capsys.readouterr().out
    assert f"INVALID  schema ({jdl / 'schema.json'}): job definition 'schema': parameter 'x'" in out
    assert "INVALID  unreadable" in out and "Permission denied" in out
    assert f"INVALID  {jdl / 'bad.name.json'}: not offered" in out


def test_a_broken_live_definition_can_be_replaced_by_a_new_version(tmp_path):
    from opus.jobdef import JobDefinition, JobDefinitionRegistry
    jdl = tmp_path / "jdl"
    jdl.mkdir()
    (jdl / "fixme.json").write_text("{broken")
    registry = JobDefinitionRegistry(jdl)
    meta = registry.propose(JobDefinition.from_dict({"name": "fixme", "script": "true", "version": "2"}), "admin")
    assert registry.validate("fixme", meta["digest"]).version == "2"
    assert registry.get("fixme").version == "2"


# ---- point 15: the bounds of jobs ----------------------------------------------------------------------------
def test_capabilities_and_the_definition_show_the_bounds_of_jobs(tmp_path):
    server = ApiServer(make_settings(tmp_path, MAX_EXECUTION_DURATION=7200, DEFAULT_EXECUTION_DURATION=300,
                                     DESTRUCTION_INTERVAL=7 * 86400, MAX_DESTRUCTION_INTERVAL=30 * 86400))
    try:
        jdl = Path(server.settings.JDL_DIR)
        (jdl / "bare.json").write_text(json.dumps({"name": "bare", "script": "true"}))
        (jdl / "unlimited.json").write_text(json.dumps({"name": "unlimited", "script": "true", "executionDuration": 0}))
        caps = etree.fromstring(server.http.get(f"{server.url}/capabilities").content)
        described = {c.find("interface/accessURL").text.rsplit("/", 1)[1]: c.findtext("description")
                     for c in caps.iter("capability") if c.get("standardID", "").startswith("ivo://ivoa.net/std/UWS")}
        assert described["gammapy_maps"] == (
            "executionDuration: 600 s by default, at most 7200 s. destruction: 7 days after creation by default, "
            "at most 30 days after creation (a later DESTRUCTION is shortened to it).")
        assert described["bare"].startswith("executionDuration: 300 s by default")  # it gives none: the server's
        assert described["unlimited"].startswith("executionDuration: 7200 s by default")  # 0 is capped
        doc = server.http.get(f"{server.url}/jdl/gammapy_maps?format=json").json()
        assert doc["limits"] == {"executionDuration": {"default": 600, "max": 7200},
                                 "destruction": {"default": 7 * 86400, "max": 30 * 86400}}
    finally:
        server.stop()


def test_capabilities_with_a_votable_definition(tmp_path):
    """Issue 13, point 7: a live definition that is a .vot file (no <name>.json) is listed, with its bounds."""
    from opus.jobdef import JobDefinition
    from opus.jobdef.formats import write_definition
    jdl = jdl_dir(tmp_path, "dummy")
    vot = JobDefinition.from_dict({"name": "fromvot", "script": "true\n", "executionDuration": 42})
    (jdl / "fromvot.vot").write_bytes(write_definition(vot, "votable"))
    server = ApiServer(make_settings(tmp_path, JDL_DIR=str(jdl)))
    try:
        r = server.http.get(f"{server.url}/capabilities")
        assert r.status_code == 200, r.text
        caps = etree.fromstring(r.content)
        described = {c.find("interface/accessURL").text.rsplit("/", 1)[1]: c.findtext("description")
                     for c in caps.iter("capability") if c.get("standardID", "").startswith("ivo://ivoa.net/std/UWS")}
        assert set(described) == {"dummy", "fromvot"}
        assert described["fromvot"].startswith("executionDuration: 42 s by default")
        assert server.http.get(f"{server.url}/jdl/fromvot?format=json").json()["limits"]["executionDuration"]["default"] == 42
    finally:
        server.stop()


def test_the_admin_page_lists_definitions_that_cannot_run(tmp_path):
    """The admin page shows each invalid file and each unmet need, with the file and the reason."""
    import base64

    from browser import checked_context, launch
    from conftest import LiveServer
    jdl = jdl_dir(tmp_path, "dummy")
    (jdl / "broken.json").write_text("{ not JSON")
    (jdl / "needy.json").write_text(json.dumps({"name": "needy", "script": "true\n",
                                                "needs": {"commands": ["no-such-command-here"]}}))
    server = LiveServer(make_settings(tmp_path, JDL_DIR=str(jdl)))
    try:
        root = signed_in_sessions(server, (("root", {"admin": True}),))["root"]
        basic = base64.b64encode(f"root:{root.auth[1]}".encode()).decode()
        with launch() as browser, checked_context(browser, server.url,
                                                  extra_http_headers={"Authorization": f"Basic {basic}"}) as context:
            page = context.new_page()
            page.goto(f"{server.url}/web/admin")
            page.wait_for_selector("#admin[data-ready]")
            broken = page.locator('#definition-problems [data-problem="broken"]')
            assert broken.get_attribute("data-state") == "invalid"
            assert str(jdl / "broken.json") in broken.inner_text()
            assert "not a JSON job definition" in broken.inner_text()
            needy = page.locator('#definition-problems [data-problem="needy"]')
            assert "missing needs" in needy.inner_text() and "no-such-command-here" in needy.inner_text()
            assert page.locator('tr[data-definition="dummy"]').count() == 1
    finally:
        server.stop()
