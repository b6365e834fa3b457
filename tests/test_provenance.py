"""Provenance: jobs chained through the result store, ProvSAP DEPTH/DIRECTION, both models, every
serialisation, access, deleted jobs, wasDerivedFrom and a job's own internal steps."""

from __future__ import annotations

import io
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import requests
from conftest import LiveServer, make_settings, run_job, signed_in_sessions
from prov.model import (
    ProvActivity,
    ProvAgent,
    ProvAssociation,
    ProvDerivation,
    ProvDocument,
    ProvEntity,
    ProvGeneration,
    ProvStart,
    ProvUsage,
)

from opus.provenance import select
from opus.auth.identity import ANONYMOUS, Identity
from opus.storage import JobStore, create_engine_for, upgrade_schema
from opus.storage.entitystore import EntityStore
from opus.uws import Job, Phase, Result
VOPROV = "http://www.ivoa.net/documents/ProvenanceDM/ns/voprov/"
STEPS = {
    "prefix": {"ex": "http://example.org/steps#", "voprov": VOPROV},
    "activity": {"ex:read": {"prov:label": "read the input"}, "ex:write": {"voprov:name": "write"}},
    "entity": {"ex:buffer": {"prov:label": "in memory"}},
    "wasGeneratedBy": {"_:g1": {"prov:entity": "ex:buffer", "prov:activity": "ex:read"}},
    "used": {"_:u1": {"prov:activity": "ex:write", "prov:entity": "ex:buffer"}},
}
TRACED = {
    "name": "traced", "version": "2", "description": "Copies its input and describes its own steps",
    "type": "test", "subtype": "provenance", "contact": {"name": "Prov Tester", "email": "prov@example.org"},
    "parameters": {"level": {"type": "int", "default": "3", "description": "A level"}},
    "used": {"infile": {"description": "Any file", "role": "input"}},
    "generated": {"out": {"file": "out.dat", "derived_from": ["infile"]},
                  "log": {"file": "log.txt", "content_type": "text/plain"}},
    "script": "cp \"$infile\" out.dat\necho \"level $level\" > log.txt\n"
              f"cat > \"$OPUS_WORK_DIR/provenance.json\" <<'EOF'\n{json.dumps(STEPS)}\nEOF\n",
}


@pytest.fixture
def srv(tmp_path):
    settings = make_settings(tmp_path)
    (Path(settings.JDL_DIR) / "traced.json").write_text(json.dumps(TRACED))
    server = LiveServer(settings)
    server.as_ = signed_in_sessions(server)
    yield server
    server.stop()


def run(srv, who, jobname, data=None, files=None) -> str:
    """Run a job to COMPLETED; its id."""
    return run_job(srv.as_[who], srv.url, jobname, data, files).rsplit("/", 1)[1]


def results(srv, who, jobname, job_id) -> dict[str, dict]:
    r = srv.as_[who].get(f"{srv.url}/rest/{jobname}/{job_id}/results", headers={"Accept": "application/json"})
    return {res["id"]: res for res in r.json()}


def provsap(srv, who, **params) -> requests.Response:
    return srv.as_[who].get(f"{srv.url}/provsap", params=params)


def doc_of(r: requests.Response, fmt: str = "json") -> ProvDocument:
    assert r.status_code == 200, r.text
    return ProvDocument.deserialize(content=r.text, format=fmt)


def summary(doc: ProvDocument) -> dict:
    """Job ids, entity ids, used (job, entity, role) and wasGeneratedBy (entity, job) of the document."""
    def local(qn) -> str:
        return str(qn).rsplit("/", 1)[-1].split(":", 1)[-1]

    def role(rec) -> str:
        return next(iter(rec.get_attribute("prov:role")), "")

    return {
        "jobs": {local(r.identifier) for r in doc.get_records(ProvActivity) if str(r.identifier).startswith("opus_job:")},
        "entities": {local(r.identifier) for r in doc.get_records(ProvEntity)
                     if str(r.identifier).startswith("opus_store:")},
        "used": {(local(r.args[0]), local(r.args[1]), role(r)) for r in doc.get_records(ProvUsage)
                 if str(r.args[0]).startswith("opus_job:")},
        "generated": {(local(r.args[0]), local(r.args[1])) for r in doc.get_records(ProvGeneration)
                      if str(r.args[1]).startswith("opus_job:")},
    }


