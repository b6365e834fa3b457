"""Property-based fuzzing of the whole REST API over real HTTP.

One live server whose only job definitions are the fast ``dummy`` and ``fail`` takes four rounds:

1. edges (deterministic): for every operation of ``/openapi.json`` and each of its inputs (path,
   query and header parameters, form fields, JSON properties, Content-Length), that one input set
   to each edge value (empty, NUL, control and non-ASCII characters, 2**70, -1, Infinity, NaN,
   values over the limits), the others valid;
2. schemathesis, stateless: cases for every operation, positive and negative, half of those under
   a job path aimed at real jobs in several phases;
3. schemathesis, stateful: sequences that follow links (create a job, then act on it; create a
   user, then change it), plus the links schemathesis infers;
4. raw requests built by hypothesis byte by byte: any method, paths from the app's route patterns
   with hostile segments (``..``, ``%2e%2e``, NUL, very long, unicode), garbage query strings and
   form/multipart/JSON bodies with the control parameters (and job reports signed with real job
   tokens), malformed ``Authorization`` headers, wrong lengths, odd ranges.

Then: no response was a 5xx (listed by exception, with the server's traceback), the server logged
no traceback from a background thread, every response to a schemathesis case conforms to the
document (status, content type, headers, JSON schema), the server still answers, and every job in
the database is consistent (XML valid, phase agreed on by the list, the job and ``/phase``, none
stuck in an active phase, results and uploads downloadable, no directory without a job).

Generation is reproducible (hypothesis ``derandomize``, fixed seeds); the server's job ids are not,
so the stateful round may take other paths from run to run.  The request count and the time are
printed; OPUS_FUZZ_SCALE=10 fuzzes ten times longer.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus, unquote

import pytest
import requests
import schemathesis
from conftest import LiveServer, make_settings
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, UnsatisfiedAssumption
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from uwsschema import validate

from opus.errors import NotFound
from opus.security import job_token
from opus.settings import REPO_ROOT
from opus.storage.userstore import UserStore
from opus.useradmin import UserAdmin
from opus.uws import Phase as UwsPhase

FAST_JOBS = ("dummy", "fail", "copy")
ADMIN = "fuzzadmin"
#: Examples (requests) per random round; with the edges, the total must reach MIN_REQUESTS.
SCALE = float(os.environ.get("OPUS_FUZZ_SCALE", "1"))
STATELESS_EXAMPLES = int(700 * SCALE)
STATEFUL_REQUESTS = int(700 * SCALE)
STATEFUL_EXAMPLES = int(60 * SCALE)
STATEFUL_STEPS = 12
RAW_EXAMPLES = int(700 * SCALE)
MIN_REQUESTS = 2000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


def fuzz_settings(max_examples: int, **extra) -> settings:
    options = {"max_examples": max_examples, "derandomize": True, "database": None, "deadline": None,
               "phases": [Phase.generate], "suppress_health_check": list(HealthCheck), "print_blob": False}
    return settings(**{**options, **extra})


# ---- the server under test and what it saw -----------------------------------------------------------------
class ErrorLog(logging.Handler):
    """Keeps the server's ERROR records: the 500 handler and the background threads log tracebacks."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []
        self.exceptions: list[str] = []  # records with a traceback
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record):
        text = self.format(record)
        self.records.append(text)
        if record.exc_info:
            self.exceptions.append(text)


@dataclass
class Tally:
    sent: collections.Counter = field(default_factory=collections.Counter)  # per round
    statuses: collections.Counter = field(default_factory=collections.Counter)
    server_errors: list[tuple[str, str]] = field(default_factory=list)  # (request and answer, server log)
    nonconforming: dict[str, str] = field(default_factory=dict)  # one example per kind of failure
    no_answer: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.sent.values())


