"""The REST tree: every resource, method and status code (CHECKLIST §1, §2, §6, §8).

Against the app in-process with the fake manager (``api``): these are about the UWS resources, not
about transport or execution; the one test about a job's processes runs the real manager (``live``).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import pytest
import requests

from conftest import ApiServer, make_settings
from helpers import wait_for
from opus.managers.local import _group_alive
def test_create_answers_303_with_absolute_location(api):
    r = api.http.post(f"{api.url}/rest/dummy", data={"text": "a"}, allow_redirects=False)
    assert r.status_code == 303
    loc = r.headers["Location"]
    assert loc.startswith(api.url + "/rest/dummy/")
    job_id = loc.rsplit("/", 1)[1]
    assert len(job_id) >= 16 and all(c in "0123456789abcdef" for c in job_id)
    assert api.http.get(loc + "/phase").text == "PENDING"


def test_job_ids_are_unique_and_random(api):
    ids = {api.create().rsplit("/", 1)[1] for _ in range(30)}
    assert len(ids) == 30


def test_unknown_jobname_job_and_children_are_404(api):
    url = api.create()
    job_id = url.rsplit("/", 1)[1]
    assert api.http.get(f"{api.url}/rest/nosuchdef").status_code == 404
    assert api.http.post(f"{api.url}/rest/nosuchdef", data={}).status_code == 404
    assert api.http.get(f"{api.url}/rest/dummy/0123456789abcdef").status_code == 404
    assert api.http.get(f"{api.url}/rest/sleep/{job_id}").status_code == 404  # wrong job list
    for child in ("error", "results/nope", "parameters/nope", "stdout", "nosuchchild"):
        r = api.http.get(f"{url}/{child}")
        assert r.status_code == 404, child
        assert r.headers["Content-Type"].startswith("text/plain")


def test_text_children(api):
    url = api.create(data={"RUNID": "my run"})
    for child in ("phase", "executionduration", "destruction", "quote", "owner"):
        r = api.http.get(f"{url}/{child}")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain"), child
    assert api.http.get(url + "/phase").text == "PENDING"
    assert api.http.get(url + "/executionduration").text == "60"  # from the definition
    destruction = api.http.get(url + "/destruction").text
    assert destruction.endswith("Z") and "T" in destruction
    assert api.http.get(url + "/quote").text.endswith("Z")  # dummy declares a quote
    assert api.http.get(url + "/owner").text == ""  # anonymous
    assert "<uws:runId>my run</uws:runId>" in api.http.get(url).text


def test_control_parameter_names_are_case_insensitive(api):
    url = api.create(data={"runid": "x", "ExecutionDuration": "30", "destruction": "2027-01-01T00:00:00"})
    xml = api.http.get(url).text
    assert "<uws:runId>x</uws:runId>" in xml
    assert "<uws:executionDuration>30</uws:executionDuration>" in xml
    assert "<uws:destruction>2027-01-01T00:00:00.000Z</uws:destruction>" in xml
    assert 'id="runid"' not in xml and 'id="ExecutionDuration"' not in xml


def test_set_execution_duration_and_destruction(api):
    url = api.create()
    r = api.http.post(url + "/executionduration", data={"EXECUTIONDURATION": "42"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == url
    assert api.http.get(url + "/executionduration").text == "42"
    soon = (datetime.now(timezone.utc) + timedelta(days=3)).replace(microsecond=789123)
    r = api.http.post(url + "/destruction", data={"DESTRUCTION": soon.strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
                       allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == url
    assert api.http.get(url + "/destruction").text == soon.strftime("%Y-%m-%dT%H:%M:%S.789Z")
    # The server caps what a client may ask for (MAX_DESTRUCTION_INTERVAL, one year by default).
    api.http.post(url + "/destruction", data={"DESTRUCTION": "2999-01-01T00:00:00Z"})
    capped = datetime.strptime(api.http.get(url + "/destruction").text, "%Y-%m-%dT%H:%M:%S.%fZ")
    assert capped.year < 2999
    assert capped.replace(tzinfo=timezone.utc) <= datetime.now(timezone.utc) + timedelta(days=366)


def test_execution_duration_is_capped(tmp_path):
    from conftest import ApiServer, make_settings

    server = ApiServer(make_settings(tmp_path, MAX_EXECUTION_DURATION=100))
    try:
        url = server.create(data={"EXECUTIONDURATION": "5000"})
        assert server.http.get(url + "/executionduration").text == "100"
        server.http.post(url + "/executionduration", data={"EXECUTIONDURATION": "0"})
        assert server.http.get(url + "/executionduration").text == "100"  # unlimited is not allowed
    finally:
        server.stop()


@pytest.mark.parametrize("path,data", [
    ("/executionduration", {"EXECUTIONDURATION": "abc"}),
    ("/executionduration", {"EXECUTIONDURATION": "-5"}),
    ("/executionduration", {}),
    ("/destruction", {"DESTRUCTION": "tomorrow"}),
    ("/destruction", {"DESTRUCTION": "2030-13-01T00:00:00Z"}),
    ("/destruction", {"DESTRUCTION": "2024-05-01 12:00:00x"}),
    ("/phase", {"PHASE": "FOO"}),
    ("/phase", {}),
    ("", {"ACTION": "EXPLODE"}),
    ("", {"PHASE": "SUSPEND"}),
])
def test_malformed_input_is_400(api, path, data):
    url = api.create()
    r = api.http.post(url + path, data=data, allow_redirects=False)
    assert r.status_code == 400, r.text
    assert r.text.strip()


@pytest.mark.parametrize("query", ["WAIT=abc", "WAIT=1&PHASE=nope", "PHASE=RUNNING", "LAST=0", "LAST=x",
                                   "AFTER=yesterday"])
def test_malformed_queries_are_400(api, query):
    url = api.create()
    target = url if query.startswith("WAIT") else f"{api.url}/rest/dummy"
    r = api.http.get(f"{target}?{query}")
    assert r.status_code == 400, (query, r.status_code)


def test_malformed_creation_is_400_and_creates_nothing(api):
    for data in ({"PHASE": "ABORT"}, {"EXECUTIONDURATION": "x"}, {"RUNID": "r" * 65},
                 {"text": ["a", "b"]}, {"bad name!": "x"}):
        r = api.http.post(f"{api.url}/rest/dummy", data=data, allow_redirects=False)
        assert r.status_code == 400, data
    r = api.http.post(f"{api.url}/rest/sleep", data={"seconds": "soon"}, allow_redirects=False)
    assert r.status_code == 400 and "seconds" in r.text
    r = api.http.post(f"{api.url}/rest/sleep", data={"seconds": "-1"}, allow_redirects=False)
    assert r.status_code == 400 and "minimum" in r.text
    assert "jobref" not in api.http.get(f"{api.url}/rest/dummy").text
    assert "jobref" not in api.http.get(f"{api.url}/rest/sleep").text


def test_unsupported_content_type_is_400(api):
    r = api.http.post(f"{api.url}/rest/dummy", data=b'{"a": 1}', headers={"Content-Type": "application/json"},
                       allow_redirects=False)
    assert r.status_code == 400


def test_body_too_large_is_413(tmp_path):
    from conftest import ApiServer, make_settings

    server = ApiServer(make_settings(tmp_path, MAX_BODY_SIZE=1000, MAX_UPLOAD_SIZE=2000))
    try:
        r = server.http.post(f"{server.url}/rest/dummy", data={"text": "x" * 5000}, allow_redirects=False)
        assert r.status_code == 413
        r = server.http.post(f"{server.url}/rest/copy", files={"infile": ("a.bin", b"x" * 5000)},
                             allow_redirects=False)
        assert r.status_code == 413
        assert "jobref" not in server.http.get(f"{server.url}/rest/copy").text
    finally:
        server.stop()


def test_parameters_update_while_pending_only(api):
    url = api.create(data={"text": "one"})
    r = api.http.post(url + "/parameters", data={"text": "two", "extra": "e"}, allow_redirects=False)
    assert r.status_code == 400 and "'extra': job definition 'dummy' has no such parameter" in r.text
    assert api.http.get(url + "/parameters/text").text == "one"  # nothing of a refused update applied
    r = api.http.post(url + "/parameters", data={"text": "two"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == url
    assert api.http.get(url + "/parameters/text").text == "two"
    r = api.http.put(url + "/parameters/text", data="three".encode(), allow_redirects=False)
    assert r.status_code == 303
    assert api.http.get(url + "/parameters/text").text == "three"
    r = api.http.post(url, data={"text": "four"}, allow_redirects=False)  # at the job URL (UWS 1a)
    assert r.status_code == 303
    assert api.http.get(url + "/parameters/text").text == "four"
    api.http.post(url + "/phase", data={"PHASE": "RUN"})
    api.wait_final(url)
    for attempt in (lambda: api.http.post(url + "/parameters", data={"text": "late"}, allow_redirects=False),
                    lambda: api.http.put(url + "/parameters/text", data=b"late", allow_redirects=False),
                    lambda: api.http.post(url, data={"text": "late"}, allow_redirects=False),
                    lambda: api.http.post(url + "/executionduration", data={"EXECUTIONDURATION": "5"},
                                           allow_redirects=False)):
        r = attempt()
        assert r.status_code == 403, r.text
    assert api.http.get(url + "/parameters/text").text == "four"


def test_upload_becomes_by_reference_parameter(api):
    content = bytes(range(256)) * 10
    url = api.create("copy", files={"infile": ("data.bin", content)}, data={"PHASE": "RUN"})
    xml = api.http.get(url + "/parameters").text
    assert f'<uws:parameter id="infile" byReference="true">{url}/parameters/infile</uws:parameter>' in xml
    assert api.http.get(url + "/parameters/infile").content == content
    assert api.wait_final(url) == "COMPLETED"
    assert api.http.get(url + "/results/copy").content == content
    assert api.http.get(url + "/results/size").text.strip() == str(len(content))


def test_run_is_idempotent_and_final_jobs_cannot_run_or_abort(api):
    url = api.create("sleep", data={"seconds": "5"})
    r = api.http.post(url + "/phase", data={"PHASE": "RUN"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == url
    r = api.http.post(url + "/phase", data={"PHASE": "RUN"}, allow_redirects=False)
    assert r.status_code == 303
    r = api.http.post(url, data={"PHASE": "ABORT"}, allow_redirects=False)  # at the job URL (CLI-06)
    assert r.status_code == 303 and r.headers["Location"] == url
    assert api.http.get(url + "/phase").text == "ABORTED"
    for phase in ("RUN", "ABORT"):
        r = api.http.post(url + "/phase", data={"PHASE": phase}, allow_redirects=False)
        assert r.status_code == 403, phase


def test_delete_and_action_delete(api):
    for how in ("DELETE", "ACTION"):
        url = api.create()
        if how == "DELETE":
            r = api.http.delete(url, allow_redirects=False)
        else:
            r = api.http.post(url, data={"action": "delete"}, allow_redirects=False)
        assert r.status_code == 303
        assert r.headers["Location"] == f"{api.url}/rest/dummy"
        assert api.http.get(url).status_code == 404
        assert api.http.delete(url, allow_redirects=False).status_code == 404


def test_delete_executing_job_kills_it_and_removes_files(live):
    url = live.create("sleep", data={"seconds": "30"}, run=True)
    live.http.get(url, params={"WAIT": 10, "PHASE": "QUEUED"})
    job_id = url.rsplit("/", 1)[1]
    job_dir = live.settings.jobs_dir / job_id
    wait_for((job_dir / "script.pgid").exists, 60, "the script to start")
    pgid = int((job_dir / "script.pgid").read_text())
    assert live.http.delete(url, allow_redirects=False).status_code == 303
    assert live.http.get(url).status_code == 404
    wait_for(lambda: not job_dir.exists() and not _group_alive(pgid), 60,
             "the files and processes of the deleted job to go")


def test_job_list_filters(api):
    a = api.create(data={"RUNID": "a"})
    time.sleep(0.01)
    b = api.create(data={"RUNID": "b"}, run=True)
    api.wait_final(b)
    time.sleep(0.01)
    c = api.create(data={"RUNID": "c"})
    ids = [u.rsplit("/", 1)[1] for u in (a, b, c)]

    def listed(query=""):
        xml = api.http.get(f"{api.url}/rest/dummy{query}").text
        return [i for i in xml.split('id="')[1:] for i in [i.split('"')[0]]]

    assert listed() == [ids[2], ids[1], ids[0]]  # newest first
    assert listed("?LAST=2") == [ids[2], ids[1]]
    assert listed("?PHASE=PENDING") == [ids[2], ids[0]]
    assert listed("?PHASE=COMPLETED&PHASE=PENDING") == [ids[2], ids[1], ids[0]]
    assert listed("?phase=COMPLETED") == [ids[1]]  # names are case-insensitive
    created_a = api.http.get(a).text.split("<uws:creationTime>")[1].split("<")[0]
    assert listed(f"?AFTER={created_a}") == [ids[2], ids[1]]  # strictly after
    assert listed(f"?AFTER={created_a[:-1]}") == [ids[2], ids[1]]  # no Z
    assert listed("?AFTER=2000-01-01T00:00:00.123456Z&PHASE=PENDING&LAST=1") == [ids[2]]
    assert listed("?PHASE=ARCHIVED") == []


#: MAX_WAIT of the WAIT test below, far beyond the time it gives each answer: a WAIT answered at all
#: within ANSWERED_WITHIN was answered before its time, with no upper bound on a clock (a busy
#: machine cannot break the test; how fast is bench/'s business).
HOUR = 3600
ANSWERED_WITHIN = 120


def _answered(get: Callable[[], requests.Response]) -> requests.Response:
    """``get()``'s answer, which must come within ANSWERED_WITHIN (the in-process transport has no timeout)."""
    answer: list[requests.Response] = []
    asking = threading.Thread(target=lambda: answer.append(get()), daemon=True)
    asking.start()
    asking.join(ANSWERED_WITHIN)
    assert answer, f"no answer within {ANSWERED_WITHIN} s: held for the WAIT asked"
    return answer[0]