@pytest.fixture
def chain(srv):
    """alice's three jobs: J1 (dummy) -> E1; J2 (copy, infile = E1's /store URL) -> E2, S2;
    J3 (copy, an upload of S2's bytes, recognised by its hash) -> E3, S3."""
    j1 = run(srv, "alice", "dummy", {"text": "chained"})
    e1 = results(srv, "alice", "dummy", j1)["output"]
    j2 = run(srv, "alice", "copy", {"infile": e1["store"]})
    r2 = results(srv, "alice", "copy", j2)
    size = srv.as_["alice"].get(r2["size"]["store"]).content
    j3 = run(srv, "alice", "copy", files={"infile": ("size-again.txt", size)})
    r3 = results(srv, "alice", "copy", j3)
    return dict(j1=j1, j2=j2, j3=j3, e1=e1["entity"], e2=r2["copy"]["entity"], s2=r2["size"]["entity"],
                e3=r3["copy"]["entity"], s3=r3["size"]["entity"])


def test_a_two_job_chain(srv, chain):
    c = chain
    # the second job's own page: its activity and results, one step back (its input)
    got = summary(doc_of(srv.as_["alice"].get(f"{srv.url}/rest/copy/{c['j2']}/provenance")))
    assert got == {"jobs": {c["j2"]}, "entities": {c["e1"], c["e2"], c["s2"]},
                   "used": {(c["j2"], c["e1"], "infile")}, "generated": {(c["e2"], c["j2"]), (c["s2"], c["j2"])}}
    got = summary(doc_of(srv.as_["alice"].get(f"{srv.url}/rest/copy/{c['j2']}/provenance", params={"DEPTH": 2})))
    assert got["jobs"] == {c["j1"], c["j2"]} and (c["e1"], c["j1"]) in got["generated"]
    # ProvSAP BACK from the second job's result, DEPTH 1, 2 and ALL
    expect = [({c["j2"]}, {c["e2"]}, set(), {(c["e2"], c["j2"])}),
              ({c["j2"]}, {c["e2"], c["e1"]}, {(c["j2"], c["e1"], "infile")}, {(c["e2"], c["j2"])})]
    for depth, (jobs, entities, used, generated) in zip((1, 2), expect):
        got = summary(doc_of(provsap(srv, "alice", ID=c["e2"], DEPTH=depth)))
        assert got == {"jobs": jobs, "entities": entities, "used": used, "generated": generated}, depth
    full = {"jobs": {c["j1"], c["j2"]}, "entities": {c["e2"], c["e1"]}, "used": {(c["j2"], c["e1"], "infile")},
            "generated": {(c["e2"], c["j2"]), (c["e1"], c["j1"])}}
    assert summary(doc_of(provsap(srv, "alice", ID=c["e2"], DEPTH="ALL"))) == full
    assert summary(doc_of(provsap(srv, "alice", ID=c["e2"], DEPTH=3))) == full
    assert summary(doc_of(provsap(srv, "alice", ID=c["e2"], DEPTH=0))) == \
        {"jobs": set(), "entities": {c["e2"]}, "used": set(), "generated": set()}
    # FORTH from the first result, DEPTH 1 and 2
    got = summary(doc_of(provsap(srv, "alice", ID=c["e1"], DEPTH=1, DIRECTION="FORTH")))
    assert got == {"jobs": {c["j2"]}, "entities": {c["e1"]}, "used": {(c["j2"], c["e1"], "infile")}, "generated": set()}
    got = summary(doc_of(provsap(srv, "alice", ID=c["e1"], DEPTH=2, DIRECTION="forth")))
    assert got["jobs"] == {c["j2"]} and got["entities"] == {c["e1"], c["e2"], c["s2"]}
    assert got["generated"] == {(c["e2"], c["j2"]), (c["s2"], c["j2"])}


