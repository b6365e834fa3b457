"""Issue 11, findings 5 and 6: the cost of a request before authentication is bounded.

Each attack goes through HTTP to a live server: bodies over a route's ceiling (answered 413 before
the body is read, or after at most limit + 1 bytes of a chunked one), forms of 100,000 fields or
parts (refused while parsing), JSON nested 100,000 deep (400, never a 500 from a RecursionError).
The last tests show that what is legitimate still works: jobs, uploads up to MAX_UPLOAD_SIZE, and
a report too large for the callback.
"""

from __future__ import annotations

import io
import json
import random
import socket
import sys
from urllib.parse import urlsplit

import pytest
import requests
from conftest import LiveServer, make_settings, run_job, signed_in_sessions

from opus.safejson import MAX_JSON_DEPTH, json_depth
from opus.server.limits import SIGNIN_BODY_LIMIT, route_limits
PARTS = 100_000
MIB = 1024 * 1024


def tiny_parts(n: int, boundary: str = "b0", filename: bool = False) -> bytes:
    disposition = 'form-data; name="x"' + ('; filename="f"' if filename else "")
    return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n\r\n".encode() * n + f"--{boundary}--\r\n".encode()


def multipart_headers(boundary: str = "b0") -> dict:
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def chunked(data: bytes, size: int = 16 * 1024) -> bytes:
    """``data`` in HTTP/1.1 chunked framing, without the final zero-size chunk."""
    return b"".join(b"%x\r\n" % len(data[i:i + size]) + data[i:i + size] + b"\r\n" for i in range(0, len(data), size))


def partial_request(server, method: str, path: str, headers: dict, sent: bytes, timeout: float = 15) -> tuple[int, bytes]:
    """Send the request head and only ``sent`` of the body, then read the answer.  A server that
    refuses before reading the rest answers; one that waits for the rest never does (AssertionError)."""
    port = urlsplit(server.url).port
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode() + sent)
        answer = b""
        try:
            while True:
                block = sock.recv(65536)
                if not block:
                    break
                answer += block
        except TimeoutError:
            if not answer:
                raise AssertionError(f"{method} {path}: no answer while the server waits for the rest "
                                     "of the body") from None
        except ConnectionResetError:  # the server closed with our body unread, after answering
            pass
    assert answer.startswith(b"HTTP/1."), answer[:200]
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


class CountingInput:
    """wsgi.input that counts the bytes the application read from it."""

    def __init__(self, stream, counter: list):
        self.stream, self.counter = stream, counter

    def read(self, *args):
        data = self.stream.read(*args)
        self.counter[0] += len(data)
        return data

    def readline(self, *args):
        data = self.stream.readline(*args)
        self.counter[0] += len(data)
        return data


def count_body_reads(server) -> list:
    counter = [0]
    inner = server.app

    def app(environ, start_response):
        environ["wsgi.input"] = CountingInput(environ["wsgi.input"], counter)
        return inner(environ, start_response)

    server.app = app
    return counter


# ---- body ceilings per route -------------------------------------------------------------------------------
def test_signin_refuses_100000_parts_before_reading_them(live):
    """The public sign-in form took any multipart body up to MAX_UPLOAD_SIZE and parsed it in full;
    now its Content-Length alone is enough for a 413: the test sends 64 KiB of the 4.5 MB and the
    server answers without waiting for the rest."""
    body = tiny_parts(PARTS)
    headers = {**multipart_headers(), "Content-Length": str(len(body))}
    status, answer = partial_request(live, "POST", "/web/signin", headers, body[:64 * 1024])
    assert status == 413, answer[:300]
    assert f"limit of {SIGNIN_BODY_LIMIT} bytes".encode() in answer


def test_signin_reads_at_most_its_limit_of_a_chunked_body(live):
    """Chunked, the size is unknown: the server reads limit + 1 bytes and stops (before: it read the
    whole body, to disk, then parsed every part)."""
    counter = count_body_reads(live)
    body = tiny_parts(PARTS)
    headers = {**multipart_headers(), "Transfer-Encoding": "chunked"}
    status, answer = partial_request(live, "POST", "/web/signin", headers, chunked(body[:256 * 1024]))
    assert status == 413, answer[:300]
    assert counter[0] <= SIGNIN_BODY_LIMIT + 1 + 64, f"the server read {counter[0]} bytes"