def test_wait_returns_on_change_and_honours_phase(tmp_path):
    api = ApiServer(make_settings(tmp_path, MAX_WAIT=HOUR))
    try:
        url = api.create("sleep", data={"seconds": "0.5"})
        t0 = time.monotonic()
        r = _answered(lambda: api.http.get(url, params={"WAIT": 1}))  # its 1 s, not MAX_WAIT's hour
        assert time.monotonic() - t0 >= 0.9 and "PENDING" in r.text  # held its second: phase unchanged
        # Not in that phase: at once
        r = _answered(lambda: api.http.get(url, params={"WAIT": HOUR, "PHASE": "EXECUTING"}))
        assert "PENDING" in r.text
        api.http.post(url + "/phase", data={"PHASE": "RUN"})
        phase = api.http.get(url + "/phase").text
        seen = [phase]
        while phase not in ("COMPLETED", "ERROR"):  # each change ends the WAIT on the phase before it
            r = _answered(lambda: api.http.get(url, params={"WAIT": HOUR, "PHASE": phase}))
            phase = r.text.split("<uws:phase>")[1].split("<")[0]
            seen.append(phase)
            assert len(seen) < 10, seen
        assert phase == "COMPLETED"
        _answered(lambda: api.http.get(url, params={"WAIT": HOUR}))  # a final job: at once
    finally:
        api.stop()