def test_a_three_job_chain(srv, chain):
    c = chain
    used3 = srv.services.entities.used_by([c["j3"]])
    assert [(role, e) for _j, role, e in used3] == [("infile", c["s2"])]  # the upload is the known entity
    full = {"jobs": {c["j1"], c["j2"], c["j3"]}, "entities": {c["e3"], c["s2"], c["e1"]},
            "used": {(c["j3"], c["s2"], "infile"), (c["j2"], c["e1"], "infile")},
            "generated": {(c["e3"], c["j3"]), (c["s2"], c["j2"]), (c["e1"], c["j1"])}}
    assert summary(doc_of(provsap(srv, "alice", ID=c["e3"], DEPTH="all"))) == full
    assert summary(doc_of(provsap(srv, "alice", ID=c["e3"], DEPTH=100))) == full  # level by level: the same
    got = summary(doc_of(provsap(srv, "alice", ID=c["e3"], DEPTH=4)))
    assert got["jobs"] == {c["j3"], c["j2"]} and got["entities"] == {c["e3"], c["s2"], c["e1"]}
    # from a job id: BACK goes to its inputs first
    got = summary(doc_of(provsap(srv, "alice", ID=c["j3"], DEPTH=2)))
    assert got["jobs"] == {c["j3"], c["j2"]} and got["entities"] == {c["s2"]}
    # FORTH from the first result: everything made from it
    forth = summary(doc_of(provsap(srv, "alice", ID=c["e1"], DEPTH="ALL", DIRECTION="FORTH")))
    assert forth == {"jobs": {c["j2"], c["j3"]}, "entities": {c["e1"], c["e2"], c["s2"], c["e3"], c["s3"]},
                     "used": {(c["j2"], c["e1"], "infile"), (c["j3"], c["s2"], "infile")},
                     "generated": {(c["e2"], c["j2"]), (c["s2"], c["j2"]), (c["e3"], c["j3"]), (c["s3"], c["j3"])}}
    got = summary(doc_of(provsap(srv, "alice", ID=c["e1"], DEPTH=3, DIRECTION="FORTH")))
    assert got["jobs"] == {c["j2"], c["j3"]} and got["entities"] == {c["e1"], c["e2"], c["s2"]}
    # several ids, DEPTH 0: exactly those
    got = summary(doc_of(srv.as_["alice"].get(f"{srv.url}/provsap?ID={c['e3']}&ID={c['j1']}&DEPTH=0")))
    assert got == {"jobs": {c["j1"]}, "entities": {c["e3"]}, "used": set(), "generated": set()}


def test_the_ivoa_model_agents_plan_and_configuration(srv, chain):
    c = chain
    doc = doc_of(provsap(srv, "alice", ID=c["j1"], DEPTH=0, DESCRIPTIONS="true"))
    (activity,) = doc.get_records(ProvActivity)
    assert str(activity.identifier) == f"opus_job:dummy/{c['j1']}"
    assert activity.get_startTime() is not None and activity.get_endTime() is not None
    assert {str(v) for v in activity.get_attribute("voprov:name")} == {"dummy"}
    assoc = {(str(r.args[1]), str(r.args[2]), next(iter(r.get_attribute("prov:role")))) for r in
             doc.get_records(ProvAssociation)}
    assert assoc == {("opus_user:alice", "opus_jdl:dummy?version=1.0", "owner"),
                     ("opus_agent:OPUS_team", "None", "contact")}
    entities = {str(r.identifier): r for r in doc.get_records(ProvEntity)}
    plan = entities["opus_jdl:dummy?version=1.0"]
    assert {str(t) for t in plan.get_attribute("prov:type")} >= {"prov:Plan", "voprov:ActivityDescription"}
    param = entities[f"opus_job:dummy/{c['j1']}/parameters/text"]
    assert param.get_attribute("prov:value") == {"chained"}
    assert {str(t) for t in param.get_attribute("prov:type")} == {"voprov:Parameter"}
    assert "opus_jdl:dummy?version=1.0&parameter=text" in entities  # DESCRIPTIONS=true
    # the entity attributes
    doc = doc_of(provsap(srv, "alice", ID=c["e1"], DEPTH=0))
    (entity,) = doc.get_records(ProvEntity)
    attrs = {str(k): str(v) for k, v in entity.attributes}
    assert attrs["voprov:content_type"] == "text/plain" and attrs["voprov:file_name"] == "output.txt"
    assert attrs["voprov:size"] == "8" and len(attrs["voprov:sha256"]) == 64
    assert attrs["prov:location"] == f"{srv.url}/store/{c['e1']}/output.txt"
    # each part can be left out
    doc = doc_of(provsap(srv, "alice", ID=c["j1"], DEPTH=0, AGENTS="false", CONFIGURATION="FALSE"))
    assert not list(doc.get_records(ProvAgent))
    assert not any("/parameters/" in str(r.identifier) for r in doc.get_records(ProvEntity))
    assert not any("parameter=" in str(r.identifier) for r in doc.get_records(ProvEntity))  # DESCRIPTIONS off


