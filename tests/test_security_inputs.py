"""Hostile input: injection through parameter values, path traversal through names, forged and
replayed wrapper callbacks, size limits and XML bombs.

Values travel through real jobs of ``jdl/types.json`` (one parameter of every type, each written,
exactly, to its own result file), so that what the script receives is compared byte for byte with
what the client sent.  Every payload that a shell would run touches a canary file, which must
never appear.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from conftest import LiveServer, make_settings

from opus.security import job_token, server_secret
from opus.settings import load_settings
from opus.storage.userstore import UserStore
from opus.useradmin import UserAdmin

TYPES = ("string", "int", "long", "float", "double", "boolean", "anyURI", "dateTime")
CANARY = f"opus-canary-{secrets.token_hex(6)}"
PASSWD_LINE = "root:x:0:0"


# ---- helpers -----------------------------------------------------------------------------------------------
def live_server(tmp_path, **overrides) -> LiveServer:
    server = LiveServer(make_settings(tmp_path, **overrides))
    # Create the server secret before the dispatcher and the test both need it at once: its first
    # creation is not thread-safe (test_the_server_secret_is_created_safely_by_concurrent_threads).
    server_secret(server.settings)
    return server


@pytest.fixture
def server(tmp_path):
    s = live_server(tmp_path, MAX_RUNNING_JOBS=8)
    yield s
    s.stop()


def job_ids(server) -> set[str]:
    return {ref.job_id for ref in server.services.store.list(None, include_archived=True)}


def job_dirs(server) -> set[str]:
    jobs = server.settings.jobs_dir
    return {p.name for p in jobs.iterdir()} if jobs.is_dir() else set()


def tree(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its size (-1 for directories)."""
    out = {}
    for p in root.rglob("*"):
        try:
            out[str(p.relative_to(root))] = p.stat().st_size if p.is_file() and not p.is_symlink() else -1
        except FileNotFoundError:  # removed meanwhile (a job's temporary file)
            pass
    return out


def written_outside_jobs(server, root: Path, before: dict, after: dict) -> list[str]:
    """Paths created or changed under ``root`` that are not in the area of an existing job (nor the
    database or the notification sockets)."""
    data = Path(server.settings.DATA_DIR).relative_to(root)
    jobs = server.settings.jobs_dir.relative_to(root)
    existing = job_ids(server)
    bad = []
    for path, size in after.items():
        if before.get(path) == size:
            continue
        parts = Path(path).parts
        if parts[:len(jobs.parts)] == jobs.parts and len(parts) > len(jobs.parts) and parts[len(jobs.parts)] in existing:
            continue
        if parts[:len(data.parts)] == data.parts and len(parts) > len(data.parts) and (
                parts[len(data.parts)] == "run" or parts[len(data.parts)].startswith("opus.sqlite")):
            continue
        bad.append(path)
    return sorted(bad)


def canaries(tmp_path: Path) -> list[str]:
    found = [str(p) for p in Path("/tmp").glob(f"*{CANARY}*")]
    found += [str(p) for p in tmp_path.rglob(f"*{CANARY}*")]
    found += [str(p) for p in Path.cwd().glob(f"*{CANARY}*")]
    return found