def test_error_job_has_error_summary_and_error_document(api):
    url = api.create("fail", data={"message": "division by zero"}, run=True)
    assert api.wait_final(url) == "ERROR"
    xml = api.http.get(url).text
    assert '<uws:errorSummary type="fatal" hasDetail="true">' in xml
    assert "division by zero" in xml and "exit status 3" in xml
    r = api.http.get(url + "/error")
    assert r.status_code == 200 and "QUERY_STATUS" in r.text and "division by zero" in r.text
    assert api.http.get(url + "/stderr").text == "division by zero\n"
    assert api.http.get(url + "/stdout").text == "starting\n"


def test_missing_required_parameter_blocks_run(api):
    url = api.create("copy")
    r = api.http.post(url + "/phase", data={"PHASE": "RUN"}, allow_redirects=False)
    assert r.status_code == 400 and "infile" in r.text
    assert api.http.get(url + "/phase").text == "PENDING"


def test_result_served_with_type_size_and_ranges(api):
    url = api.create(data={"text": "0123456789"}, run=True)
    api.wait_final(url)
    r = api.http.get(url + "/results/output")
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Content-Length"] == "11"
    r = api.http.get(url + "/results/output", headers={"Range": "bytes=2-4"})
    assert r.status_code == 206 and r.text == "234"
    assert 'size="11" mime-type="text/plain"' in api.http.get(url + "/results").text


