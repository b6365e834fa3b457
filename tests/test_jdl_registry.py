"""The registry of job definitions over HTTP: formats, proposals, validation, versions, deletion."""

from __future__ import annotations

import io
import json

import pytest
from astropy.io.votable import parse as parse_votable
from conftest import LiveServer, make_settings, run_job, signed_in_sessions

from opus.jobdef.formats import read_definition
def _definition(version: str, word: str) -> dict:
    return {"name": "versioned", "version": version, "description": f"writes {word}",
            "script": f"echo {word} > out.txt\n",
            "generated": {"out": {"file": "out.txt", "content_type": "text/plain"}}}


def _digest(reg, name: str) -> str:
    """The digest an admin is shown for a proposal (and sends to validate it)."""
    (shown,) = [p["digest"] for p in reg.as_["root"].get(f"{reg.url}/jdl/proposals").json()["proposals"]
                if p["name"] == name]
    return shown


@pytest.fixture
def reg(tmp_path):
    server = LiveServer(make_settings(tmp_path, ALLOW_ANONYMOUS=True))
    server.as_ = signed_in_sessions(server, (("root", {"admin": True}), ("alice", {"editor": True}),
                                             ("bob", {"editor": True}), ("carol", {"jobdefs": ["dummy"]})))
    yield server
    server.stop()


def test_list_shows_what_the_caller_may_use(reg):
    names = [d["name"] for d in reg.as_["alice"].get(f"{reg.url}/jdl").json()["jobDefinitions"]]
    assert {"dummy", "copy", "types"} <= set(names)
    carol = reg.as_["carol"].get(f"{reg.url}/jdl").json()["jobDefinitions"]
    assert [d["name"] for d in carol] == ["dummy"]
    assert carol[0]["jobs"] == f"{reg.url}/rest/dummy" and carol[0]["href"] == f"{reg.url}/jdl/dummy"


def test_every_format_is_served_and_reads_back(reg):
    live = reg.services.registry.get("types")
    r = reg.as_["alice"].get(f"{reg.url}/jdl/types")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-votable+xml"
    table = parse_votable(io.BytesIO(r.content), verify="exception")
    assert table.resources[0].utype == "voprov:ActivityDescription"
    assert f"{reg.url}/rest/types".encode() in r.content  # accessURL: the file is a service descriptor
    for fmt, ctype in (("votable", "application/x-votable+xml"), ("wadl", "application/vnd.sun.wadl+xml"),
                       ("json", "application/json; charset=UTF-8")):
        r = reg.as_["alice"].get(f"{reg.url}/jdl/types", params={"format": fmt})
        assert r.status_code == 200 and r.headers["Content-Type"] == ctype
        assert read_definition(r.content, fmt) == live
    doc = reg.as_["alice"].get(f"{reg.url}/jdl/types", params={"format": "json"}).json()
    assert doc["accessURL"] == f"{reg.url}/rest/types"
    assert {"RUNID", "EXECUTIONDURATION", "DESTRUCTION"} <= {c["name"] for c in doc["controlParameters"]}
    r = reg.as_["alice"].get(f"{reg.url}/jdl/types", params={"format": "pdf"})
    assert r.status_code == 400 and "use one of json, votable, wadl" in r.text
    assert reg.as_["alice"].get(f"{reg.url}/jdl/nosuch").status_code == 404


