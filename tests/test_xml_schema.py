"""Every UWS document OPUS serves is schema-valid and client-friendly, in every phase it reaches.

Checked on each document (CHECKLIST §2.9, §8): validation against ``uws-1.1-offline.xsd`` (UWS-08),
``version="1.1"`` on <job>/<jobs> and never on <results>/<parameters> (UWS-63), ``xmlns:uws``,
``xmlns:xlink`` and ``xmlns:xsi`` declared on the root (CLI-02), absolute ``xlink:href`` URLs
(CLI-03), ``xsi:nil`` rather than empty elements for unset values (UWS-65..67), and the child order
of <job> and <jobref> as in the schema and the samples (UWS-52, UWS-64).

The samples in ``tests/data/uws/samples`` prove the validator itself: the valid ones pass, each
invalid one fails (``noversion.xml`` is schema-valid and is caught by the version rule instead).
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from lxml import etree

import helpers
import uwsschema as U
from conftest import ApiServer, make_settings

from opus.uws import Phase
XSI_NIL = f"{{{U.XSI_NS}}}nil"
XLINK_HREF = f"{{{U.XLINK_NS}}}href"
INSTANTS = ("quote", "creationTime", "startTime", "endTime", "destruction")
REQUIRED_JOB_CHILDREN = ["jobId", "ownerId", "phase", "creationTime", "startTime", "endTime",
                         "executionDuration", "destruction", "parameters", "results"]
FINAL = ("COMPLETED", "ERROR", "ABORTED")


# ---- helpers ---------------------------------------------------------------------------------------------
def fetch(api, url, params=None) -> bytes:
    """GET a UWS container resource: 200, served as XML."""
    r = api.http.get(url, params=params)
    assert r.status_code == 200, (url, r.status_code, r.text)
    ctype = r.headers.get("Content-Type", "").split(";")[0].strip()
    assert ctype in ("text/xml", "application/xml"), (url, ctype)  # UWS-07
    return r.content


def check_document(api, doc: bytes, root_name: str):
    """Validate and apply the rules every UWS document must follow; return the root element."""
    root = U.validate(doc)
    assert root.tag == U.uws(root_name), root.tag
    # CLI-02: the three namespaces are declared on the root element itself.
    assert root.nsmap.get("uws") == U.UWS_NS, root.nsmap
    assert root.nsmap.get("xlink") == U.XLINK_NS, root.nsmap
    assert root.nsmap.get("xsi") == U.XSI_NS, root.nsmap
    # UWS-63: version on <job> and <jobs>, never on <results> or <parameters>.
    if root_name in ("job", "jobs"):
        assert root.get("version") == "1.1", root.attrib
    else:
        assert "version" not in root.attrib, root.attrib
    # CLI-03: every xlink:href is an absolute URL of this server.
    for el in root.iter():
        href = el.get(XLINK_HREF)
        if href is not None:
            parts = urlsplit(href)
            assert parts.scheme in ("http", "https") and parts.netloc, href
            assert href.startswith(api.url + "/"), href
    # UWS-65..67: unset values are xsi:nil, never empty elements; nil elements are empty.
    for el in root.iter(*(U.uws(n) for n in (*INSTANTS, "ownerId"))):
        if el.get(XSI_NIL) == "true":
            assert not (el.text or "").strip() and len(el) == 0, U.parse(doc)
        else:
            assert (el.text or "").strip(), f"empty <{el.tag}> without xsi:nil"
    return root


def child(root, name):
    return root.find(U.uws(name))


def is_nil(el) -> bool:
    return el is not None and el.get(XSI_NIL) == "true"


def check_job(api, job_url: str, phase: str | None = None, params=None):
    """The job document at ``job_url``: all rules, the job order and the phase-dependent instants."""
    root = check_document(api, fetch(api, job_url, params), "job")
    names = U.child_names(root)
    assert U.in_order(names, U.JOB_ORDER), names                     # UWS-64
    for required in REQUIRED_JOB_CHILDREN:                            # CLI-01: parameters always there
        assert required in names, (required, names)
    assert child(root, "jobId").text == job_url.rsplit("/", 1)[1]     # UWS-12
    assert is_nil(child(root, "ownerId"))                             # anonymous (UWS-66)
    got = child(root, "phase").text
    if phase is not None:
        assert got == phase, (got, phase)
    assert not is_nil(child(root, "creationTime"))
    if got in ("PENDING", "QUEUED"):
        assert is_nil(child(root, "startTime")) and is_nil(child(root, "endTime"))
    if got == "EXECUTING":
        assert not is_nil(child(root, "startTime")) and is_nil(child(root, "endTime"))
    if got in FINAL:
        assert not is_nil(child(root, "endTime"))
    if got in ("COMPLETED", "ERROR"):
        assert not is_nil(child(root, "startTime"))
    return root


def check_list(api, jobname: str, params=None):
    root = check_document(api, fetch(api, f"{api.url}/rest/{jobname}", params), "jobs")
    for ref in root:
        assert ref.tag == U.uws("jobref")
        names = U.child_names(ref)
        assert U.in_order(names, U.JOBREF_ORDER), names                # UWS-52
        assert ref.get(XLINK_HREF) == f"{api.url}/rest/{jobname}/{ref.get('id')}"
    return root


def ids_of(jobs_root) -> list[str]:
    return [ref.get("id") for ref in jobs_root]


def phase_of(api, job_url: str) -> str:
    return api.http.get(job_url + "/phase").text


def wait_phase(api, job_url: str, wanted: str, timeout: float = 20) -> None:
    helpers.wait_phase(api.http, job_url, wanted, timeout)


@pytest.fixture
def api_one_slot(tmp_path):
    """A server running one job at a time, so a second job stays QUEUED."""
    server = ApiServer(make_settings(tmp_path, MAX_RUNNING_JOBS=1))
    yield server
    server.stop()


# ---- the validator itself, on the samples ------------------------------------------------------------------
VALID_SAMPLES = sorted(U.SAMPLES.glob("*.xml"))
INVALID_SAMPLES = sorted(p for p in (U.SAMPLES / "invalid").glob("*.xml") if p.name != "noversion.xml")


def test_there_are_samples():
    assert len(VALID_SAMPLES) >= 8 and len(INVALID_SAMPLES) >= 12


@pytest.mark.parametrize("path", VALID_SAMPLES, ids=lambda p: p.name)
def test_valid_sample_validates(path: Path):
    assert U.errors(path) == []


@pytest.mark.parametrize("path", INVALID_SAMPLES, ids=lambda p: p.name)
def test_invalid_sample_fails(path: Path):
    assert U.errors(path), f"{path.name} should not validate"
    with pytest.raises(U.DocumentInvalid):
        U.validate(path)


def test_noversion_sample_is_schema_valid_but_breaks_the_version_rule():
    path = U.SAMPLES / "invalid" / "noversion.xml"
    root = U.validate(path)
    assert root.get("version") is None   # what check_document's version assertion rejects


def test_sample_element_order_is_the_schema_order():
    for name in ("job-pending.xml", "job-completed.xml", "job-error.xml", "spec-example-job.xml"):
        names = U.child_names(U.parse(U.SAMPLES / name))
        assert U.in_order(names, U.JOB_ORDER), (name, names)
    for ref in U.parse(U.SAMPLES / "jobs.xml"):
        assert U.in_order(U.child_names(ref), U.JOBREF_ORDER)
    assert not U.in_order(["phase", "ownerId", "runId"], U.JOBREF_ORDER)   # the helper can say no


def _same_relative_order(ours: list[str], sample: list[str]) -> None:
    common_ours = [n for n in ours if n in sample]
    common_sample = [n for n in sample if n in ours]
    assert common_ours == common_sample, (ours, sample)


# ---- PENDING -----------------------------------------------------------------------------------------------
def test_pending_job_without_run_id(api):
    url = api.create("dummy", {"text": "hello"})
    root = check_job(api, url, "PENDING")
    assert child(root, "runId") is None
    assert not is_nil(child(root, "quote"))          # dummy declares a quote
    assert not is_nil(child(root, "destruction"))
    assert child(root, "executionDuration").text == "60"
    params = child(root, "parameters")
    assert [(p.get("id"), p.text) for p in params] == [("text", "hello")]
    assert len(child(root, "results")) == 0
    assert child(root, "errorSummary") is None
    for sample in ("job-pending.xml", "spec-example-job.xml"):
        _same_relative_order(U.child_names(root), U.child_names(U.parse(U.SAMPLES / sample)))


def test_pending_job_with_run_id_and_tricky_text(api):
    url = api.create("dummy", {"RUNID": "run <1> & \"2\"", "text": "a < b & c > d"})
    root = check_job(api, url, "PENDING")
    assert child(root, "runId").text == "run <1> & \"2\""
    names = U.child_names(root)
    assert names.index("runId") == names.index("jobId") + 1
    _same_relative_order(names, U.child_names(U.parse(U.SAMPLES / "job-pending.xml")))
    assert [p.text for p in child(root, "parameters")] == ["a < b & c > d"]
    # the list shows the runId in jobref order (after phase, before ownerId)
    refs = check_list(api, "dummy")
    (ref,) = list(refs)
    assert U.child_names(ref) == ["phase", "runId", "ownerId", "creationTime"]
    _same_relative_order(U.child_names(ref), U.child_names(U.parse(U.SAMPLES / "jobs.xml")[1]))


def test_pending_job_with_uploaded_file_is_by_reference(api):
    content = b"\x00\x01binary\xff content"
    url = api.create("copy", files={"infile": ("data.bin", content, "application/octet-stream")})
    root = check_job(api, url, "PENDING")
    assert is_nil(child(root, "quote"))              # copy has no quote: nil, not empty
    (param,) = list(child(root, "parameters"))
    assert param.get("id") == "infile"
    assert param.get("byReference") == "true"
    assert param.text == f"{url}/parameters/infile"   # an absolute URL (UWS-21, UWS-39)
    assert api.http.get(param.text).content == content
    proot = check_document(api, fetch(api, url + "/parameters"), "parameters")
    assert [(p.get("id"), p.get("byReference"), p.text) for p in proot] == [
        ("infile", "true", f"{url}/parameters/infile")]
    check_document(api, fetch(api, url + "/results"), "results")


def test_pending_parameters_and_results_documents(api):
    url = api.create("dummy", {"text": "x", "RUNID": "r"})
    proot = check_document(api, fetch(api, url + "/parameters"), "parameters")
    assert [(p.get("id"), p.text) for p in proot] == [("text", "x")]
    rroot = check_document(api, fetch(api, url + "/results"), "results")
    assert len(rroot) == 0


# ---- QUEUED, EXECUTING, ABORTED ----------------------------------------------------------------------------
def test_queued_executing_and_aborted(api_one_slot):
    api = api_one_slot
    first = api.create("sleep", {"seconds": "30"}, run=True)
    second = None
    try:
        wait_phase(api, first, "EXECUTING")
        second = api.create("sleep", {"seconds": "30"}, run=True)
        root = check_job(api, first, "EXECUTING")
        assert not is_nil(child(root, "quote"))
        check_list(api, "sleep", {"PHASE": "EXECUTING"})
        # one slot: the second job waits in QUEUED
        check_job(api, second, "QUEUED")
        queued = check_list(api, "sleep", {"PHASE": "QUEUED"})
        assert ids_of(queued) == [second.rsplit("/", 1)[1]]
        # blocking GET in an active phase returns a valid document too
        check_job(api, second, "QUEUED", params={"WAIT": 0})
    finally:
        for url in (first, second):
            if url is None:
                continue
            r = api.http.post(url + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False)
            assert r.status_code == 303, r.text
    for url in (first, second):
        check_job(api, url, "ABORTED")
        check_document(api, fetch(api, url + "/results"), "results")
        check_document(api, fetch(api, url + "/parameters"), "parameters")
    root = check_job(api, first, "ABORTED")
    assert not is_nil(child(root, "startTime"))
    aborted = check_list(api, "sleep", {"PHASE": "ABORTED"})
    assert sorted(ids_of(aborted)) == sorted(u.rsplit("/", 1)[1] for u in (first, second))


def test_pending_job_aborted(api):
    url = api.create("dummy")
    r = api.http.post(url + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False)
    assert r.status_code == 303
    root = check_job(api, url, "ABORTED")
    assert is_nil(child(root, "startTime"))          # it never started: nil, not empty


def test_execution_duration_exceeded_is_aborted_with_error_summary(api):
    url = api.create("sleep", {"seconds": "30", "EXECUTIONDURATION": "1"}, run=True)
    assert api.wait_final(url, timeout=60) == "ABORTED"
    root = check_job(api, url, "ABORTED")
    assert child(root, "executionDuration").text == "1"
    summary = child(root, "errorSummary")
    assert summary is not None
    assert summary.get("type") in ("fatal", "transient") and summary.get("hasDetail") in ("true", "false")
    assert "executionDuration" in summary.find(U.uws("message")).text
    _same_relative_order(U.child_names(root), U.child_names(U.parse(U.SAMPLES / "spec-example-job.xml")))


# ---- COMPLETED, ERROR --------------------------------------------------------------------------------------
def test_completed_job_with_results(api):
    url = api.create("dummy", {"text": "hi"}, run=True)
    assert api.wait_final(url) == "COMPLETED"
    root = check_job(api, url, "COMPLETED")
    assert child(root, "errorSummary") is None
    (result,) = list(child(root, "results"))
    assert result.get("id") == "output"
    assert result.get(XLINK_HREF) == f"{url}/results/output"
    assert result.get("mime-type") == "text/plain"
    assert result.get("size") == "3"
    assert api.http.get(result.get(XLINK_HREF)).text == "hi\n"
    _same_relative_order(U.child_names(root), U.child_names(U.parse(U.SAMPLES / "job-completed.xml")))
    rroot = check_document(api, fetch(api, url + "/results"), "results")
    assert [(r.get("id"), r.get(XLINK_HREF)) for r in rroot] == [("output", f"{url}/results/output")]
    check_document(api, fetch(api, url + "/parameters"), "parameters")
    # a WAIT on a finished job answers with the same document (at once: test_rest_api's WAIT test)
    check_job(api, url, "COMPLETED", params={"WAIT": 60})


def test_error_job_has_error_summary(api):
    url = api.create("fail", {"message": "broken <pipe> & more"}, run=True)
    assert api.wait_final(url) == "ERROR"
    root = check_job(api, url, "ERROR")
    summary = child(root, "errorSummary")
    assert summary is not None
    assert summary.get("type") == "fatal" and summary.get("hasDetail") == "true"
    assert "broken <pipe> & more" in summary.find(U.uws("message")).text
    assert len(child(root, "results")) == 0
    _same_relative_order(U.child_names(root), U.child_names(U.parse(U.SAMPLES / "job-error.xml")))
    assert api.http.get(url + "/error").status_code == 200     # hasDetail="true" is backed
    check_document(api, fetch(api, url + "/results"), "results")
    check_document(api, fetch(api, url + "/parameters"), "parameters")


# ---- job lists ---------------------------------------------------------------------------------------------
def test_empty_job_list(api):
    root = check_list(api, "dummy")
    assert len(root) == 0
    assert len(check_list(api, "dummy", {"PHASE": "PENDING"})) == 0
    assert len(check_list(api, "dummy", {"LAST": 5})) == 0


def test_job_lists_filtered(api):
    done = api.create("dummy", {"text": "a"}, run=True)
    assert api.wait_final(done) == "COMPLETED"
    failed = api.create("fail", run=True)
    assert api.wait_final(failed) == "ERROR"
    time.sleep(0.005)  # creation times 5 ms apart at least: AFTER can separate them
    pending = api.create("dummy", {"RUNID": "p1"})
    later = api.create("dummy")
    jid = {u: u.rsplit("/", 1)[1] for u in (done, pending, later)}

    everything = check_list(api, "dummy")
    assert sorted(ids_of(everything)) == sorted(jid.values())
    assert ids_of(check_list(api, "dummy", {"PHASE": "COMPLETED"})) == [jid[done]]
    pending_ids = ids_of(check_list(api, "dummy", {"PHASE": "PENDING"}))
    assert sorted(pending_ids) == sorted([jid[pending], jid[later]])
    union = check_list(api, "dummy", [("PHASE", "COMPLETED"), ("PHASE", "PENDING")])
    assert len(union) == 3
    assert len(check_list(api, "dummy", {"PHASE": "ERROR"})) == 0
    assert ids_of(check_list(api, "fail", {"PHASE": "ERROR"})) == [failed.rsplit("/", 1)[1]]
    assert len(check_list(api, "dummy", {"PHASE": "ARCHIVED"})) == 0

    pending_root = check_job(api, pending)
    after = child(pending_root, "creationTime").text
    after_root = check_list(api, "dummy", {"AFTER": "2000-01-01T00:00:00Z"})
    assert len(after_root) == 3
    assert len(check_list(api, "dummy", {"AFTER": "2999-01-01T00:00:00Z"})) == 0
    # jobs created at or after ``pending`` (its creationTime is printed to the millisecond)
    assert jid[done] not in ids_of(check_list(api, "dummy", {"AFTER": after}))
    assert jid[later] in ids_of(check_list(api, "dummy", {"AFTER": after}))

    last = check_list(api, "dummy", {"LAST": 1})
    assert ids_of(last) == [jid[later]]
    combined = check_list(api, "dummy",
                          [("PHASE", "PENDING"), ("LAST", "2"), ("AFTER", "2000-01-01T00:00:00Z")])
    assert ids_of(combined) == [jid[later], jid[pending]]
    # the runId appears in its jobref
    (ref,) = [r for r in everything if r.get("id") == jid[pending]]
    assert ref.find(U.uws("runId")).text == "p1"


def test_hrefs_follow_the_host_the_client_used(api):
    """Absolute URLs are built from the request's Host (no BASE_URL set): still absolute."""
    url = api.create("dummy", {"text": "x"}, run=True)
    assert api.wait_final(url) == "COMPLETED"
    job_id = url.rsplit("/", 1)[1]
    port = urlsplit(api.url).port
    r = requests.get(f"{api.url}/rest/dummy", headers={"Host": f"localhost:{port}"})
    root = U.validate(r.content)
    assert [ref.get(XLINK_HREF) for ref in root] == [f"http://localhost:{port}/rest/dummy/{job_id}"]
    r = requests.get(f"{api.url}/rest/dummy/{job_id}", headers={"Host": f"localhost:{port}"})
    root = U.validate(r.content)
    hrefs = [res.get(XLINK_HREF) for res in root.iter(U.uws("result"))]
    assert hrefs == [f"http://localhost:{port}/rest/dummy/{job_id}/results/output"]


