"""Round 4 of the fuzz test (tests/test_fuzz.py): raw HTTP requests built by hypothesis strategies,
sent on a bare socket (any method, target, header and body bytes)."""

from __future__ import annotations

import base64
import json
import socket
from urllib.parse import quote, quote_plus

from fuzzserver import ADMIN, FAST_JOBS, RAW_EXAMPLES, FuzzServer, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from opus.auth.identity import job_token
from opus.uws import Phase as UwsPhase
# ---- round 4: raw requests ---------------------------------------------------------------------------------
GARBAGE = ["", " ", "RUN", "run", " RUN ", "ABORT", "DELETE", "delete", "PENDING", "ARCHIVED", "SUSPENDED",
           "%ff", "%c3", "%ed%b3%bf",  # not UTF-8 once unquoted (a query sent "not encoded at all")
           "-1", "0", "1", "2", "60", "99999999999999999999", "-99999999999999999999", "1e3", "0x10", "1.5",
           "NaN", "inf", "9" * 5000, "\u0663", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00",
           "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "10000-01-01T00:00:00Z", "2026-02-30T00:00:00Z",
           "2026-01-01T00:00:00+99:00", "2026-01-01T25:61:61Z", "2026-01-01", "yesterday", "\x00", "a\x00b",
           "\x1b[31m", "\r\nX-Injected: 1", "é", "\U0001f600", "\ufffe", "<x/>", "&amp;", "]]>",
           "' OR 1=1 --", "$(touch /tmp/opus-fuzz)", "%s%n", "../../etc/passwd", "x" * 70000]
CONTROL_NAMES = ["PHASE", "phase", " PHASE", "ACTION", "RUNID", "runid", "EXECUTIONDURATION", "DESTRUCTION",
                 "AFTER", "LAST", "WAIT", "text", "TEXT", "message", "status", "infile", "slurm_time",
                 "slurm_partition", "", "a" * 65, "x y", "é", "\x00", "name\n"]
SEGMENTS = ["..", ".", "%2e%2e", "%2E%2E", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%2f..%2fsecret.key", "%00",
            "a%00b", "%ff", "%c0%ae%c0%ae", "%", "%zz", "~", "*", "'", "%22", "%3Cx%3E", "a;b", "%20",
            "%0d%0a", "..%5c..%5c", "CON", "-1", "0", "ffffffffffffffff", "0000000000000000", "%F0%9F%98%80",
            "%EF%BF%BE", "a" * 300, "b" * 5000, "c" * 70000]
RAW_SEGMENTS = [b"\x00", b"\xff\xfe", "é".encode(), b"\x7f", b"a\tb", b"\\", b"//"]
METHODS = ["GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "get", "FOO",
           "G\x00T"]
ACCEPT = ["application/json", "text/xml", "*/*", "application/json;q=0", "application/xml, application/json",
          "application/json, text/xml", "\x00", "é"]
RANGES = ["bytes=0-0", "bytes=-1", "bytes=5-2", "bytes=0-99999999999999999999", "bytes=abc", "items=0-1",
          "bytes=0-1,3-4", "bytes=-0", "bytes=99999-"]