class FuzzServer:
    def __init__(self, tmp_path):
        jdl = tmp_path / "jdl"
        jdl.mkdir()
        for name in FAST_JOBS:
            shutil.copy(REPO_ROOT / "jdl" / f"{name}.json", jdl / f"{name}.json")
        # Small limits, so that 413 is reachable; WAIT blocks at most 1 s.
        self.live = LiveServer(make_settings(tmp_path, JDL_DIR=str(jdl), MAX_WAIT=1, MAX_BODY_SIZE=64 * 1024,
                                             MAX_UPLOAD_SIZE=256 * 1024, MAX_PARAMETER_VALUE=20_000))
        self.url = self.live.url
        self.settings = self.live.settings
        self.admin = UserAdmin(UserStore(self.live.services.store.engine))
        _, self.token = self.admin.add(ADMIN, admin=True)
        self.errors = ErrorLog()
        logging.getLogger("opus").addHandler(self.errors)
        self.tally = Tally()
        self._seen = 0
        self.pool = self._make_pool()

    def stop(self):
        logging.getLogger("opus").removeHandler(self.errors)
        self.live.stop()

    def entity_ids(self) -> list[str]:
        """Entities of the pool's finished jobs (their results), for the /store paths."""
        found = self.live.services.joblist.entities.generated_by([job_id for _, job_id in self.pool])
        return [e.entity_id for e in found] or ["0" * 16]

    @property
    def admin_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def _make_pool(self) -> list[tuple[str, str]]:
        """Real jobs in several phases, for the fuzz to aim at."""
        live = self.live
        ids = [live.create("dummy"), live.create("fail", {"status": "7"}),
               live.create("copy", files={"infile": ("x.fits", b"SIMPLE  =    T")})]
        done = [live.create("dummy", run=True), live.create("fail", run=True)]
        for url in done:
            live.wait_final(url)
        return [tuple(url.rsplit("/", 2)[1:]) for url in ids + done]

    def repair_admin(self):
        """The fuzz may rotate, disable, demote or delete its own admin: put it back."""
        try:
            self.admin.get(ADMIN)
        except NotFound:
            _, self.token = self.admin.add(ADMIN, admin=True)
            return
        self.admin.update(ADMIN, enabled=True, admin=True)
        self.token = self.admin.new_token(ADMIN)

    def record(self, round_name: str, what: str, status: int | None, body: bytes | str = b""):
        """Count one request; keep a 5xx with the tracebacks the server logged since the previous one."""
        self.tally.sent[round_name] += 1
        self.tally.statuses[status] += 1
        new_records, self._seen = self.errors.records[self._seen:], len(self.errors.records)
        if status is None:
            self.tally.no_answer.append(what)
        elif status >= 500:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            log = "\n".join(r for r in new_records if "unhandled error" in r) or "(nothing logged)"
            self.tally.server_errors.append((f"[{round_name}] {what}\n  -> {status} {text[:300]!r}", log))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = FuzzServer(tmp_path_factory.mktemp("fuzz"))
    yield s
    s.stop()


# ---- rounds 2 and 3: schemathesis --------------------------------------------------------------------------
JOB_ID_FROM_LOCATION = "$response.header.Location#regex:/rest/[^/]+/([0-9a-f]+)$"


def add_links(doc: dict) -> dict:
    """OpenAPI links for the stateful round: job creation -> the job's resources -> each other."""
    ops = {op["operationId"]: (path, method) for path, item in doc["paths"].items()
           for method, op in item.items() if isinstance(op, dict) and "operationId" in op}
    job_ops = [op_id for op_id, (path, _) in ops.items() if "{job_id}" in path]

    def links(job_id: str, skip: str = "") -> dict:
        out = {}
        for target in job_ops:
            if target == skip:
                continue
            params = {"jobname": "$request.path.jobname", "job_id": job_id}
            path = ops[target][0]
            if "{name}" in path:
                params["name"] = "text"
            if "{result_id}" in path:
                params["result_id"] = "output"
            out[f"to_{target}"] = {"operationId": target, "parameters": params}
        return out

    doc["paths"]["/rest/{jobname}"]["post"]["responses"]["303"]["links"] = links(JOB_ID_FROM_LOCATION)
    for source in job_ops:
        path, method = ops[source]
        for code, response in doc["paths"][path][method]["responses"].items():
            if code in ("200", "303") and "$ref" not in response:
                response["links"] = links("$request.path.job_id", skip=source)
    doc["paths"]["/admin/users"]["post"]["responses"]["201"]["links"] = {
        f"to_{t}": {"operationId": t, "parameters": {"name": "$response.body#/name"}}
        for t in ("getUser", "changeUser", "deleteUser", "newToken")}
    return doc