def test_json_representation(api):
    url = api.create(data={"text": "j", "RUNID": "r"})
    r = api.http.get(url, headers={"Accept": "application/json"})
    assert r.headers["Content-Type"] == "application/json"
    data = r.json()
    assert data["jobId"] == url.rsplit("/", 1)[1] and data["phase"] == "PENDING" and data["runId"] == "r"
    assert {"id": "text", "value": "j", "byReference": False} in data["parameters"]
    jobs = api.http.get(f"{api.url}/rest/dummy", headers={"Accept": "application/json"}).json()["jobs"]
    assert jobs[0]["href"] == url
    r = api.http.get(f"{api.url}/rest/dummy/0000000000000000", headers={"Accept": "application/json"})
    assert r.status_code == 404 and "error" in r.json()


def test_xml_is_preferred_to_html_and_json(api):
    url = api.create()
    r = api.http.get(url, headers={"Accept": "text/html,application/xml;q=0.9,*/*;q=0.8"})
    assert r.headers["Content-Type"].startswith("text/xml")
    r = api.http.get(url, headers={"Accept": "application/xml,application/json"})
    assert r.headers["Content-Type"].startswith("text/xml")


def test_methods_not_allowed_are_405(api):
    url = api.create()
    assert api.http.delete(f"{api.url}/rest/dummy").status_code == 405  # the list cannot be deleted
    assert api.http.delete(url + "/results").status_code == 405
    assert api.http.put(url + "/phase", data="RUN").status_code == 405


