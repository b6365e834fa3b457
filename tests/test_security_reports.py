"""Hostile input, continued: forged and replayed wrapper callbacks, size limits and XML bombs."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
import requests

from opus.auth.identity import job_token, server_secret
from opus.settings import load_settings
from opus.storage.userstore import UserStore
from opus.auth.admin import UserAdmin
from securityhelpers import (
    PASSWD_LINE, live_server, job_ids, job_dirs, wait_phase, stop_jobs, state, serving,
)


@pytest.fixture
def server(tmp_path):
    yield from serving(tmp_path)


# ---- forged and replayed callbacks -------------------------------------------------------------------------------
def post_event(server, report) -> requests.Response:
    return requests.post(f"{server.url}/handler/job_event", json=report)


@pytest.fixture
def callback_world(tmp_path):
    """One slot for jobs: C completed, D completed then deleted, X aborted, R executing (sleeping),
    Q queued behind R, P pending."""
    server = live_server(tmp_path, MAX_RUNNING_JOBS=1)
    w = {"server": server}
    try:
        w["C"] = server.create("dummy", data={"text": "real"}, run=True)
        w["D"] = server.create("dummy", data={"text": "doomed"}, run=True)
        assert server.wait_final(w["C"]) == "COMPLETED" and server.wait_final(w["D"]) == "COMPLETED"
        root = server.settings.jobs_dir
        w["C_report"] = json.loads((root / w["C"][-16:] / "report.json").read_text())
        w["D_report"] = json.loads((root / w["D"][-16:] / "report.json").read_text())
        assert requests.delete(w["D"], allow_redirects=False).status_code == 303
        w["X"] = server.create("sleep", data={"seconds": "20"}, run=True)
        wait_phase(w["X"], ("EXECUTING",))
        assert requests.post(w["X"] + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False).status_code == 303
        assert server.wait_final(w["X"]) == "ABORTED"
        w["R"] = server.create("sleep", data={"seconds": "20"}, run=True)
        wait_phase(w["R"], ("EXECUTING",))
        w["Q"] = server.create("dummy", data={"text": "queued"}, run=True)
        w["P"] = server.create("dummy", data={"text": "pending"})
        time.sleep(1.2)  # a dispatcher turn: Q stays QUEUED behind R
        assert requests.get(w["Q"] + "/phase").text == "QUEUED"
        for k in "CDXRQP":
            w[k + "id"] = w[k][-16:]
            w[k + "token"] = job_token(server.settings, w[k + "id"])
        yield w
    finally:
        stop_jobs(server, [w[k] for k in ("R", "Q", "X") if k in w])
        server.stop()


def test_forged_and_replayed_callbacks_change_nothing(callback_world):
    w = callback_world
    server = w["server"]
    jobs = {k: w[k] for k in "CXRQP"}
    before = {k: state(u) for k, u in jobs.items()}
    assert before["R"]["phase"] == "EXECUTING" and before["C"]["phase"] == "COMPLETED"
    unknown = "0123456789abcdef"
    real = {k: v for k, v in w["C_report"].items()}  # a genuine COMPLETED report (results and all)
    results = real["results"]
    cases = [
        ("unknown job, another job's token", {"job_id": unknown, "token": w["Ptoken"], "phase": "COMPLETED"}, (403,)),
        ("unknown job, its own HMAC", {"job_id": unknown, "token": job_token(server.settings, unknown),
                                       "phase": "COMPLETED"}, (404,)),
        ("R with P's token", {**real, "job_id": w["Rid"], "token": w["Ptoken"]}, (403,)),
        ("R with C's token", {**real, "job_id": w["Rid"], "token": w["Ctoken"]}, (403,)),
        ("R without a token", {"job_id": w["Rid"], "phase": "COMPLETED", "results": results}, (403,)),
        ("R with an empty token", {"job_id": w["Rid"], "token": "", "phase": "COMPLETED"}, (403,)),
        ("R with a null token", {"job_id": w["Rid"], "token": None, "phase": "ERROR"}, (403,)),
        ("R with its token in a list", {"job_id": w["Rid"], "token": [w["Rtoken"]], "phase": "ERROR"}, (403,)),
        ("R with its token upper-cased", {"job_id": w["Rid"], "token": w["Rtoken"].upper(), "phase": "ERROR"},
         (403,)),
        ("R with its token truncated", {"job_id": w["Rid"], "token": w["Rtoken"][:-1], "phase": "ERROR"}, (403,)),
        ("R with its token and more", {"job_id": w["Rid"], "token": w["Rtoken"] + "0", "phase": "ERROR"}, (403,)),
        ("R's token for R upper-cased", {"job_id": w["Rid"].upper(), "token": w["Rtoken"], "phase": "ERROR"},
         (403, 404)),
        ("R's token for R and a space", {"job_id": w["Rid"] + " ", "token": w["Rtoken"], "phase": "ERROR"},
         (403, 404)),
        ("R's token, the job id in a list", {"job_id": [w["Rid"]], "token": w["Rtoken"], "phase": "ERROR"},
         (400, 403, 404)),
        ("the deleted D's token and real report", {**w["D_report"], "job_id": w["Did"], "token": w["Dtoken"]},
         (403, 404)),
        ("the deleted D's token, EXECUTING", {"job_id": w["Did"], "token": w["Dtoken"], "phase": "EXECUTING"},
         (403, 404)),
        ("P pending: COMPLETED before EXECUTING", {**real, "job_id": w["Pid"], "token": w["Ptoken"]},
         (200, 400, 403, 409)),
        ("P pending: EXECUTING", {"job_id": w["Pid"], "token": w["Ptoken"], "phase": "EXECUTING"},
         (200, 400, 403, 409)),
        ("P pending: ERROR", {"job_id": w["Pid"], "token": w["Ptoken"], "phase": "ERROR", "message": "forged"},
         (200, 400, 403, 409)),
        ("C completed: EXECUTING after COMPLETED", {"job_id": w["Cid"], "token": w["Ctoken"], "phase": "EXECUTING",
                                                    "start_time": "2030-01-01T00:00:00Z"}, (200, 400, 403, 409)),
        ("C completed: ERROR after COMPLETED", {"job_id": w["Cid"], "token": w["Ctoken"], "phase": "ERROR",
                                                "message": "forged"}, (200, 400, 403, 409)),
        ("C completed: its own report replayed", {**real, "job_id": w["Cid"], "token": w["Ctoken"]},
         (200, 400, 403, 409)),
        ("C completed: COMPLETED with other results", {
            "job_id": w["Cid"], "token": w["Ctoken"], "phase": "COMPLETED",
            "results": [{"result_id": "evil", "file_name": "evil.txt", "size": 1}]}, (200, 400, 403, 409)),
        ("X aborted: a real COMPLETED report replayed", {**real, "job_id": w["Xid"], "token": w["Xtoken"]},
         (200, 400, 403, 409)),
        ("X aborted: EXECUTING", {"job_id": w["Xid"], "token": w["Xtoken"], "phase": "EXECUTING"},
         (200, 400, 403, 409)),
        ("C completed: HELD", {"job_id": w["Cid"], "token": w["Ctoken"], "phase": "HELD"}, (200, 400, 403, 409)),
        ("C completed: QUEUED", {"job_id": w["Cid"], "token": w["Ctoken"], "phase": "QUEUED"}, (200, 400, 403, 409)),
        ("X aborted: PENDING", {"job_id": w["Xid"], "token": w["Xtoken"], "phase": "PENDING"}, (200, 400, 403, 409)),
        ("X aborted: UNKNOWN", {"job_id": w["Xid"], "token": w["Xtoken"], "phase": "UNKNOWN"}, (200, 400, 403, 409)),
        ("R: not a UWS phase", {"job_id": w["Rid"], "token": w["Rtoken"], "phase": "DONE"}, (400,)),
        ("R: a SLURM epilog hint on a local server", {"event": "slurm_end", "job_id": w["Rid"], "slurm_job_id": "1",
                                                      "exit_code": "0:0"}, (400, 403, 404)),
        ("R: no phase", {"job_id": w["Rid"], "token": w["Rtoken"]}, (400,)),
    ]
    for file_name in ("../job.json", "/etc/passwd", "..", ".", "a/b", ".hidden", "results/../../job.json",
                      "..\\job.json/"):
        cases.append((f"R: COMPLETED with a result file {file_name!r}", {
            "job_id": w["Rid"], "token": w["Rtoken"], "phase": "COMPLETED",
            "results": [{"result_id": "x", "file_name": file_name, "size": 1}]}, (400,)))
    problems = []
    for what, report, allowed in cases:
        r = post_event(server, report)
        if r.status_code not in allowed:
            problems.append(f"{what}: HTTP {r.status_code} (expected {allowed}) {r.text[:100]!r}")
        if r.status_code == 200 and r.json().get("outcome") == "applied":
            problems.append(f"{what}: applied")
        after = {k: state(u) for k, u in jobs.items()}
        for k in jobs:
            if after[k] != before[k]:
                problems.append(f"{what}: job {k} changed from {before[k]} to {after[k]}")
                before[k] = after[k]
        for text in (w["Ctoken"], w["Rtoken"], w["Ptoken"]):
            if text in r.text:
                problems.append(f"{what}: the answer shows a job token")
    assert requests.get(w["D"]).status_code == 404
    assert not (server.settings.jobs_dir / w["Did"]).exists(), "a report re-created a deleted job's directory"
    assert not problems, "\n".join(problems)


def test_a_refused_report_moves_nothing(callback_world):
    """A report refused for its results (400) must leave the job as it was.  CompletionService.apply moves a
    QUEUED job to EXECUTING ("the EXECUTING report was lost") before it checks the results."""
    w = callback_world
    before = state(w["Q"])
    r = post_event(w["server"], {"job_id": w["Qid"], "token": w["Qtoken"], "phase": "COMPLETED",
                                 "results": [{"result_id": "x", "file_name": "../job.json"}]})
    assert r.status_code == 400
    assert state(w["Q"]) == before


def test_result_ids_are_names_too(callback_world):
    """A result id becomes the last segment of its URL: '/' or '..' in it make a link that leaves
    the job (``.../results/../../x`` is ``/rest/sleep/x``).  Refuse them like file names."""
    w = callback_world
    problems = []
    for result_id in ("../../x", "a/b", "..", ".", ""):
        before = state(w["R"])
        r = post_event(w["server"], {"job_id": w["Rid"], "token": w["Rtoken"], "phase": "COMPLETED",
                                     "results": [{"result_id": result_id, "file_name": "ok.txt", "size": 1}]})
        after = state(w["R"])
        if r.status_code != 400 or after != before:
            problems.append(f"result id {result_id!r}: HTTP {r.status_code}, phase {after['phase']}, "
                            f"results {[x['href'] for x in after['results']] if isinstance(after['results'], list) else after['results']}")
            break  # R has moved on: later cases would prove nothing
    assert not problems, "\n".join(problems)


def test_malformed_reports_are_400(callback_world):
    """A report whose results are not a list of {result_id, file_name} objects is malformed input
    (400), not a server fault: CompletionService.apply indexes it blindly (KeyError, TypeError -> 500),
    and a 5xx makes a wrapper retry the same report for CALLBACK_RETRY_SECONDS."""
    w = callback_world
    problems = []
    for results in ([{"file_name": "x.txt"}], "abc", [{"result_id": "r", "file_name": None}], [["r", "x"]], {"r": 1}):
        before = state(w["R"])
        r = post_event(w["server"], {"job_id": w["Rid"], "token": w["Rtoken"], "phase": "COMPLETED",
                                     "results": results})
        if r.status_code != 400 or state(w["R"]) != before:
            problems.append(f"results {results!r}: HTTP {r.status_code} {r.text.strip()[:60]!r}")
    assert not problems, "\n".join(problems)


def test_a_valid_token_cannot_move_a_job_against_the_transition_table(tmp_path):
    """The wrapper only ever reports EXECUTING, COMPLETED, ERROR or ABORTED.  A report with the
    job's own token naming another phase must not move the job where the UWS transition table
    (opus/uws.py TRANSITIONS) does not allow: EXECUTING -> PENDING / QUEUED / ARCHIVED, PENDING ->
    SUSPENDED / ARCHIVED."""
    server = live_server(tmp_path, MAX_RUNNING_JOBS=4)
    started = []
    problems = []
    try:
        for target in ("PENDING", "QUEUED", "ARCHIVED"):
            url = server.create("sleep", data={"seconds": "20"}, run=True)
            started.append(url)
            wait_phase(url, ("EXECUTING",))
            job_id = url[-16:]
            r = post_event(server, {"job_id": job_id, "token": job_token(server.settings, job_id), "phase": target})
            phase = requests.get(url + "/phase").text
            if phase != "EXECUTING":
                problems.append(f"EXECUTING job, report {target}: HTTP {r.status_code} {r.text.strip()}, now {phase}")
        for target in ("SUSPENDED", "ARCHIVED"):
            url = server.create("dummy")
            job_id = url[-16:]
            r = post_event(server, {"job_id": job_id, "token": job_token(server.settings, job_id), "phase": target})
            phase = requests.get(url + "/phase").text
            if phase != "PENDING":
                problems.append(f"PENDING job, report {target}: HTTP {r.status_code} {r.text.strip()}, now {phase}")
    finally:
        stop_jobs(server, started)
        server.stop()
    assert not problems, "\n".join(problems)


def test_the_server_secret_is_created_safely_by_concurrent_threads(tmp_path):
    """The callback tokens and the credential cache hang on one secret, generated on first use.
    Threads of one process (request threads, the dispatcher) that need it at the same moment must
    all get it: _file_secret's temporary name holds only the pid, so the second thread's O_EXCL
    open fails with FileExistsError (a 500, or a job that cannot start)."""
    failures = []
    for attempt in range(10):
        settings = load_settings(None, DATA_DIR=str(tmp_path / f"d{attempt}"))
        barrier = threading.Barrier(8)
        got, errors = [], []

        def need_secret(barrier=barrier, got=got, errors=errors, settings=settings):
            barrier.wait()
            try:
                got.append(server_secret(settings))
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(exc))

        threads = [threading.Thread(target=need_secret) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors or len(set(got)) != 1:
            failures.append(f"attempt {attempt}: {len(errors)} thread(s) failed ({errors[:1]}), "
                            f"{len(set(got))} distinct secret(s)")
    assert not failures, "\n".join(failures)


# ---- limits ------------------------------------------------------------------------------------------------------
BODY_LIMIT = 64_000
UPLOAD_LIMIT = 256_000


@pytest.fixture
def limited(tmp_path):
    server = live_server(tmp_path, MAX_BODY_SIZE=BODY_LIMIT, MAX_UPLOAD_SIZE=UPLOAD_LIMIT)
    _, token = UserAdmin(UserStore(server.services.store.engine)).add("root", admin=True)
    server.admin_headers = {"Authorization": f"Bearer {token}"}
    yield server
    server.stop()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def multipart(name: str, size: int, boundary: str = "b0undary") -> tuple[bytes, dict]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"big.dat\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + b"y" * size + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def chunks(body: bytes):
    for i in range(0, len(body), 16384):
        yield body[i:i + 16384]


def test_bodies_over_max_body_size_are_413(limited):
    """README: 413 for "a body or upload over the configured limits" -- on every endpoint."""
    s = limited
    job = s.create("dummy", data={"text": "kept"})
    upload_job = s.create("copy", files={"infile": ("in.dat", b"kept")})
    kept = state(job), state(upload_job)
    ids = job_ids(s)
    big = b"text=" + b"q" * BODY_LIMIT
    problems = []
    requests_ = [
        ("POST /rest/dummy", "POST", f"{s.url}/rest/dummy", big, FORM),
        ("POST job", "POST", job, big, FORM),
        ("POST parameters", "POST", job + "/parameters", big, FORM),
        ("POST phase", "POST", job + "/phase", b"PHASE=RUN&x=" + b"q" * BODY_LIMIT, FORM),
        ("POST executionduration", "POST", job + "/executionduration", b"EXECUTIONDURATION=1&x=" + b"q" * BODY_LIMIT,
         FORM),
        ("POST destruction", "POST", job + "/destruction", b"DESTRUCTION=2031-01-01&x=" + b"q" * BODY_LIMIT, FORM),
        ("PUT parameters/text", "PUT", job + "/parameters/text", b"q" * (BODY_LIMIT + 1), {}),
        ("PUT parameters/infile (an upload)", "PUT", upload_job + "/parameters/infile", b"q" * (UPLOAD_LIMIT + 1), {}),
        ("POST /handler/job_event", "POST", f"{s.url}/handler/job_event",
         json.dumps({"job_id": job[-16:], "phase": "COMPLETED", "x": "q" * BODY_LIMIT}).encode(),
         {"Content-Type": "application/json"}),
        ("POST /admin/users", "POST", f"{s.url}/admin/users",
         json.dumps({"name": "big", "jobDefinitions": ["q" * BODY_LIMIT]}).encode(),
         {"Content-Type": "application/json", **s.admin_headers}),
        ("POST /rest/copy (upload)", "POST", f"{s.url}/rest/copy", *multipart("infile", UPLOAD_LIMIT + 1)),
        ("POST parameters (upload)", "POST", upload_job + "/parameters", *multipart("infile", UPLOAD_LIMIT + 1)),
    ]
    for what, method, url, body, headers in requests_:
        r = requests.request(method, url, data=body, headers=headers, allow_redirects=False)
        if r.status_code != 413:
            problems.append(f"{what} with {len(body)} bytes: HTTP {r.status_code} {r.text.strip()[:80]!r}")
    assert not problems, "\n".join(problems)
    assert (state(job), state(upload_job)) == kept
    assert job_ids(s) == ids
    assert "big" not in requests.get(f"{s.url}/admin/users", headers=s.admin_headers).text


def test_uploads_over_max_upload_size_are_413_and_leave_nothing(limited):
    s = limited
    ids, dirs = job_ids(s), job_dirs(s)
    body, headers = multipart("infile", UPLOAD_LIMIT + 1)
    # With a Content-Length, refused before reading; chunked, refused while streaming to disk.
    for what, data in (("Content-Length", body), ("chunked", chunks(body))):
        r = requests.post(f"{s.url}/rest/copy", data=data, headers=headers, allow_redirects=False)
        assert r.status_code == 413, (what, r.status_code, r.text)
        assert job_ids(s) == ids, f"{what}: a job was created"
        assert job_dirs(s) == dirs, f"{what}: a half-created job directory was left: {job_dirs(s) - dirs}"
    # Two parts, the second over the limit: the first one's file goes too.
    two = b'--b0undary\r\nContent-Disposition: form-data; name="first"; filename="a"\r\n\r\nsmall\r\n' + body
    r = requests.post(f"{s.url}/rest/copy", data=chunks(two), headers=headers, allow_redirects=False)
    assert r.status_code == 413, r.text
    assert job_ids(s) == ids and job_dirs(s) == dirs
    # Just under the limit is fine.
    body, headers = multipart("infile", UPLOAD_LIMIT - 200)
    assert requests.post(f"{s.url}/rest/copy", data=body, headers=headers, allow_redirects=False).status_code == 303


def test_an_oversized_upload_leaves_the_previous_one_intact(limited):
    """Replacing an uploaded file with one over MAX_UPLOAD_SIZE (chunked, so that the size is
    only found while streaming) answers 413 -- and must leave the stored file as it was."""
    s = limited
    problems = []
    body, headers = multipart("infile", UPLOAD_LIMIT + 1)
    for what, method, path, data, hdrs in (
            ("POST parameters, chunked multipart", "POST", "/parameters", chunks(body), headers),
            ("PUT parameters/infile, chunked", "PUT", "/parameters/infile", chunks(b"z" * (UPLOAD_LIMIT + 1)), {})):
        url = s.create("copy", files={"infile": ("in.dat", b"GOOD DATA")})
        r = requests.request(method, url + path, data=data, headers=hdrs, allow_redirects=False)
        stored = requests.get(url + "/parameters/infile").content
        if r.status_code != 413 or stored != b"GOOD DATA":
            problems.append(f"{what}: HTTP {r.status_code}; the stored upload is now {len(stored)} bytes "
                            f"{stored[:20]!r} (was b'GOOD DATA')")
    assert not problems, "\n".join(problems)


def test_chunked_bodies_respect_max_body_size(limited):
    """Without a Content-Length the size check in web.py (and the ones in vosi.py, admin_routes.py)
    sees -1 and lets any chunked body through: it is read whole, into memory for job_event."""
    s = limited
    ids = job_ids(s)
    problems = []
    # Many short fields: no single value reaches MAX_PARAMETER_VALUE, the body is twice MAX_BODY_SIZE.
    big_form = b"&".join(b"x%d=" % i + b"q" * 1000 for i in range(2 * BODY_LIMIT // 1000))
    big_json = json.dumps({"job_id": "0" * 16, "phase": "COMPLETED", "x": "q" * (4 * 1024 * 1024)}).encode()
    for what, url, data, headers in (
            ("POST /rest/dummy", f"{s.url}/rest/dummy", big_form, FORM),
            ("POST /handler/job_event", f"{s.url}/handler/job_event", big_json, {"Content-Type": "application/json"}),
            ("POST /admin/users", f"{s.url}/admin/users", json.dumps({"name": "q" * (2 * BODY_LIMIT)}).encode(),
             {"Content-Type": "application/json", **s.admin_headers})):
        r = requests.post(url, data=chunks(data), headers=headers, allow_redirects=False)
        if r.status_code != 413:
            problems.append(f"{what}, {len(data)} bytes chunked: HTTP {r.status_code} {r.text.strip()[:80]!r}")
    assert not problems, "\n".join(problems)
    assert job_ids(s) == ids


# ---- XML ---------------------------------------------------------------------------------------------------------
def rss_bytes() -> int:
    """Resident memory of this process, which serves the live server's requests."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def xml_bombs(target: Path) -> dict[str, bytes]:
    lol = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    return {
        "XXE": (f'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY pw SYSTEM "file:///etc/passwd">'
                f'<!ENTITY job SYSTEM "file://{target}">]>\n<r><text>&pw;&job;</text></r>').encode(),
        "XXE parameter entity": (f'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY % ext SYSTEM "file://{target}">'
                                 '%ext;]><r/>').encode(),
        "billion laughs": ('<?xml version="1.0"?>\n<!DOCTYPE lolz [' + "".join(lol) + ']>\n<lolz>&lol9;</lolz>').encode(),
        "quadratic blowup": ('<?xml version="1.0"?>\n<!DOCTYPE k [<!ENTITY a "' + "A" * 20_000 + '">]>\n<k>'
                             + "&a;" * 10_000 + "</k>").encode(),
    }