def load_schema(server: FuzzServer):
    r = requests.get(f"{server.url}/openapi.json", timeout=30)
    assert r.status_code == 200
    schema = schemathesis.openapi.from_dict(add_links(r.json()))
    schema.config.update(base_url=server.url)
    return schema


def send_case(server: FuzzServer, round_name: str, case, **kwargs):
    """Send a schemathesis case (admin paths with the admin's token) and check its response."""
    admin_path = case.path.startswith("/admin")
    if admin_path:
        kwargs["headers"] = {**kwargs.get("headers", {}), **server.admin_headers}
    what = f"{case.method} {case.formatted_path} query={case.query!r} body={str(case.body)[:200]!r}"
    try:
        response = case.call(timeout=30, **kwargs)
    except requests.RequestException as exc:
        server.record(round_name, f"{what} ({exc})", None)
        raise
    server.record(round_name, what, response.status_code, response.content)
    if admin_path and ADMIN in unquote(case.formatted_path) and response.status_code < 300:
        server.repair_admin()
    try:
        case.validate_response(response, checks=CHECKS)
    except (FailureGroup, Failure) as exc:
        failures = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
        for failure in failures:
            if getattr(failure, "code", "") == "ST101":  # not_a_server_error: already recorded with its log
                continue
            key = f"{case.method} {case.path}: {failure.title}"
            example = f"{what} -> {response.status_code}: {str(failure)[:500]}"
            server.tally.nonconforming.setdefault(key, example)
    return response


def run_stateless(server: FuzzServer, schema) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]

    @fuzz_settings(STATELESS_EXAMPLES)
    @given(st.data())
    def stateless(data):
        op = data.draw(st.sampled_from(operations), label="operation")
        mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]), label="mode")
        fixed = None
        if "{job_id}" in op.path and data.draw(st.booleans(), label="real job"):
            jobname, job_id = data.draw(st.sampled_from(server.pool), label="job")
            fixed = {"jobname": jobname, "job_id": job_id}
        try:
            case = data.draw(op.as_strategy(mode, path_parameters=fixed), label="case")
        except UnsatisfiedAssumption:  # no negative case exists (an operation without inputs)
            case = data.draw(op.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed), label="case")
        send_case(server, "stateless", case)

    stateless()


def run_stateful(server: FuzzServer, schema) -> None:
    """Scenarios until STATEFUL_REQUESTS are sent, with seeds 0, 1, ...

    Which rules can run depends on what the server answered before (and on schemathesis' memory of
    earlier scenarios), so hypothesis may stop a run as "flaky": the next seed then goes on."""
    base = schema.as_state_machine()
    target = server.tally.sent["stateful"] + STATEFUL_REQUESTS
    for attempt in range(20):
        @seed(attempt)
        class Machine(base):
            def call(self, case, **kwargs):
                return send_case(server, "stateful", case, **kwargs)

            def validate_response(self, response, case, **kwargs):
                pass  # done in send_case

        try:
            Machine.run(settings=fuzz_settings(STATEFUL_EXAMPLES, derandomize=False,
                                               stateful_step_count=STATEFUL_STEPS))
        except Flaky:
            pass
        if server.tally.sent["stateful"] >= target:
            break