DATES = ["Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "garbage", "0"]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class RawRequests:
    """Hypothesis strategies for whole HTTP requests (sent by send_raw)."""

    def __init__(self, server: FuzzServer):
        self.server = server
        self.templates = sorted({r.rule for r in server.live.app.routes}) + [
            "/rest", "/rest/", "/favicon.ico", "/../../etc/passwd", "/rest/<jobname>/",
            "/rest/<jobname>/<job_id>/", "/rest/<jobname>/<job_id>/<x>",
            "/rest/<jobname>/<job_id>/results/<result_id>/<x>", "//rest//dummy"]
        pool = server.pool
        self.real = {
            "jobname": list(FAST_JOBS) + ["sleep", "nosuch", "DUMMY", "dummy.json", ".dummy"],
            "job_id": [job_id for _, job_id in pool],
            "name": ["text", "TEXT", "message", "status", "infile", "nosuch", ADMIN, "alice"],
            "result_id": ["output", "stdout", "nosuch"],
            "entity_id": server.entity_ids() + ["0" * 16],
            "file_name": ["output.txt", "nosuch.txt"],
        }

    # -- strategies --
    def segment(self, name: str):
        real = st.sampled_from(self.real.get(name, ["x"])).map(lambda s: quote(s, safe="").encode())
        encoded = st.text(max_size=40).map(lambda s: quote(s, safe="").encode())
        raw_text = st.text(max_size=20).map(lambda s: s.encode("utf-8", "surrogatepass"))
        return st.one_of(real, real, real, st.sampled_from(SEGMENTS).map(str.encode),
                         st.sampled_from(RAW_SEGMENTS), encoded, raw_text)

    @st.composite
    def path(draw, self):
        template = draw(st.sampled_from(self.templates))
        fixed = {}
        if "<job_id>" in template and draw(st.integers(0, 3)) > 0:  # mostly a real job under its own name
            jobname, job_id = draw(st.sampled_from(self.server.pool))
            fixed = {"jobname": jobname.encode(), "job_id": job_id.encode()}
        out = []
        for part in template.split("/"):
            if part.startswith("<") and part.endswith(">"):
                name = part[1:-1].split(":")[0]
                out.append(fixed[name] if name in fixed else draw(self.segment(name)))
            else:
                out.append(part.encode())
        path = b"/".join(out)
        if draw(st.integers(0, 9)) == 0:
            path += draw(st.sampled_from([b"/", b"/..", b"/%2e%2e", b"//", b"/.", b";x", b"#frag"]))
        return path

    def query_pair(self):
        name = st.one_of(st.sampled_from(CONTROL_NAMES), st.text(max_size=10))
        value = st.one_of(st.sampled_from(GARBAGE), st.text(max_size=30))
        return st.tuples(name, value)

    @st.composite
    def query(draw, self):
        pairs = draw(st.lists(self.query_pair(), max_size=5))
        if not pairs:
            return b""
        if draw(st.integers(0, 4)) == 0:  # not encoded at all
            return b"?" + b"&".join(f"{k}={v}".encode("utf-8", "surrogatepass") for k, v in pairs)
        return b"?" + "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs).encode()

    @st.composite
    def authorization(draw, self):
        kind = draw(st.integers(0, 19))
        if kind < 12:
            return None
        if kind < 15:
            return f"Bearer {self.server.token}"  # the admin (replaced by a fresh token when rotated)
        return draw(st.sampled_from([
            "Basic !!!", "Basic", "Bearer", "Digest x", "Basic " + b64(f"{ADMIN}:wrong".encode()),
            "Basic " + b64(b"\x00:\x00"), "Basic " + b64(b"\xff\xfe:x"), "Basic " + b64(b"no-colon"),
            "Bearer garbage", "Bearer " + "a" * 1000, "Bearer 0123456789abcdef.x", "Bearer \u00e9",
            "basic " + b64(f"{ADMIN}:x".encode()), "Bearer  " + self.server.token + "x",
            "Negotiate " + "A" * 50]))

    @st.composite
    def form_body(draw, self):
        pairs = draw(st.lists(self.query_pair(), max_size=8))
        if draw(st.integers(0, 5)) == 0:
            return "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")
        return "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs).encode()

    @st.composite
    def multipart_body(draw, self):
        boundary = draw(st.sampled_from(["XyZ", "a" * 70, "-", "é"]))
        parts = []
        for name, value in draw(st.lists(self.query_pair(), max_size=5)):
            filenames = ["x.fits", "", "../../x", "\x00", "a" * 300]
            filename = draw(st.one_of(st.none(), st.sampled_from(filenames)))
            disposition = f'form-data; name="{name}"'
            if filename is not None:
                disposition += f'; filename="{filename}"'
            as_bytes = value.encode("utf-8", "surrogatepass")
            content = draw(st.one_of(st.just(as_bytes), st.binary(max_size=300)))
            head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n"
            parts.append(head.encode("utf-8", "surrogatepass") + content + b"\r\n")
        ending = draw(st.sampled_from([f"--{boundary}--\r\n", "", f"--{boundary}", "--other--\r\n"]))
        return f"multipart/form-data; boundary={boundary}", b"".join(parts) + ending.encode()

    @st.composite
    def json_body(draw, self):
        job_ids = self.real["job_id"] + ["", "0" * 16, "x" * 1000]
        scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                            st.sampled_from(GARBAGE[:40]))
        anything = st.recursive(scalars, lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
            max_leaves=8)
        job_id = draw(st.sampled_from(job_ids))
        report = {
            "job_id": st.just(job_id),
            "token": st.one_of(st.just(job_token(self.server.settings, job_id)), anything),
            "phase": st.one_of(st.sampled_from([p.value for p in UwsPhase]), anything),
            "message": anything, "results": anything, "start_time": anything, "end_time": anything,
            "event": st.one_of(st.just("slurm_end"), anything), "slurm_job_id": anything,
            "exit_code": anything,
            "name": st.one_of(st.sampled_from(["carol", "x" * 65, "a\n", "", ADMIN]), anything),
            "admin": anything, "enabled": anything, "jobDefinitions": anything, "grant": anything,
            "revoke": anything, "maxActiveJobs": anything,
        }
        keys = draw(st.lists(st.sampled_from(sorted(report)), max_size=6, unique=True))
        value = {k: draw(report[k]) for k in keys}
        if draw(st.integers(0, 9)) == 0:
            value = draw(anything)
        return json.dumps(value).encode()

    @st.composite
    def request(draw, self):
        method = draw(st.sampled_from(METHODS)).encode("latin-1")
        target = draw(self.path()) + draw(self.query())
        # Bytes that would end the request line make an HTTP/0.9 request, which tests http.server, not OPUS.
        target = target.replace(b"\r", b"%0D").replace(b"\n", b"%0A").replace(b" ", b"%20")
        headers: list[tuple[str, str]] = []
        auth = draw(self.authorization())
        if auth is not None:
            headers.append(("Authorization", auth))
        if draw(st.booleans()):
            headers.append(("Accept", draw(st.sampled_from(ACCEPT))))
        if draw(st.integers(0, 5)) == 0:
            headers.append(("Range", draw(st.sampled_from(RANGES))))
        if draw(st.integers(0, 9)) == 0:
            headers.append(("If-Modified-Since", draw(st.sampled_from(DATES))))
        if draw(st.integers(0, 14)) == 0:
            hosts = ["", "evil.example:99999", "[::1", "x" * 300, "é"]
            headers.append(("Host", draw(st.sampled_from(hosts))))
        kind = draw(st.sampled_from(["none", "form", "form", "multipart", "json", "bytes", "big"]))
        body = b""
        ctype = None
        if kind == "form":
            ctype, body = "application/x-www-form-urlencoded", draw(self.form_body())
        elif kind == "multipart":
            ctype, body = draw(self.multipart_body())
        elif kind == "json":
            ctype, body = "application/json", draw(self.json_body())
        elif kind == "bytes":
            body = draw(st.binary(max_size=500))
        elif kind == "big":
            body = b"text=" + b"x" * draw(st.sampled_from([20_001, 70_000, 300_000]))
            ctype = "application/x-www-form-urlencoded"
        if draw(st.integers(0, 5)) == 0:
            ctype = draw(st.sampled_from(["multipart/form-data", "multipart/form-data; boundary=",
                                          "text/plain", "application/octet-stream", "garbage/\x00",
                                          "application/x-www-form-urlencoded; charset=latin-1", "", None]))
        if ctype is not None:
            headers.append(("Content-Type", ctype))
        length = draw(st.sampled_from(["right"] * 8 + ["none", "short", "long", "huge", "negative", "garbage",
                                                         "chunked"]))
        if length == "right":
            headers.append(("Content-Length", str(len(body))))
        elif length == "short":
            headers.append(("Content-Length", str(max(0, len(body) - 3))))
        elif length == "long":
            headers.append(("Content-Length", str(len(body) + 10)))
        elif length == "huge":
            headers.append(("Content-Length", "99999999999999"))
        elif length == "negative":
            headers.append(("Content-Length", "-5"))
        elif length == "garbage":
            headers.append(("Content-Length", "12abc"))
        elif length == "chunked":
            headers.append(("Transfer-Encoding", "chunked"))
            if draw(st.booleans()):
                body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        return method, target, headers, body