def test_xml_bodies_are_refused_and_read_nothing(server):
    """XML bombs and external entities in every place a body is read: a 4xx, no file content in the
    answer, and no expansion (the server's memory stays flat).  Asserted on what was allocated and
    answered, not on elapsed time, which a busy machine stretches."""
    done = server.create("dummy", data={"text": "x"}, run=True)
    assert server.wait_final(done) == "COMPLETED"
    job_json = server.settings.jobs_dir / done[-16:] / "job.json"
    token = json.loads(job_json.read_text())["token"]
    ids = job_ids(server)
    pending = server.create("dummy", data={"text": "kept"})
    kept = state(pending)
    ids.add(pending[-16:])
    start_rss = rss_bytes()
    problems = []
    for name, doc in xml_bombs(job_json).items():
        for ctype in ("application/xml", "text/xml", "application/x-www-form-urlencoded", "", "application/json"):
            headers = {"Content-Type": ctype} if ctype else {}
            for url in (f"{server.url}/rest/dummy", f"{server.url}/rest/dummy?PHASE=RUN",
                        f"{server.url}/handler/job_event", pending, pending + "/parameters"):
                r = requests.post(url, data=doc, headers=headers, allow_redirects=False, timeout=30)
                what = f"{name} as {ctype or 'no Content-Type'} to {url[len(server.url):]}"
                if not 400 <= r.status_code < 500:
                    problems.append(f"{what}: HTTP {r.status_code}")
                if PASSWD_LINE in r.text or token in r.text:
                    problems.append(f"{what}: the answer shows a file's content")
    grown = rss_bytes() - start_rss
    assert not problems, "\n".join(problems)
    assert grown < 50 * 1024 * 1024, f"memory grew by {grown / 1e6:.0f} MB"
    assert job_ids(server) == ids, "an XML body created a job"
    assert state(pending) == kept
    assert re.fullmatch(r"[0-9a-f]{64}", token)