# ---- round 4: raw requests ---------------------------------------------------------------------------------
GARBAGE = ["", " ", "RUN", "run", " RUN ", "ABORT", "DELETE", "delete", "PENDING", "ARCHIVED", "SUSPENDED",
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


# ---- round 1: every input of every operation at its edges (deterministic) ----------------------------------
EDGE_TEXT = ["", " ", "\u00e9\u00e8", "\U0001f600", "\x00", "a\x00b", "\x1b", "\r\n", "-1", "0", str(2 ** 70),
             str(-2 ** 70), "1e400", "NaN", " RUN ", "ARCHIVED", "../../etc/passwd", "%00", "x" * 20_001]
EDGE_LENGTHS = ["12abc", "", "-1", "0x10", "1.5", "99999999999999999999", "\u00e9"]
EDGE_JSON = ["", "\u00e9", "\x00", 2 ** 70, -2 ** 70, -1, 0, 1.5, float("inf"), float("nan"), True, None, [],
             {}, ["\u00e9"], {"a": "\u00e9"}, "x" * 20_001]


def run_edges(server: FuzzServer, doc: dict) -> None:
    """For each operation of the document and each of its inputs (path, query, header parameter,
    form field, JSON property), requests that set that one input to each edge value, the others
    valid: a systematic complement to the random rounds, the same on every run."""
    http = requests.Session()
    counter = iter(range(10 ** 6))

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            kind, name = node["$ref"].split("/")[-2:]
            node = doc["components"][kind][name]
        return node

    def fill(path, values):
        return "".join(quote(str(values[part[1:-1]]), safe="") if part.startswith("{") else part
                       for part in re.split(r"({[^}]+})", path))

    def send(method, path_values, path, query=None, headers=None, **body):
        url = server.url + fill(path, path_values)
        headers = dict(headers or {})
        if path.startswith("/admin"):
            headers.update(server.admin_headers)
        what = (f"{method.upper()} {url[len(server.url):][:300]} query={str(query)[:200]} "
                f"headers={str(headers)[:200]} body={str(body)[:300]}")
        try:
            r = http.request(method, url, params=query, headers=headers, allow_redirects=False, timeout=30,
                             **body)
        except requests.RequestException as exc:
            server.record("edges", f"{what} ({exc})", None)
            return
        server.record("edges", what, r.status_code, r.content)

    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            params = [resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])]
            jobname, job_id = ("dummy", "")
            if "{job_id}" in path:
                jobname, job_id = server.live.create("dummy").rsplit("/", 2)[1:]
            user = f"edge{next(counter)}"
            if "{name}" in path and path.startswith("/admin"):
                server.admin.add(user)
            valid = {"jobname": jobname, "job_id": job_id, "name": "text" if "/rest/" in path else user,
                     "result_id": "output", "entity_id": server.entity_ids()[0], "file_name": "output.txt"}
            if path == "/jdl/{name}":
                valid["name"] = "dummy"
            for p in params:
                for value in EDGE_TEXT:
                    if p["in"] == "path":
                        send(method, {**valid, p["name"]: value}, path)
                    elif p["in"] == "query":
                        send(method, valid, path, query={p["name"]: value})
                    elif p["in"] == "header" and value.isascii() and value == value.strip() \
                            and "\x00" not in value:
                        send(method, valid, path, headers={p["name"]: value})
            content = op.get("requestBody", {}).get("content", {})
            if content:  # lengths a WSGI server may pass on as they came
                request_line = (method.upper().encode(), fill(path, valid).encode())
                auth = [("Authorization", f"Bearer {server.token}")] if path.startswith("/admin") else []
                for media in content:
                    for length in EDGE_LENGTHS:
                        headers = [*auth, ("Content-Type", media), ("Content-Length", length)]
                        status, response = send_raw(server, *request_line, headers, b"x=1")
                        server.record("edges", describe(*request_line, headers, b"x=1"), status,
                                      response.partition(b"\r\n\r\n")[2])
            for media, spec in content.items():
                schema = resolve(spec.get("schema", {}))
                names = sorted(schema.get("properties", {}))
                if media in ("application/x-www-form-urlencoded", "multipart/form-data"):
                    names = names + ["text", "RUNID", "EXECUTIONDURATION", "DESTRUCTION", "PHASE"]
                    for name in dict.fromkeys(names):
                        for value in EDGE_TEXT:
                            if media == "multipart/form-data":
                                part = (None, value.encode("utf-8", "surrogatepass"))
                                send(method, valid, path, files={name: part})
                            else:
                                send(method, valid, path, data={name: value})
                elif media == "application/json":
                    if path == "/handler/job_event":
                        base = {"job_id": job_id or server.pool[0][1], "phase": "EXECUTING"}
                        base["token"] = job_token(server.settings, base["job_id"])
                    else:
                        base = {"name": f"edge{next(counter)}"} if method == "post" else {}
                    for name in names:
                        for value in EDGE_JSON:
                            body = {**base, name: value}
                            if name == "name" and method == "post" and value == base.get("name"):
                                continue
                            send(method, valid, path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
                            if method == "post" and "name" in base:
                                base["name"] = f"edge{next(counter)}"
                elif media in ("text/plain", "application/octet-stream"):
                    for value in EDGE_TEXT + ["\udcff"]:
                        send(method, valid, path, data=value.encode("utf-8", "surrogateescape"),
                             headers={"Content-Type": media})


# ---- the checks after the fuzz -----------------------------------------------------------------------------
def job_problems(server: FuzzServer) -> list[str]:
    """Every job in the database, checked over HTTP with the admin's credentials."""
    store = server.live.services.store
    http = requests.Session()
    http.headers.update(server.admin_headers)
    deadline = time.monotonic() + 60
    while True:  # let the queued and running jobs finish
        active = [r for r in store.list(phases=[UwsPhase.QUEUED, UwsPhase.EXECUTING])]
        if not active or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    problems = [f"{r.jobname}/{r.job_id} still {r.phase.value} a minute after the fuzz" for r in active]
    refs = store.list(include_archived=True)
    time.sleep(server.settings.KILL_GRACE + 2)  # a deleted running job's files go when its processes have
    jobs_dir = server.settings.jobs_dir
    on_disk = {p.name for p in jobs_dir.iterdir()} if jobs_dir.is_dir() else set()
    leftovers = sorted(on_disk - {r.job_id for r in refs})
    problems += [f"{jobs_dir / name}: the directory of no job (left by a deleted job?)" for name in leftovers]
    listed: dict[str, set[str]] = {}
    for jobname in {r.jobname for r in refs}:
        every_phase = [("PHASE", p.value) for p in UwsPhase]
        r = http.get(f"{server.url}/rest/{jobname}", params=every_phase, timeout=30)
        if r.status_code != 200:
            problems.append(f"GET /rest/{jobname}: {r.status_code} {r.text[:200]}")
            continue
        root = validate(r.content)
        listed[jobname] = {ref.get("id") for ref in root}
    for ref in refs:
        url = f"{server.url}/rest/{ref.jobname}/{ref.job_id}"
        where = f"{ref.jobname}/{ref.job_id} ({ref.phase.value})"
        if ref.job_id not in listed.get(ref.jobname, ()):
            problems.append(f"{where}: in the database but not in its job list")
        r = http.get(url, timeout=30)
        if r.status_code != 200:
            problems.append(f"{where}: GET job -> {r.status_code} {r.text[:200]}")
            continue
        try:
            root = validate(r.content)
        except AssertionError as exc:
            problems.append(f"{where}: job XML invalid: {str(exc)[:500]}")
            continue
        ns = {"uws": "http://www.ivoa.net/xml/UWS/v1.0"}
        xml_phase = root.findtext("uws:phase", namespaces=ns)
        phase = http.get(url + "/phase", timeout=30).text
        if not (xml_phase == phase == store.get_phase(ref.job_id).value):
            problems.append(f"{where}: phases disagree: XML {xml_phase}, /phase {phase}")
        if root.findtext("uws:startTime", namespaces=ns) and xml_phase in ("PENDING", "QUEUED"):
            problems.append(f"{where}: {xml_phase} but has a startTime")
        as_json = http.get(url, headers={"Accept": "application/json"}, timeout=30)
        if as_json.status_code != 200 or as_json.json().get("jobId") != ref.job_id:
            problems.append(f"{where}: JSON form -> {as_json.status_code} {as_json.text[:200]}")
        for child in ("parameters", "results"):
            c = http.get(f"{url}/{child}", timeout=30)
            if c.status_code != 200:
                problems.append(f"{where}: GET {child} -> {c.status_code}")
                continue
            try:
                validate(c.content)
            except AssertionError as exc:
                problems.append(f"{where}: {child} XML invalid: {str(exc)[:300]}")
        for result in root.iterfind("uws:results/uws:result", namespaces=ns):
            href = result.get("{http://www.w3.org/1999/xlink}href")
            got = http.get(href, timeout=30)
            if got.status_code != 200:
                problems.append(f"{where}: result {result.get('id')} -> {got.status_code}")
        for param in root.iterfind("uws:parameters/uws:parameter", namespaces=ns):
            if param.get("byReference") == "true":
                got = http.get(f"{url}/parameters/{quote(param.get('id'), safe='')}", timeout=30)
                if got.status_code != 200:
                    problems.append(f"{where}: uploaded parameter {param.get('id')} -> {got.status_code}")
        if xml_phase == "ERROR" and http.get(url + "/error", timeout=30).status_code != 200:
            problems.append(f"{where}: ERROR without an error document")
    return problems


def summarise_server_errors(errors: list[tuple[str, str]]) -> str:
    """One block per distinct exception: its traceback once, then up to five of the requests."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for request, log in errors:
        groups.setdefault(log.strip().splitlines()[-1], []).append((request, log))
    out = []
    for exception, items in groups.items():
        out.append(f"=== {exception}  ({len(items)} requests)\n{items[0][1]}\n  requests:")
        out += [f"  {request}" for request, _ in items[:5]]
    return "\n".join(out)


# ---- the test ----------------------------------------------------------------------------------------------
def test_fuzz_the_whole_api(server, capsys):
    started = time.monotonic()
    schema = load_schema(server)
    run_edges(server, requests.get(f"{server.url}/openapi.json", timeout=30).json())
    run_stateless(server, schema)
    run_stateful(server, schema)
    run_raw(server)
    fuzz_time = time.monotonic() - started
    tally = server.tally

    # The server still answers.
    r = requests.get(f"{server.url}/availability", timeout=30)
    assert r.status_code == 200 and "<vosi:available>true</vosi:available>" in r.text
    assert requests.get(f"{server.url}/rest/dummy", timeout=30).status_code == 200
    problems = job_problems(server)
    with capsys.disabled():
        print(f"\nfuzz: {tally.total} requests ({dict(tally.sent)}) in {fuzz_time:.1f} s; "
              f"{len(server.live.services.store.list(include_archived=True))} jobs checked in "
              f"{time.monotonic() - started - fuzz_time:.1f} s; "
              f"statuses {dict(sorted(tally.statuses.items(), key=str))}")

    assert tally.total >= MIN_REQUESTS * min(SCALE, 1), tally.sent
    report = []
    if tally.server_errors:
        report.append(f"{len(tally.server_errors)} server errors (5xx), by the exception logged:\n"
                      + summarise_server_errors(tally.server_errors))
    if tally.no_answer:
        report.append(f"{len(tally.no_answer)} requests without an HTTP answer:\n"
                      + "\n".join(tally.no_answer[:10]))
    if tally.nonconforming:
        report.append("responses that do not follow /openapi.json:\n" + "\n".join(
            f"{k}\n    {v}" for k, v in tally.nonconforming.items()))
    background = [r for r in server.errors.exceptions if "unhandled error" not in r]
    if background:  # tracebacks of the dispatcher, maintenance, ...: a crash is a bug even without a 5xx
        report.append(f"the server logged {len(background)} exceptions outside requests:\n"
                      + "\n".join(background[:5]))
    if problems:
        report.append(f"{len(problems)} inconsistent jobs:\n" + "\n".join(problems[:30]))
    assert not report, "\n\n".join(report)