def send_raw(server: FuzzServer, method: bytes, target: bytes, headers: list[tuple[str, str]], body: bytes):
    """Send exactly these bytes (no client normalises the path or checks the headers): (status, response)."""
    host, port = "127.0.0.1", server.live.httpd.server_port
    head = [method + b" " + target + b" HTTP/1.1"]
    if not any(k == "Host" for k, _ in headers):
        head.append(f"Host: {host}:{port}".encode())
    head += [f"{k}: {v}".encode("utf-8", "surrogatepass") for k, v in headers]
    head.append(b"Connection: close")
    data = b"\r\n".join(head) + b"\r\n\r\n" + body
    chunks = []
    with socket.create_connection((host, port), timeout=30) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)  # no more body: a server waiting for more sees the end
        except OSError:
            pass  # the server answered (and closed) before reading it all
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    status = None
    if raw.startswith(b"HTTP/"):
        try:
            status = int(raw.split(b" ", 2)[1])
        except (IndexError, ValueError):
            pass
    return status, raw


def describe(method: bytes, target: bytes, headers, body: bytes) -> str:
    def cut(data: bytes, n: int) -> str:
        return f"{data[:n]!r}" + (f" ({len(data)} bytes)" if len(data) > n else "")

    return (f"{method.decode('latin-1')} {cut(target, 300)} headers={[(k, v[:80]) for k, v in headers]} "
            f"body={cut(body, 200)}")


def run_raw(server: FuzzServer) -> None:
    raw = RawRequests(server)

    @fuzz_settings(RAW_EXAMPLES)
    @given(raw.request())
    def raw_round(req):
        method, target, headers, body = req
        status, response = send_raw(server, method, target, headers, body)
        server.record("raw", describe(method, target, headers, body), status,
                      response.partition(b"\r\n\r\n")[2])
        if status is not None and status < 300 and b"/admin/users/" in target and ADMIN.encode() in target:
            server.repair_admin()

    raw_round()
