"""Hostile input: injection through parameter values and path traversal through names.

Values travel through real jobs of ``jdl/types.json`` (one parameter of every type, each written,
exactly, to its own result file), so that what the script receives is compared byte for byte with
what the client sent.  Every payload that a shell would run touches a canary file, which must
never appear.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from opus.auth.identity import job_token
from securityhelpers import (
    TYPES, CANARY, PASSWD_LINE, job_ids, tree, written_outside_jobs, canaries, raw, state, serving,
)


@pytest.fixture
def server(tmp_path):
    yield from serving(tmp_path)


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
        got = ET.fromstring(requests.get(url + "/parameters").content).find("uws:parameter[@id='p_string']", ns).text or ""
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
            if stored != ["inputs.json", "uploads", "uploads/p_file"]:
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