# ---- values that XML cannot carry as given -----------------------------------------------------------------
@pytest.mark.parametrize("data", [{"RUNID": "a\uffffb\x01c"}, {"text": "x\ufffey\x02z"}])
def test_values_xml_cannot_carry_are_refused(api, data):
    """U+FFFE/U+FFFF and C0 controls are not XML 1.0 characters: refused at input (400), never emitted."""
    r = api.http.post(f"{api.url}/rest/dummy", data=data, allow_redirects=False)
    assert r.status_code == 400 and "XML" in r.text
    check_list(api, "dummy")


def test_error_message_with_xml_forbidden_characters_still_gives_valid_xml(api):
    """Server-made text (a script's stderr in an error message) is filtered on output."""
    url = api.create("sleep", {"seconds": "0"})
    job_id = url.rsplit("/", 1)[1]
    api.services.store.set_phase(job_id, Phase.QUEUED, [Phase.PENDING])
    assert api.services.completion.apply(job_id, {"phase": "ERROR", "message": "bad \x1b[31m \uffff end"}) \
        == "applied"
    root = check_job(api, url, "ERROR")
    assert "bad [31m  end" in etree.tostring(root, encoding="unicode")


def test_destruction_before_year_1000_is_a_valid_datetime_or_refused(api):
    """xs:dateTime needs a 4-digit year: DESTRUCTION=0999-... must print as 0999, or be refused."""
    r = api.http.post(f"{api.url}/rest/dummy", data={"DESTRUCTION": "0999-01-01T00:00:00Z"},
                       allow_redirects=False)
    assert r.status_code in (303, 400), r.text
    if r.status_code == 303:
        url = r.headers["Location"]
        root = check_job(api, url, "PENDING")
        assert child(root, "destruction").text.startswith("0999-")