def test_every_serialisation_parses_back(srv, chain):
    from astropy.io.votable import parse

    c = chain
    params = {"ID": c["e3"], "DEPTH": "ALL", "DESCRIPTIONS": "true"}
    reference = summary(doc_of(provsap(srv, "alice", **params)))
    assert reference["jobs"] == {c["j1"], c["j2"], c["j3"]}
    for fmt, spelling in (("json", "PROV-JSON"), ("xml", "prov-xml"), ("xml", "application/provenance+xml")):
        r = provsap(srv, "alice", RESPONSEFORMAT=spelling, **params)
        assert summary(doc_of(r, fmt)) == reference, spelling
    r = provsap(srv, "alice", RESPONSEFORMAT="text/provenance-notation", **params)
    assert r.headers["Content-Type"].startswith("text/provenance-notation")
    text = r.text
    assert text.startswith("document") and text.rstrip().endswith("endDocument")
    for statement in (f"activity(opus_job:copy/{c['j3']}", f"entity(opus_store:{c['e1']}",
                      f"used(opus_job:copy/{c['j3']}, opus_store:{c['s2']}",
                      f"wasGeneratedBy(opus_store:{c['e1']}, opus_job:dummy/{c['j1']}",
                      f"wasAssociatedWith(opus_job:dummy/{c['j1']}, opus_user:alice", "agent(opus_user:alice"):
        assert statement in text, statement
    r = provsap(srv, "alice", RESPONSEFORMAT="PROV-VOTABLE", **params)
    assert r.headers["Content-Type"] == "application/x-votable+xml"
    votable = parse(io.BytesIO(r.content), verify="exception")
    tables = {t.name: t.to_table() for t in votable.iter_tables()}
    assert {"prefix", "activity", "entity", "agent", "used", "wasGeneratedBy", "wasAssociatedWith"} <= set(tables)
    assert {str(i) for i in tables["activity"]["id"]} >= {f"opus_job:copy/{c['j3']}", f"opus_job:dummy/{c['j1']}"}
    used = {(str(row["activity"]), str(row["entity"])) for row in tables["used"]}
    assert (f"opus_job:copy/{c['j3']}", f"opus_store:{c['s2']}") in used
    assert f"opus_store:{c['e1']}" in {str(i) for i in tables["entity"]["id"]}
    r = provsap(srv, "alice", RESPONSEFORMAT="svg", **params)
    assert r.headers["Content-Type"] == "image/svg+xml"
    assert ET.fromstring(r.content).tag == "{http://www.w3.org/2000/svg}svg"
    r = srv.as_["alice"].get(f"{srv.url}/rest/copy/{c['j3']}/provenance", params={"format": "image/png"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_the_w3c_model_has_no_voprov_term(srv, chain):
    c = chain
    for fmt in ("json", "provn", "xml", "votable"):
        params = {"ID": c["e3"], "DEPTH": "ALL", "DESCRIPTIONS": "true", "MODEL": "W3C", "RESPONSEFORMAT": fmt}
        r = provsap(srv, "alice", **params)
        assert r.status_code == 200 and "voprov" not in r.text.lower() and "provenancedm" not in r.text.lower(), fmt
        assert "opus:" in r.text
        ivoa = provsap(srv, "alice", **{**params, "MODEL": "ivoa"})
        assert "voprov:" in ivoa.text, fmt
    assert summary(doc_of(provsap(srv, "alice", ID=c["e3"], DEPTH="ALL", MODEL="W3C"))) == \
        summary(doc_of(provsap(srv, "alice", ID=c["e3"], DEPTH="ALL")))


def test_nobody_sees_someone_elses_jobs_or_entities(srv, chain):
    c = chain
    alices = set(c.values())
    for params in ({"ID": c["e3"], "DEPTH": "ALL"}, {"ID": c["e1"], "DEPTH": "ALL", "DIRECTION": "FORTH"},
                   {"ID": c["j2"], "RESPONSEFORMAT": "provn"}, {"ID": c["j2"], "RESPONSEFORMAT": "votable"}):
        r = provsap(srv, "bob", **params)
        assert r.status_code == 200, r.text  # an id one may not see is left out, like an unknown one
        assert not [x for x in alices if x in r.text] and "alice" not in r.text and "chained" not in r.text
    assert summary(doc_of(provsap(srv, "bob", ID=c["e3"]))) == \
        {"jobs": set(), "entities": set(), "used": set(), "generated": set()}
    assert srv.as_["bob"].get(f"{srv.url}/rest/copy/{c['j2']}/provenance").status_code == 403
    # an admin uses alice's result: alice's walk stops before the admin's job ...
    jr = run(srv, "root", "copy", {"infile": f"{srv.url}/store?ID={c['e1']}"})
    forth = summary(doc_of(provsap(srv, "alice", ID=c["e1"], DEPTH="ALL", DIRECTION="FORTH")))
    assert jr not in forth["jobs"] and forth["jobs"] == {c["j2"], c["j3"]}
    assert jr not in provsap(srv, "alice", ID=c["e1"], DEPTH=1, DIRECTION="FORTH").text
    # ... which the admin sees, with alice's chain behind it
    back = summary(doc_of(provsap(srv, "root", ID=jr, DEPTH="ALL")))
    assert back["jobs"] == {jr, c["j1"]} and back["entities"] == {c["e1"]}
    # an unknown id: an empty document
    assert summary(doc_of(provsap(srv, "alice", ID="0123456789abcdef")))["jobs"] == set()


@pytest.mark.parametrize("params,allowed", [
    ({"ID": "0123456789abcdef", "DEPTH": "-1"}, "non-negative integer"),
    ({"ID": "0123456789abcdef", "DEPTH": "many"}, "or ALL"),
    ({"ID": "0123456789abcdef", "DIRECTION": "UP"}, "BACK, FORTH"),
    ({"ID": "0123456789abcdef", "MODEL": "PROV"}, "IVOA, W3C"),
    ({"ID": "0123456789abcdef", "AGENTS": "maybe"}, "true or false"),
    ({"ID": "0123456789abcdef", "DESCRIPTIONS": "3"}, "true or false"),
    ({"ID": "0123456789abcdef", "CONFIGURATION": "x"}, "true or false"),
    ({"ID": "0123456789abcdef", "RESPONSEFORMAT": "pdf"}, "PROV-VOTABLE (votable)"),
    ({"ID": "../etc/passwd"}, "16 hexadecimal digits"),
    ({}, "ID is required"),
    ({"ID": "0123456789abcdef", "DEPTH": ["1", "2"]}, "more than once"),
])
def test_bad_values_are_400_naming_the_allowed_ones(srv, params, allowed):
    r = provsap(srv, "alice", **params)
    assert r.status_code == 400 and allowed in r.text, r.text


def test_bad_values_on_a_jobs_provenance(srv, chain):
    url = f"{srv.url}/rest/copy/{chain['j2']}/provenance"
    for params, allowed in (({"format": "gif"}, "svg, png"), ({"DEPTH": "x"}, "or ALL"), ({"MODEL": "x"}, "W3C")):
        r = srv.as_["alice"].get(url, params=params)
        assert r.status_code == 400 and allowed in r.text, r.text
    assert srv.as_["alice"].get(f"{srv.url}/rest/dummy/{chain['j2']}/provenance").status_code == 404
    assert srv.as_["alice"].get(f"{srv.url}/rest/copy/0123456789abcdef/provenance").status_code == 404


def test_a_deleted_job(srv, chain):
    c = chain
    alice = srv.as_["alice"]
    assert alice.delete(f"{srv.url}/rest/dummy/{c['j1']}", allow_redirects=False).status_code == 303
    doc = doc_of(provsap(srv, "alice", ID=c["e2"], DEPTH="ALL"))
    got = summary(doc)
    # the entity stays, with a note; the deleted job's activity is gone, and so is its wasGeneratedBy
    assert got == {"jobs": {c["j2"]}, "entities": {c["e2"], c["e1"]}, "used": {(c["j2"], c["e1"], "infile")},
                   "generated": {(c["e2"], c["j2"])}}
    e1 = next(r for r in doc.get_records(ProvEntity) if str(r.identifier) == f"opus_store:{c['e1']}")
    (comment,) = e1.get_attribute("voprov:comment")
    assert f"generated by job {c['j1']} (dummy), which was deleted" in comment
    assert not e1.get_attribute("prov:location")  # its file went with the job
    assert c["j1"] not in {str(r.identifier) for r in doc.get_records(ProvActivity)}
    assert summary(doc_of(provsap(srv, "alice", ID=c["j1"], DEPTH="ALL")))["jobs"] == set()  # unknown now
    forth = summary(doc_of(provsap(srv, "alice", ID=c["e1"], DEPTH=2, DIRECTION="FORTH")))
    assert forth["jobs"] == {c["j2"]} and forth["entities"] == {c["e1"], c["e2"], c["s2"]}
    w3c = provsap(srv, "alice", ID=c["e1"], DEPTH=0, MODEL="W3C", RESPONSEFORMAT="provn").text
    assert "opus:comment=" in w3c and "which was deleted" in w3c


def test_derivations_and_a_jobs_own_steps(srv):
    j0 = run(srv, "alice", "dummy", {"text": "source"})
    e0 = results(srv, "alice", "dummy", j0)["output"]
    jt = run(srv, "alice", "traced", {"infile": e0["store"]})
    out = results(srv, "alice", "traced", jt)["out"]["entity"]
    job_dir = srv.settings.jobs_dir / jt
    assert (job_dir / "provenance.json").is_file() and not (job_dir / "work" / "provenance.json").exists()
    doc = doc_of(srv.as_["alice"].get(f"{srv.url}/rest/traced/{jt}/provenance"))
    derived = {(str(r.args[0]), str(r.args[1]), str(r.args[2])) for r in doc.get_records(ProvDerivation)}
    assert derived == {(f"opus_store:{out}", f"opus_store:{e0['entity']}", f"opus_job:traced/{jt}")}
    activities = {str(r.identifier) for r in doc.get_records(ProvActivity)}
    assert activities == {f"opus_job:traced/{jt}", "ex:read", "ex:write"}
    starts = {(str(r.args[0]), str(r.args[2])) for r in doc.get_records(ProvStart)}
    assert starts == {("ex:read", f"opus_job:traced/{jt}"), ("ex:write", f"opus_job:traced/{jt}")}
    assert "ex:buffer" in {str(r.identifier) for r in doc.get_records(ProvEntity)}
    params = {str(r.identifier): r.get_attribute("prov:value") for r in doc.get_records(ProvEntity)
              if "/parameters/" in str(r.identifier)}
    assert params == {f"opus_job:traced/{jt}/parameters/level": {"3"}}  # the default, as the script got it
    w3c = srv.as_["alice"].get(f"{srv.url}/rest/traced/{jt}/provenance", params={"MODEL": "W3C", "format": "provn"})
    assert "ex:write" in w3c.text and "voprov" not in w3c.text.lower()
    # a broken file does not break the answer
    (job_dir / "provenance.json").write_text("{not json")
    doc = doc_of(srv.as_["alice"].get(f"{srv.url}/rest/traced/{jt}/provenance"))
    assert {str(r.identifier) for r in doc.get_records(ProvActivity)} == {f"opus_job:traced/{jt}"}


def test_graphs_without_graphviz_are_503(srv, chain, monkeypatch):
    from opus.provenance import writers
    monkeypatch.setattr(writers.shutil, "which", lambda name: None)
    for fmt in ("svg", "png"):
        r = provsap(srv, "alice", ID=chain["e1"], RESPONSEFORMAT=fmt)
        assert r.status_code == 503 and "Graphviz" in r.text, r.text
    assert provsap(srv, "alice", ID=chain["e1"], RESPONSEFORMAT="json").status_code == 200


def test_the_walk_is_the_same_level_by_level_and_in_one_query_on_both_databases(database_url):
    """EntityStore.reachable (DEPTH=ALL, one recursive query) against the level-by-level walk, with the
    access rule, on SQLite and PostgreSQL."""
    engine = create_engine_for(database_url)
    upgrade_schema(engine)
    store = JobStore(engine)
    entities = EntityStore(store)

    def job(owner: str, used: list[str]) -> tuple[str, str]:
        j = Job(job_id=secrets.token_hex(8), jobname="copy", phase=Phase.EXECUTING,
                creation_time=datetime.now(UTC), execution_duration=60, destruction_time=None,
                owner_id=owner, owner_key=f"user:{owner}", jdl_version="1.0")
        store.create(j)
        found = [Result("copy", "copy.dat", "application/octet-stream", 1, secrets.token_hex(32))]
        planned = entities.plan_completion(j, found, {}, [], {"infile": used} if used else {})
        assert store.complete(j.job_id, Phase.COMPLETED, [Phase.EXECUTING], found, entities=planned)
        return j.job_id, planned.entities[0]["entity_id"]

    j1, e1 = job("alice", [])
    j2, e2 = job("alice", [e1])
    j3, e3 = job("root", [e2])       # an admin used alice's result
    j4, e4 = job("alice", [e2])
    alice, root = Identity("alice", owner_key="user:alice"), Identity("root", is_admin=True, owner_key="user:root")

    def walk(who, ids, depth, direction):
        sel = select(store, entities, who, ids, depth, direction)
        return set(sel.jobs), set(sel.entities), {(u[0], u[2]) for u in sel.used}

    for depth in (None, 100):
        assert walk(alice, [e1], depth, "FORTH") == ({j2, j4}, {e1, e2, e4}, {(j2, e1), (j4, e2)})
        assert walk(root, [e1], depth, "FORTH") == ({j2, j3, j4}, {e1, e2, e3, e4},
                                                    {(j2, e1), (j3, e2), (j4, e2)})
        assert walk(root, [e3], depth, "BACK") == ({j3, j2, j1}, {e3, e2, e1}, {(j3, e2), (j2, e1)})
        assert walk(alice, [e4, j3], depth, "BACK") == ({j4, j2, j1}, {e4, e2, e1}, {(j4, e2), (j2, e1)})
        assert walk(alice, [e3], depth, "BACK") == (set(), set(), set())
        assert walk(ANONYMOUS, [e1, j1], depth, "FORTH") == (set(), set(), set())
    assert walk(alice, [j2], 1, "FORTH") == ({j2}, {e2}, set())
    assert walk(alice, [j2], 2, "FORTH") == ({j2, j4}, {e2}, {(j4, e2)})
    engine.dispose()