def test_propose_validate_and_keep_versions(reg):
    alice, bob, root = reg.as_["alice"], reg.as_["bob"], reg.as_["root"]
    r = alice.post(f"{reg.url}/jdl", json=_definition("1", "one"))
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"{reg.url}/jdl/proposals/versioned"
    assert r.json()["proposer"] == "alice"
    # not live yet; the proposer and admins see it, others do not
    assert alice.post(f"{reg.url}/rest/versioned").status_code == 404
    assert alice.get(r.headers["Location"], params={"format": "json"}).json()["version"] == "1"
    assert bob.get(r.headers["Location"]).status_code == 403
    assert [p["name"] for p in bob.get(f"{reg.url}/jdl/proposals").json()["proposals"]] == []
    assert [p["name"] for p in root.get(f"{reg.url}/jdl/proposals").json()["proposals"]] == ["versioned"]
    assert alice.post(f"{reg.url}/jdl/proposals/versioned/validate").status_code == 403
    r = root.post(f"{reg.url}/jdl/proposals/versioned/validate", data={"digest": _digest(reg, "versioned")},
                  allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == f"{reg.url}/jdl/versioned"

    # a job made under version 1, still PENDING when version 2 goes live, runs version 1
    old = alice.post(f"{reg.url}/rest/versioned", allow_redirects=False).headers["Location"]
    assert alice.get(old, headers={"Accept": "application/json"}).json()["jobDefinitionVersion"] == "1"
    assert alice.post(f"{reg.url}/jdl", json=_definition("1", "again")).status_code == 409
    vot = reg.as_["root"].get(f"{reg.url}/jdl/versioned").content.replace(b"echo one", b"echo two")
    vot = vot.replace(b'value="1" utype="voprov:ActivityDescription.version"',
                      b'value="2" utype="voprov:ActivityDescription.version"')
    r = bob.post(f"{reg.url}/jdl", files={"file": ("versioned.vot", vot)})
    assert r.status_code == 201, r.text
    assert r.json()["version"] == "2"
    assert root.post(f"{reg.url}/jdl/proposals/versioned/validate",
                     data={"digest": _digest(reg, "versioned")}).status_code == 200  # followed the 303
    new = run_job(alice, reg.url, "versioned")
    alice.post(old + "/phase", data={"PHASE": "RUN"})
    for _ in range(10):
        if alice.get(old + "/phase").text == "COMPLETED":
            break
        alice.get(old, params={"WAIT": 5})
    for url, word in ((old, "one"), (new, "two")):
        assert alice.get(url + "/results/out").text == f"{word}\n"
    versions = alice.get(f"{reg.url}/jdl/versioned/versions").json()
    assert versions["live"] == "2"
    assert [v["version"] for v in versions["versions"]] == ["1", "2"]
    r = alice.get(f"{reg.url}/jdl/versioned", params={"version": "1", "format": "json"})
    assert r.json()["script"] == "echo one > out.txt\n"
    assert alice.get(f"{reg.url}/jdl/versioned", params={"version": "7"}).status_code == 404

    # deletion: admins only; the definition is no longer offered, its jobs and versions remain
    assert alice.delete(f"{reg.url}/jdl/versioned").status_code == 403
    r = root.delete(f"{reg.url}/jdl/versioned", allow_redirects=False)
    assert r.status_code == 303
    r = alice.post(f"{reg.url}/rest/versioned")
    assert r.status_code == 404 and "was deleted" in r.text
    assert alice.get(old + "/results/out").text == "one\n"
    assert old.rsplit("/", 1)[1] in alice.get(f"{reg.url}/rest/versioned").text
    assert [v["version"] for v in alice.get(f"{reg.url}/jdl/versioned/versions").json()["versions"]] == ["1", "2"]


@pytest.mark.parametrize("body, kwargs, message", [
    (b"{not json", {"headers": {"Content-Type": "application/json"}}, "invalid job definition"),
    (json.dumps({"name": "x y", "script": "true"}).encode(), {"headers": {"Content-Type": "application/json"}},
     "job definition name"),
    (json.dumps({"name": "noscript"}).encode(), {"headers": {"Content-Type": "application/json"}}, "'script'"),
    (b"<VOTABLE><RESOURCE/></VOTABLE>", {"headers": {"Content-Type": "application/x-votable+xml"}},
     "invalid job definition"),
    (b'<?xml version="1.0"?><!DOCTYPE v [<!ENTITY x SYSTEM "file:///etc/hostname">]><VOTABLE>&x;</VOTABLE>',
     {"headers": {"Content-Type": "application/x-votable+xml"}}, "invalid job definition"),
    (b"", {}, "no job definition sent"),
])
def test_invalid_proposals_are_400_with_the_reason(reg, body, kwargs, message):
    r = reg.as_["alice"].post(f"{reg.url}/jdl", data=body, **kwargs)
    assert r.status_code == 400, r.text
    assert message in r.text
    assert reg.services.registry.proposals() == []


def test_anonymous_callers_cannot_propose_and_a_proposal_can_be_withdrawn(reg):
    assert reg.as_["anonymous"].post(f"{reg.url}/jdl", json=_definition("1", "x")).status_code == 401
    assert reg.as_["alice"].post(f"{reg.url}/jdl", json=_definition("1", "x")).status_code == 201
    assert reg.as_["bob"].delete(f"{reg.url}/jdl/proposals/versioned").status_code == 403
    r = reg.as_["alice"].post(f"{reg.url}/jdl/proposals/versioned", data={"ACTION": "DELETE"},
                              allow_redirects=False)
    assert r.status_code == 303
    assert reg.services.registry.proposals() == []
    assert reg.as_["root"].post(f"{reg.url}/jdl/proposals/versioned/validate",
                                data={"digest": "0" * 64}).status_code == 404


def test_proposing_needs_the_editor_role(reg):
    # carol is a plain user: she may run jobs, not propose definitions, until an admin makes her an editor.
    r = reg.as_["carol"].post(f"{reg.url}/jdl", json=_definition("1", "x"))
    assert r.status_code == 403 and "editor role" in r.text
    assert reg.services.registry.proposals() == []
    assert reg.as_["root"].patch(f"{reg.url}/admin/users/carol", json={"editor": True}).status_code == 200
    assert reg.as_["carol"].post(f"{reg.url}/jdl", json=_definition("1", "x")).status_code == 201


def test_the_command_line_manages_the_registry(tmp_path, capsys):
    import shutil

    from conftest import REPO_ROOT

    from opus.cli.main import main
    jdl = tmp_path / "jdl"
    shutil.copytree(REPO_ROOT / "jdl", jdl)
    settings = tmp_path / "s.py"
    settings.write_text(f"JDL_DIR = {str(jdl)!r}\nDATA_DIR = {str(tmp_path / 'var')!r}\n")
    opus = lambda *a: main(["--settings", str(settings), "jdl", *a])  # noqa: E731
    assert opus("convert", str(REPO_ROOT / "tests/data/gammapy_maps_slide.vot"), "--to", "json") == 0
    assert json.loads(capsys.readouterr().out)["name"] == "gammapy_maps"
    assert opus("show", "dummy", "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    doc["version"] = "9"
    (tmp_path / "new.json").write_text(json.dumps(doc))
    assert opus("propose", str(tmp_path / "new.json")) == 0
    assert opus("propose", str(tmp_path / "new.json")) == 0  # replaces the pending proposal
    capsys.readouterr()
    assert opus("proposals") == 0
    digest = json.loads(capsys.readouterr().out)["digest"]
    assert opus("show", "dummy", "--proposal") == 0
    assert f"digest {digest}" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --digest is required
        opus("validate", "dummy")
    assert opus("validate", "dummy", "--digest", "0" * 64) == 1
    assert "changed since you looked" in capsys.readouterr().err
    assert opus("validate", "dummy", "--digest", digest) == 0
    assert opus("propose", str(tmp_path / "new.json")) == 1
    assert "version '9' of 'dummy' is live" in capsys.readouterr().err
    assert opus("versions", "dummy") == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["1.0", "9"]
    assert opus("delete", "dummy") == 0 and not (jdl / "dummy.json").exists()
    assert opus("show", "nosuch") == 1