def test_job_callback_needs_the_job_token(api):
    url = api.create()
    job_id = url.rsplit("/", 1)[1]
    r = api.http.post(f"{api.url}/handler/job_event", json={"job_id": job_id, "phase": "COMPLETED",
                                                               "token": "0" * 64})
    assert r.status_code == 403
    r = api.http.post(f"{api.url}/handler/job_event", data=b"not json")
    assert r.status_code == 400
    assert api.http.get(url + "/phase").text == "PENDING"


def test_destruction_in_the_past_destroys_the_job(api):
    url = api.create()
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    api.http.post(url + "/destruction", data={"DESTRUCTION": past})
    assert api.services.maintenance.destroy_expired() == 1
    assert api.http.get(url).status_code == 404


def test_parameter_count_and_value_size_limits(tmp_path):
    from conftest import ApiServer, make_settings

    server = ApiServer(make_settings(tmp_path, MAX_PARAMETERS=5, MAX_PARAMETER_VALUE=100))
    try:
        r = server.http.post(f"{server.url}/rest/dummy", data={f"p{i}": "x" for i in range(6)}, allow_redirects=False)
        assert r.status_code == 400 and "too many" in r.text
        r = server.http.post(f"{server.url}/rest/dummy", data={"text": "x" * 101}, allow_redirects=False)
        assert r.status_code == 413 and "file upload" in r.text
        assert server.http.post(f"{server.url}/rest/dummy", data={"text": "x" * 100},
                                allow_redirects=False).status_code == 303
    finally:
        server.stop()