def test_job_event_takes_a_few_hundred_kib(live):
    """/handler/job_event is public and was read up to MAX_BODY_SIZE (1 MiB) before the token was
    checked: now MAX_REPORT_SIZE, with a Content-Length or chunked."""
    limit = live.settings.MAX_REPORT_SIZE
    assert limit < MIB
    body = json.dumps({"job_id": "0" * 16, "token": "x", "phase": "COMPLETED", "message": ""}).encode()
    body = body[:-2] + b" " * (MIB - len(body)) + body[-2:]  # a valid report of exactly 1 MiB
    r = requests.post(f"{live.url}/handler/job_event", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, (r.status_code, r.text)
    counter = count_body_reads(live)
    status, answer = partial_request(live, "POST", "/handler/job_event",
                                     {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                                     chunked(body[:limit + 64 * 1024]))
    assert status == 413, answer[:300]
    assert counter[0] <= limit + 1 + 1024, f"the server read {counter[0]} bytes"  # the data, and its framing


def test_multipart_is_for_upload_routes_only(tmp_path):
    """A multipart body took MAX_UPLOAD_SIZE on every route; now only job creation and parameters
    take more than MAX_BODY_SIZE, and there uploads work up to MAX_UPLOAD_SIZE exactly."""
    upload_limit = 3 * MIB
    server = LiveServer(make_settings(tmp_path, MAX_UPLOAD_SIZE=upload_limit))
    try:
        job = server.create("dummy")
        big = tiny_parts(1, "b1")[:-8] + b"-" * (MIB + 1024) + b"\r\n--b1--\r\n"
        phase_form = b'--b1\r\nContent-Disposition: form-data; name="PHASE"\r\n\r\nRUN\r\n' + big
        r = requests.post(job + "/phase", data=phase_form, headers=multipart_headers("b1"), allow_redirects=False)
        assert r.status_code == 413, (r.status_code, r.text)
        assert requests.get(job + "/phase").text == "PENDING"

        head = b'--b1\r\nContent-Disposition: form-data; name="infile"; filename="in.dat"\r\n\r\n'
        tail = b"\r\n--b1--\r\n"
        content = random.Random(5).randbytes(upload_limit - len(head) - len(tail))  # 3 MiB in 10 ms, not 16 s
        body = head + content + tail
        assert len(body) == upload_limit
        r = requests.post(f"{server.url}/rest/copy", data=body, headers=multipart_headers("b1"),
                          allow_redirects=False)
        assert r.status_code == 303, r.text
        url = r.headers["Location"]
        assert requests.get(url + "/parameters/infile").content == content
        r = requests.post(f"{server.url}/rest/copy", data=head + content + b"!" + tail,
                          headers=multipart_headers("b1"), allow_redirects=False)
        assert r.status_code == 413, r.text
    finally:
        server.stop()


def test_every_route_limit_names_a_real_route(live):
    """The table of ceilings is keyed by route rule: a renamed route must not silently fall back
    to MAX_BODY_SIZE (or lose its upload ceiling)."""
    routes = {(r.method, r.rule) for r in live.app.routes}
    missing = set(route_limits(live.settings)) - routes
    assert not missing


# ---- fields and parts counted while parsing ----------------------------------------------------------------
@pytest.mark.parametrize("filename", [False, True], ids=["fields", "files"])
def test_multipart_parts_are_capped_while_parsing(live, filename):
    """100,000 tiny parts to job creation (which takes large bodies) were all parsed, then refused
    as too many parameters; the parser now stops at the first part over MAX_FORM_PARTS."""
    cap = live.settings.max_form_parts
    body = tiny_parts(PARTS, filename=filename)
    r = requests.post(f"{live.url}/rest/dummy", data=body, headers=multipart_headers(), allow_redirects=False)
    assert r.status_code == 400, r.text
    assert f"more than {cap} parts" in r.text
    # A form at the cap is parsed: what is refused then is the parameters, by their own rule.
    body = tiny_parts(cap, filename=filename)
    r = requests.post(f"{live.url}/rest/dummy", data=body, headers=multipart_headers(), allow_redirects=False)
    assert r.status_code == 400 and "too many parameters" in r.text, r.text
    r = requests.post(f"{live.url}/rest/dummy", files={"text": (None, "hello"), "RUNID": (None, "r")},
                      allow_redirects=False)
    assert r.status_code == 303, r.text


def test_urlencoded_fields_are_capped_before_parsing(live):
    cap = live.settings.max_form_parts
    body = b"&".join([b"x="] * PARTS)
    r = requests.post(f"{live.url}/rest/dummy", data=body, allow_redirects=False,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400, r.text
    assert f"more than {cap} fields" in r.text


def test_malformed_multipart_bodies_are_400(live):
    """What the new parser refuses is a 400 naming the problem, never a 500."""
    part = '--b0\r\nContent-Disposition: form-data; name="text"\r\n{}\r\nab\xff\r\n--b0--\r\n'
    for what, body, ctype in (
            ("unknown part charset", part.format("Content-Type: text/plain; charset=nonexistent\r\n"), None),
            ("undecodable value", part.format(""), None),
            ("no final boundary", '--b0\r\nContent-Disposition: form-data; name="text"\r\n\r\nab', None),
            ("no boundary at all", "text=x", None),
            ("no boundary parameter", part.format(""), "multipart/form-data"),
            ("unknown form charset", part.format(""), "multipart/form-data; boundary=b0; charset=nonexistent"),
            ("too many part headers", part.format("X-A: 1\r\n" * 20), None)):
        r = requests.post(f"{live.url}/rest/dummy", data=body.encode("latin-1"),
                          headers={"Content-Type": ctype or "multipart/form-data; boundary=b0"}, allow_redirects=False)
        assert r.status_code == 400 and "multipart" in r.text, (what, r.status_code, r.text)


# ---- JSON depth ----------------------------------------------------------------------------------------------
def test_deeply_nested_json_is_a_400_everywhere(live):
    """100,000 nested arrays made json.loads raise RecursionError: a 500 on /handler/job_event and
    /admin/users.  Now 400, decided before json.loads, for anything deeper than MAX_JSON_DEPTH."""
    sessions = signed_in_sessions(live, users=(("root", {"admin": True}),))
    deep = b"[" * PARTS + b"]" * PARTS
    report = b'{"job_id": "0000000000000000", "token": "x", "phase": "COMPLETED", "x": ' + deep + b"}"
    admin_body = b'{"name": "deep", "jobDefinitions": ' + deep + b"}"
    for what, http, path, body in (("job_event", requests, "/handler/job_event", deep),
                                   ("job_event in a report", requests, "/handler/job_event", report),
                                   ("admin", sessions["root"], "/admin/users", admin_body),
                                   ("jdl", sessions["root"], "/jdl?format=json", b'{"name": "deep", "x": ' + deep + b"}")):
        r = http.post(live.url + path, data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (what, r.status_code, r.text[:200])
        assert f"nested deeper than {MAX_JSON_DEPTH}" in r.text, (what, r.text[:200])
    # At the limit: read, then refused for what it says (the token), not for its shape.
    at_limit = (b'{"job_id": "0000000000000000", "token": "x", "phase": "COMPLETED", "x": '
                + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}")
    r = requests.post(f"{live.url}/handler/job_event", data=at_limit, headers={"Content-Type": "application/json"})
    assert r.status_code == 403, r.text
    one_more = at_limit.replace(b"[", b"[[", 1).replace(b"]", b"]]", 1)
    r = requests.post(f"{live.url}/handler/job_event", data=one_more, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text


def _reference_depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(_reference_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_reference_depth, value.values()), default=0)
    return 0


def _random_doc(rng: random.Random, depth: int):
    if depth == 0 or rng.random() < 0.2:
        return rng.choice([1, "a[b]{c}\"\\", None, "[[[[", "\\", True, 2.5, "\u00e9]"])
    if rng.random() < 0.5:
        return [_random_doc(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {f"k{i}]\"[": _random_doc(rng, depth - 1) for i in range(rng.randint(0, 3))}


def test_json_depth_matches_a_recursive_count():
    rng = random.Random(11)
    for _ in range(500):
        doc = _random_doc(rng, rng.randint(0, 12))
        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
        assert json_depth(text) == json_depth(text.encode()) == _reference_depth(doc), text


def test_json_depth_counts_invalid_text_as_json_reads_it():
    """Unterminated documents (json.loads recurses into all of them before it fails) whose strings
    hide brackets, quotes and backslashes: the count is exact, so nothing gets past the check into
    json's recursion."""
    pieces = {"[": 1, '["x\\"[", ': 1, '[{"k]": ': 2, '["\\\\", ': 1, '{"]]": ': 1}
    rng = random.Random(7)
    for _ in range(200):
        chosen = [rng.choice(list(pieces)) for _ in range(rng.randint(1, 2000))]
        assert json_depth("".join(chosen)) == sum(pieces[p] for p in chosen)
    assert json_depth("[" * 100 + '"' + "[" * 100) == 100  # an unterminated string runs to the end
    assert json_depth('"\\"' * 100_000 + "[" * 40) == 0  # backslashes outside strings: json refuses it at once
    assert json_depth(b"[" + b"\xff\xfe" * 10 + b"[]]") == 2  # not UTF-8: json refuses it, the count still works


# ---- what is legitimate still works --------------------------------------------------------------------
def test_jobs_and_uploads_still_work(live):
    url = run_job(requests, live.url, "dummy", data={"text": "still here"})
    assert requests.get(url + "/results/output").text == "still here\n"
    content = b"\x00\xffpayload" * 1000
    url = run_job(requests, live.url, "copy", files={"infile": ("in.dat", content)})
    assert requests.get(url + "/results/copy").content == content


def test_a_report_over_max_report_size_still_completes_the_job(tmp_path):
    """A job with many results sends a report over MAX_REPORT_SIZE: the callback is refused (413)
    and the server applies the report.json the wrapper left when the wrapper ends."""
    settings = make_settings(tmp_path, MAX_REPORT_SIZE=2048)
    definition = {"name": "many", "description": "Writes 60 result files.", "version": "1.0", "type": "test",
                  "executionDuration": 60,
                  "generated": {"parts": {"file": "part_*.txt", "content_type": "text/plain",
                                          "description": "One part"}},
                  "script": "for i in $(seq 10 69); do echo $i > part_$i.txt; done\n"}
    (tmp_path / "jdl-copy" / "many.json").write_text(json.dumps(definition))
    server = LiveServer(settings)
    try:
        url = run_job(requests, server.url, "many")
        results = requests.get(url + "/results", headers={"Accept": "application/json"}).json()
        assert len(json.dumps(results)) > 2048
        ids = sorted(r["id"] for r in results)
        assert ids == [f"part_{i}.txt" for i in range(10, 70)]
        log = (server.settings.jobs_dir / url.rsplit("/", 1)[1] / "wrapper.log").read_text()
        assert "HTTP 413" in log
    finally:
        server.stop()


def test_a_chunked_body_already_unframed_by_the_server(live):
    """gunicorn and mod_wsgi remove the chunked framing themselves (wsgi.input_terminated) but leave
    Transfer-Encoding: chunked in the environment; bottle un-chunked it again and failed (400)."""
    body = b"text=unframed&RUNID=r1"
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/rest/dummy", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": str(urlsplit(live.url).port), "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True, "wsgi.errors": sys.stderr,
               "CONTENT_TYPE": "application/x-www-form-urlencoded", "HTTP_TRANSFER_ENCODING": "chunked"}
    answer = {}
    b"".join(live.app(environ, lambda status, headers, exc_info=None: answer.update(status=status,
                                                                                    headers=dict(headers))))
    assert answer["status"].startswith("303"), answer
    assert requests.get(answer["headers"]["Location"] + "/parameters/text").text == "unframed"
