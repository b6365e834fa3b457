"""Property-based fuzzing of the whole REST API over real HTTP.

One live server whose only job definitions are the fast ``dummy`` and ``fail`` takes four rounds:

1. edges (deterministic): for every operation of ``/openapi.json`` and each of its inputs (path,
   query and header parameters, form fields, JSON properties, Content-Length), that one input set
   to each edge value (empty, NUL, control and non-ASCII characters, bytes that are not UTF-8, 2**70,
   -1, Infinity, NaN, values over the limits), the others valid;
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

The server under test and its tally are in ``fuzzserver.py``, round 4's raw requests in ``fuzzraw.py``.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import quote, unquote

import pytest
import requests
import schemathesis
from conftest import pg_url_or_skip, reset_postgres
from fuzzraw import describe, run_raw, send_raw
from fuzzserver import (
    ADMIN,
    CHECKS,
    MIN_REQUESTS,
    SCALE,
    STATEFUL_EXAMPLES,
    STATEFUL_REQUESTS,
    STATEFUL_STEPS,
    STATELESS_EXAMPLES,
    FuzzServer,
    fuzz_settings,
)
from helpers import wait_for
from hypothesis import given, seed
from hypothesis import strategies as st
from hypothesis.errors import Flaky, UnsatisfiedAssumption
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure, FailureGroup
from uwsschema import validate

from opus.auth.identity import job_token
from opus.uws import Phase as UwsPhase
@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request, tmp_path_factory):
    database_url = None
    if request.param == "postgres":
        database_url = pg_url_or_skip()
        reset_postgres(database_url)
    s = FuzzServer(tmp_path_factory.mktemp("fuzz"), database_url)
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
                     "result_id": "output", "entity_id": server.entity_ids()[0], "file_name": "output.txt",
                     "kind": "json",  # the original OPUS's .../provjson (opus.server.compat_routes)
                     "token": "0" * 32 + "." + "0" * 32, "link_id": "0" * 32,  # share links
                     "token_id": "0123456789abcdef"}  # service tokens
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
                if p["in"] in ("query", "header"):  # bytes that are not UTF-8 (%FF in a query)
                    where = "query" if p["in"] == "query" else "headers"
                    send(method, valid, path, **{where: {p["name"]: b"\xff\xfe"}})
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
    # let the queued and running jobs finish
    wait_for(lambda: not store.list(phases=[UwsPhase.QUEUED, UwsPhase.EXECUTING]), 60, quietly=True)
    active = store.list(phases=[UwsPhase.QUEUED, UwsPhase.EXECUTING])
    problems = [f"{r.jobname}/{r.job_id} still {r.phase.value} a minute after the fuzz" for r in active]
    refs = store.list(include_archived=True)
    jobs_dir = server.settings.jobs_dir

    def leftovers() -> list[str]:
        on_disk = {p.name for p in jobs_dir.iterdir()} if jobs_dir.is_dir() else set()
        return sorted(on_disk - {r.job_id for r in refs})

    # A deleted running job's files go when its processes have (KILL_GRACE, then SIGKILL).
    wait_for(lambda: not leftovers(), server.settings.KILL_GRACE + 2, quietly=True)
    problems += [f"{jobs_dir / name}: the directory of no job (left by a deleted job?)"
                 for name in leftovers()]
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