def test_a_result_asked_too_early_or_misspelt_says_which(api):
    """A newcomer asking for a result before the job ran got 'has no result', read as a typo."""
    url = api.create("dummy", data={"text": "x"})
    r = api.http.get(url + "/results/output")
    assert r.status_code == 404
    assert "has no result 'output' yet: it is PENDING (start it with POST PHASE=RUN" in r.text, r.text
    api.http.post(url + "/phase", data={"PHASE": "RUN"})
    assert api.wait_final(url) == "COMPLETED"
    r = api.http.get(url + "/results/outptu")
    assert r.status_code == 404 and "has no result 'outptu'; its results: output" in r.text, r.text
    assert api.http.get(url + "/results/output").status_code == 200


def test_a_misspelt_definition_name_gets_the_nearest_names(api):
    r = api.http.post(f"{api.url}/rest/gammapy_map", data={"RA": "83.6"}, allow_redirects=False)
    assert r.status_code == 404
    assert r.text.strip() == ("no job definition named 'gammapy_map'; did you mean 'gammapy_maps'? "
                              "(GET /jdl lists this server's definitions)")
    r = api.http.get(f"{api.url}/rest/Dummy")  # names are case-sensitive
    assert r.status_code == 404 and "did you mean 'dummy'?" in r.text
    r = api.http.get(f"{api.url}/rest/zzzzzz")
    assert r.status_code == 404 and "did you mean" not in r.text and "GET /jdl lists" in r.text


def test_a_wrong_method_says_which_ones_the_url_accepts(api):
    url = api.create("dummy", data={"text": "x"})
    r = api.http.put(url + "/phase", data="RUN")
    assert r.status_code == 405 and r.headers["Allow"]
    allowed = ", ".join(r.headers["Allow"].split(","))
    assert r.text.strip() == f"method PUT not allowed here: this URL accepts {allowed}"
    assert "GET" in allowed and "POST" in allowed


def test_a_missing_input_says_what_it_wants_and_whether_a_job_was_made(api):
    r = api.http.post(f"{api.url}/rest/copy", data={"PHASE": "RUN"}, allow_redirects=False)
    assert r.status_code == 400
    assert r.text.strip() == ("cannot run: required parameter(s) missing: infile (an input: upload a file, or give "
                              "its URL or /store link); no job was created")
    assert "<uws:jobref" not in api.http.get(f"{api.url}/rest/copy").text
    url = api.create("copy")  # PENDING: made, and it stays
    r = api.http.post(url + "/phase", data={"PHASE": "RUN"}, allow_redirects=False)
    assert r.status_code == 400 and r.text.strip().endswith("or /store link)")
    assert api.http.get(url + "/phase").text == "PENDING"


def test_every_bad_value_is_named_in_one_answer(api):
    """A newcomer fixed RA, resent, was told about Dec, resent, then about nxpix."""
    r = api.http.post(f"{api.url}/rest/gammapy_maps", data={"RA": "400", "Dec": "-95", "nxpix": "0"},
                      allow_redirects=False)
    assert r.status_code == 400
    problems = r.text.strip().split("; ")
    assert [p.split(":")[0] for p in problems] == ["parameter 'RA'", "parameter 'Dec'", "parameter 'nxpix'"], r.text


def test_a_misspelt_parameter_name_gets_the_nearest(api):
    r = api.http.post(f"{api.url}/rest/gammapy_maps", data={"nxpixel": "100"}, allow_redirects=False)
    assert r.status_code == 400
    assert r.text.startswith("parameter 'nxpixel': job definition 'gammapy_maps' has no such parameter "
                             "(did you mean 'nxpix'?); its parameters are "), r.text