def raw(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """A request whose path goes out exactly as written (requests would normalise dot segments)."""
    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(server.url).port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def wait_phase(url: str, phases, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline:
        phase = requests.get(url + "/phase").text
        if phase in phases:
            return phase
        time.sleep(0.05)
    raise AssertionError(f"{url} never reached {phases} (phase {phase})")


def stop_jobs(server, urls) -> None:
    """Stop the processes of these jobs whatever their phase says (a forged report may have moved a
    running job to a phase that ABORT no longer accepts)."""
    for url in urls:
        job_id = url.rstrip("/").rsplit("/", 1)[1]
        requests.post(url + "/phase", data={"PHASE": "ABORT"})
        manager_id = server.services.store.get_manager_id(job_id)
        if manager_id is not None:
            server.services.manager.abort(job_id, manager_id)


def state(url: str):
    """What a job looks like: the JSON document (parameters, results, phase, times, error)."""
    r = requests.get(url, headers={"Accept": "application/json"})
    return r.json() if r.status_code == 200 else r.status_code


# ---- the injection corpus ------------------------------------------------------------------------------------
def injection_corpus() -> list[str]:
    t = f"/tmp/{CANARY}"
    return [
        f"$(touch {t}-subst)", f"`touch {t}-backtick`", f"; touch {t}-semicolon", f"| touch {t}-pipe",
        f"&& touch {t}-and", f"|| touch {t}-or &", f"'; touch {t}-quote; '", f'"; touch {t}-dquote; "',
        f"x\ntouch {t}-newline\n", f"a\r\ntouch {t}-crlf\r\n", f"$(touch ~/{CANARY}-home)",
        f"${{IFS}}touch${{IFS}}{t}-ifs", f"$(touch {CANARY}-relative)", f"> {t}-redirect",
        f"$(cat /etc/passwd > {t}-passwd)", f"$(touch $OPUS_WORK_DIR/../{CANARY}-jobdir)",
        "*", "/*", "~", "~root", "$HOME", "${HOME}", "$PATH", "$((6*7))", "$'\\x41\\n'", "!!", "!$", "%s%n%x%%",
        "-n", "--", "-e \\x41", "\\", "\\\\n", "'", '"', "{a,b}", "[a-z]*", "?", "\t", " leading and trailing ",
        "", "\u202egnp.exe", "שלום עולם", "مرحبا بالعالم", "🎉💣🚀 👨‍👩‍👧‍👦", "e\u0301\u200b\ufeff\u2028\u2029",
        "\x7f\x85\xa0 allowed in XML 1.0", "\ue000\U0010fffd",
        (f"$(touch {t}-long);`touch {t}-long2`|*~" * 3000)[:100_000],
    ]


#: Values XML 1.0 cannot carry: refused everywhere with 400 (CONTROL characters, NUL, U+FFFE/F).
FORBIDDEN = ["\x00", "a\x00b", f"ok\x00$(touch /tmp/{CANARY}-nul)", "\x01", "\x08", "\x0b", "\x0c",
             "\x1b[31mred", "\x1f", "\ufffe", "\uffff"]

#: Values each type accepts, sent through real jobs (strings take the whole corpus).
VALID = {
    "int": ["0", "42", "-7", "+7", " 42 ", "2147483647", "-2147483648", "0042"],
    "long": ["9223372036854775807", "-9223372036854775808", " 1 ", "\t3\n"],
    "float": ["1.5", "-0.0", "1e-3", "6.02E23", " 2.5 ", "3"],
    "double": ["1.7976931348623157e308", "-2.5e-300", "0", " 7.25\n"],
    "boolean": ["true", "false", "TRUE", " false ", "1", "0", "yes", "no"],
    "dateTime": ["2030-01-01T00:00:00Z", "2030-01-01T00:00:00.123456Z", "2030-01-01 00:00:00",
                 "2030-01-01T01:00:00+01:00", "2030-01-01"],
}
URIS = ["http://example.org/a?b=c&d=$(touch x)#frag", "file:///etc/passwd", "ivo://ivoa.net/std/UWS",
        "javascript:alert(1)", f"http://x/`touch /tmp/{CANARY}-uri`"]


def valid_values() -> dict[str, list[str]]:
    corpus = injection_corpus()
    values = dict(VALID)
    values["string"] = corpus
    values["anyURI"] = URIS + [v for v in corpus if v.strip()]
    return values


UPLOADS = [b"\x00\x01\xff binary $(touch /tmp/" + CANARY.encode() + b"-upload) `x` ; | && * ~\n\r\n",
           b"", "🎉 unicode \u202e\n".encode(), bytes(range(256)) * 64]


def test_injection_corpus_reaches_the_script_byte_for_byte(server, tmp_path):
    values = valid_values()
    n = max(len(v) for v in values.values())
    before = job_ids(server)
    jobs = []
    for i in range(n):
        sent = {f"p_{t}": values[t][i % len(values[t])] for t in TYPES}
        upload = UPLOADS[i // 3 % len(UPLOADS)] if i % 3 == 0 else None
        files = {"p_file": (f"$(touch /tmp/{CANARY}-name).fits", upload)} if upload is not None else None
        r = requests.post(f"{server.url}/rest/types", data={**sent, "PHASE": "RUN"}, files=files,
                          allow_redirects=False)
        assert r.status_code == 303, (i, r.status_code, r.text[:300])
        jobs.append((r.headers["Location"], sent, upload))
    problems = []
    for url, sent, upload in jobs:
        phase = server.wait_final(url, timeout=120)
        if phase != "COMPLETED":
            problems.append(f"{url}: {phase}: {requests.get(url + '/error').text[:300]}")
            continue
        params = {p["id"]: p["value"] for p in
                  requests.get(url + "/parameters", headers={"Accept": "application/json"}).json()}
        for t in TYPES:
            expected = sent[f"p_{t}"].encode("utf-8")
            got = requests.get(f"{url}/results/{t}").content
            if got != expected:
                problems.append(f"{t}: sent {expected[:80]!r}, the script wrote {got[:80]!r}")
            served = requests.get(f"{url}/parameters/p_{t}").content
            if served != expected:
                problems.append(f"{t}: sent {expected[:80]!r}, parameters/p_{t} serves {served[:80]!r}")
            if params.get(f"p_{t}") != sent[f"p_{t}"]:
                problems.append(f"{t}: sent {expected[:80]!r}, the JSON parameters say {params.get(f'p_{t}')!r:.80}")
        if upload is not None:
            if requests.get(f"{url}/results/file").content != upload:
                problems.append(f"{url}: the uploaded file did not reach the script intact")
            if requests.get(f"{url}/parameters/p_file").content != upload:
                problems.append(f"{url}: the uploaded file is not served back intact")
    assert not problems, "\n".join(problems)
    assert len(job_ids(server) - before) == n
    assert not canaries(tmp_path), f"a payload was run by a shell: {canaries(tmp_path)}"


def test_values_of_the_wrong_type_are_refused(server, tmp_path):
    """Injection strings sent as numbers, booleans, dates or empty URIs: 400, nothing created."""
    before = job_ids(server)
    problems = []
    for t in ("int", "long", "float", "double", "boolean", "dateTime", "anyURI"):
        wrong = [v for v in injection_corpus() if t != "anyURI" or not v.strip()]
        for value in wrong:
            r = requests.post(f"{server.url}/rest/types", data={f"p_{t}": value, "PHASE": "RUN"},
                              allow_redirects=False)
            if r.status_code != 400 or f"p_{t}" not in r.text:
                problems.append(f"p_{t}={value[:40]!r}: HTTP {r.status_code} {r.text[:100]!r}")
    assert not problems, "\n".join(problems)
    assert job_ids(server) == before
    assert not canaries(tmp_path)


def test_numbers_are_ascii_numbers(server):
    """An int, long, float or double is what the script's tools can parse: ASCII digits.  Python's
    int()/float() also take other scripts' digits ('١٢٣', '１２３') and digit separators ('1_000');
    those reach the script unchanged, where `[ "$n" -gt 0 ]`, awk or atoi() fail or read 0."""
    problems = []
    for t, values in {"int": ["١٢٣", "１２３", "1_000", "𝟡"], "long": ["٤٢", "1_000_000"],
                      "float": ["١.٥", "１.５", "1_0.5"], "double": ["٣", "2_5.0"]}.items():
        for value in values:
            r = requests.post(f"{server.url}/rest/types", data={f"p_{t}": value}, allow_redirects=False)
            if r.status_code != 400:
                problems.append(f"p_{t}={value!r} accepted (HTTP {r.status_code})")
    assert not problems, "\n".join(problems)


def test_values_xml_cannot_carry_are_refused_everywhere(server, tmp_path):
    """NUL and the other characters XML 1.0 forbids: 400 through every way a value comes in."""
    pending = server.create("types", data={"p_string": "kept"})
    kept = state(pending)
    before = job_ids(server)
    problems = []

    def expect_400(what, r):
        if r.status_code != 400:
            problems.append(f"{what}: HTTP {r.status_code} {r.text[:100]!r}")

    for value in FORBIDDEN:
        for t in TYPES:
            name = f"p_{t}"
            expect_400(f"create {name}={value!r}", requests.post(
                f"{server.url}/rest/types", data={name: value, "PHASE": "RUN"}, allow_redirects=False))
            expect_400(f"create multipart {name}={value!r}", requests.post(
                f"{server.url}/rest/types", files={name: (None, value.encode())}, data={"PHASE": "RUN"},
                allow_redirects=False))
            expect_400(f"parameters {name}={value!r}", requests.post(
                pending + "/parameters", data={name: value}, allow_redirects=False))
            expect_400(f"job URL {name}={value!r}", requests.post(pending, data={name: value}, allow_redirects=False))
            expect_400(f"PUT {name}={value!r}", requests.put(
                f"{pending}/parameters/{name}", data=value.encode(), allow_redirects=False))
        expect_400(f"RUNID={value!r}", requests.post(f"{server.url}/rest/types", data={"RUNID": value},
                                                    allow_redirects=False))
        expect_400(f"undeclared parameter={value!r}", requests.post(
            f"{server.url}/rest/types", data={"extra": value}, allow_redirects=False))
    for body in (b"p_string=%FF", b"p_string=%ED%A0%80", b"p_string=%EF%BF%BF", b"p_st%00ring=x"):
        expect_400(f"raw {body!r}", requests.post(
            f"{server.url}/rest/types", data=body, allow_redirects=False,
            headers={"Content-Type": "application/x-www-form-urlencoded"}))
    assert not problems, "\n".join(problems)
    assert job_ids(server) == before
    assert state(pending) == kept
    assert not canaries(tmp_path)


def test_accepted_values_fit_in_the_scripts_environment(server):
    """MAX_PARAMETER_VALUE counts characters, but Linux caps one environment string at 128 KiB of
    bytes (MAX_ARG_STRLEN): a value under the limit in characters but not in UTF-8 bytes is
    accepted, then the job cannot start ("Argument list too long").  Such a value must be refused
    when it is sent (413, like any value over the limit) or reach the script intact."""
    problems = []
    for value in ("🎉" * 40_000, "é" * 70_000, "€" * 50_000):
        r = requests.post(f"{server.url}/rest/types", data={"p_string": value, "PHASE": "RUN"},
                          allow_redirects=False)
        if r.status_code == 303:
            url = r.headers["Location"]
            phase = server.wait_final(url)
            if phase != "COMPLETED" or requests.get(url + "/results/string").content != value.encode():
                problems.append(f"{len(value)} characters, {len(value.encode())} bytes: accepted, then the job "
                                f"ended {phase}: {requests.get(url + '/error').text[-120:]!r}")
        elif r.status_code not in (400, 413):
            problems.append(f"{len(value)} characters: HTTP {r.status_code}")
    assert not problems, "\n".join(problems)


def test_accepted_values_survive_the_uws_documents(server):
    """What the client sent is what the XML job document says (after XML parsing).  A raw CR in
    element content is read back as LF by every XML parser (XML 1.0 §2.11): it must be written
    as &#13;."""
    values = ["a\r\nb", "c\rd", "tab\tand\nnewline", "<&>\"'", "]]>", " padded "]
    problems = []
    for value in values:
        url = server.create("types", data={"p_string": value})
        root = ET.fromstring(requests.get(url).content)
        ns = {"uws": "http://www.ivoa.net/xml/UWS/v1.0"}
        got = root.find("uws:parameters/uws:parameter[@id='p_string']", ns).text or ""
        if got != value:
            problems.append(f"sent {value!r}, the job document says {got!r}")
        got = ET.fromstring(requests.get(url + "/parameters").content).find("uws:parameter", ns).text or ""
        if got != value:
            problems.append(f"sent {value!r}, the parameters document says {got!r}")
    assert not problems, "\n".join(problems)


# ---- path traversal ------------------------------------------------------------------------------------------------
# An absolute target under /tmp, never a system file: a regression must not damage the machine.
TRAVERSAL_NAMES = ["../x", "..%2fx", "..\\x", f"/tmp/{CANARY}-absolute", "a/b", ".", "..", "../../../../tmp/" + CANARY,
                   "uploads/../x", "p_file/../../x", "", " ", "x\x00y", "~", "$HOME", "*"]


def test_path_traversal_is_refused(server, tmp_path):
    done = server.create("types", data={"p_string": "done"}, files={"p_file": ("in.dat", b"uploaded")}, run=True)
    assert server.wait_final(done) == "COMPLETED"
    job_id = done.rsplit("/", 1)[1]
    job_dir = server.settings.jobs_dir / job_id
    token = json.loads((job_dir / "job.json").read_text())["token"]
    assert token == job_token(server.settings, job_id)
    secret_key = (Path(server.settings.DATA_DIR) / "secret.key").read_text().strip()
    forbidden_text = [token.encode(), secret_key.encode(), PASSWD_LINE.encode(), b'"callback_url"']
    pending = server.create("types", data={"p_string": "pending"}, files={"p_file": ("in.dat", b"first")})
    pending_state = state(pending)
    ids = job_ids(server)
    before = tree(tmp_path)
    problems = []

    def check(what, status, body, allowed=(400, 404)):
        if status not in allowed:
            problems.append(f"{what}: HTTP {status} {body[:100]!r}")
        for text in forbidden_text:
            if text in body:
                problems.append(f"{what}: the answer shows {text[:20]!r}... (a file outside the job's results)")

    # Upload part names and parameter names.
    for name in TRAVERSAL_NAMES:
        r = requests.post(f"{server.url}/rest/types", files={name: ("f.dat", b"evil")}, data={"PHASE": "RUN"},
                          allow_redirects=False)
        check(f"create, upload named {name!r}", r.status_code, r.content, (400,))
        r = requests.post(pending + "/parameters", files={name: ("f.dat", b"evil")}, allow_redirects=False)
        check(f"parameters, upload named {name!r}", r.status_code, r.content, (400,))
        if name:
            r = requests.post(f"{server.url}/rest/types", data={name: "evil", "PHASE": "RUN"}, allow_redirects=False)
            check(f"create, parameter named {name!r}", r.status_code, r.content, (400,))
            r = requests.post(pending, data={name: "evil"}, allow_redirects=False)
            check(f"job URL, parameter named {name!r}", r.status_code, r.content, (400,))
    # Upload file names are never used: a job made with them keeps its file under the part's name.
    for filename in ("../x", f"/tmp/{CANARY}-absolute-file", "..", ".", "a/b", f"../../../../tmp/{CANARY}",
                     "~/.bashrc"):
        r = requests.post(f"{server.url}/rest/types", files={"p_file": (filename, b"evil " + filename.encode())},
                          allow_redirects=False)
        check(f"upload file name {filename!r}", r.status_code, r.content, (303, 400))
        if r.status_code == 303:
            new_id = r.headers["Location"].rsplit("/", 1)[1]
            stored = sorted(str(p.relative_to(server.settings.jobs_dir / new_id))
                            for p in (server.settings.jobs_dir / new_id).rglob("*"))
            if stored != ["uploads", "uploads/p_file"]:
                problems.append(f"upload file name {filename!r}: the job's area holds {stored}")
            ids.add(new_id)
    # Names in URLs, sent exactly as written.
    j = urlsplit(done).path
    p = urlsplit(pending).path
    paths = [
        f"{j}/parameters/..%2f..%2fjob.json", f"{j}/parameters/..%2fjob.json", f"{j}/parameters/%2e%2e",
        f"{j}/parameters/..", f"{j}/parameters/.", f"{j}/parameters/%2e%2e%2f%2e%2e%2fjob.json",
        f"{j}/parameters/p_file%2f..%2f..%2fjob.json", f"{j}/parameters/..%2fuploads%2fp_file",
        f"{j}/results/..%2fjob.json", f"{j}/results/%2e%2e", f"{j}/results/..", f"{j}/results/.",
        f"{j}/results/%2e%2e%2fjob.json", f"{j}/results/..%2f..%2f..%2fsecret.key",
        f"{j}/results/%2fetc%2fpasswd", f"{j}/results/..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        f"{j}/results/string%2f..%2f..%2fjob.json", f"{j}/results/string%00", f"{j}/results/job.json",
        f"{j}/results/report.json", f"{j}/stdout%2f..%2fjob.json", f"{j}/stdout/..%2fjob.json",
        f"{j}/../{job_id}/results/..%2fjob.json", f"{j}/%2e%2e/job.json",
        "/rest/types/..", "/rest/types/%2e%2e", "/rest/types/%2e%2e/stdout", "/rest/types/..%2f..%2fjobs",
        f"/rest/types/..%2f{job_id}/stdout", f"/rest/types/{job_id}%2f..%2f{job_id}/stdout",
        "/rest/types/..%2f..%2fsecret.key/stdout", "/rest/..%2fjdl", "/rest/%2e%2e", "/rest/..%2fsettings",
        "/rest/..", "/rest/..%2f..%2fetc%2fpasswd", "/rest/%2e%2e%2fjdl%2ftypes",
        "/jdl/..%2fjdl", "/jdl/..%2fsettings", "/jdl/..", "/jdl/%2e%2e", "/jdl/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/jdl/%2e%2e%2fsettings.example", "/jdl/types%2f..%2f..%2fsettings.example", "/jdl/types.json",
        "/jdl/types%00", "/jdl/%2fetc%2fpasswd", "/jdl/..%2fopus%2fsettings",
        "/admin/users/..%2f..%2fetc%2fpasswd",
    ]
    for path in paths:
        for method in ("GET", "HEAD"):
            status, body, _ = raw(server, method, path)
            check(f"{method} {path}", status, body, (400, 401, 404))
    # ... and for the methods that change things.
    for path in (f"{p}/parameters/..", f"{p}/parameters/%2e%2e", f"{p}/parameters/..%2f..%2fjob.json",
                 f"{p}/parameters/..%2fuploads%2fp_file", f"{p}/parameters/p_file%2f..%2fx"):
        status, body, _ = raw(server, "PUT", path, b"evil")
        check(f"PUT {path}", status, body)
    for path in ("/rest/types/..", "/rest/types/%2e%2e", f"/rest/types/..%2f{job_id}", "/rest/%2e%2e/x",
                 f"{p}%2f..", f"{p}/..%2f..%2fjobs"):
        status, body, _ = raw(server, "DELETE", path)
        check(f"DELETE {path}", status, body, (400, 404, 405))
        status, body, _ = raw(server, "POST", path, b"ACTION=DELETE",
                              {"Content-Type": "application/x-www-form-urlencoded"})
        check(f"POST ACTION=DELETE {path}", status, body, (400, 404, 405))
    status, body, _ = raw(server, "POST", "/rest/..%2fjdl%2ftypes", b"PHASE=RUN",
                          {"Content-Type": "application/x-www-form-urlencoded"})
    check("POST /rest/..%2fjdl%2ftypes", status, body, (400, 404, 405))

    assert not problems, "\n".join(problems)
    assert state(pending) == pending_state
    assert requests.get(pending + "/parameters/p_file").content == b"first"
    assert requests.get(f"{done}/results/file").content == b"uploaded"
    assert job_ids(server) == ids, "a refused request created a job"
    assert (job_dir / "job.json").is_file() and server.settings.jobs_dir.is_dir()
    assert not written_outside_jobs(server, tmp_path, before, tree(tmp_path))
    assert not any(Path(f"/tmp/{CANARY}{suffix}").exists() for suffix in ("-absolute", "-absolute-file", ""))
    assert not any(p.name in ("x", "evil") for p in tmp_path.rglob("*"))
    assert not canaries(tmp_path)


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
    """A report refused for its results (400) must leave the job as it was.  apply_report moves a
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
    (400), not a server fault: joblist.apply_report indexes it blindly (KeyError, TypeError -> 500),
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


def test_xml_bodies_are_refused_quickly_and_read_nothing(server):
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
                t0 = time.monotonic()
                r = requests.post(url, data=doc, headers=headers, allow_redirects=False, timeout=30)
                elapsed = time.monotonic() - t0
                what = f"{name} as {ctype or 'no Content-Type'} to {url[len(server.url):]}"
                if not 400 <= r.status_code < 500:
                    problems.append(f"{what}: HTTP {r.status_code}")
                if elapsed > 1.0:
                    problems.append(f"{what}: took {elapsed:.2f} s")
                if PASSWD_LINE in r.text or token in r.text:
                    problems.append(f"{what}: the answer shows a file's content")
    grown = rss_bytes() - start_rss
    assert not problems, "\n".join(problems)
    assert grown < 50 * 1024 * 1024, f"memory grew by {grown / 1e6:.0f} MB"
    assert job_ids(server) == ids, "an XML body created a job"
    assert state(pending) == kept
    assert re.fullmatch(r"[0-9a-f]{64}", token)
