"""Operations: the Prometheus metrics at /metrics, request ids and job ids on log lines.

The metrics are parsed with a small parser of the text exposition format 0.0.4, which also checks
that the page is well formed (every sample in a declared family, histogram buckets cumulative and
ending with +Inf = _count).  The counts of other processes are made by real subprocesses (the
counters of prometheus_client's multiprocess mode belong to a pid).  The last test runs gunicorn
with two workers: the counters are totals over the workers, and do not go down when a worker dies.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import LiveServer, make_settings
from helpers import wait_for
from prometheus_client.multiprocess import MultiProcessCollector

from opus.observability import metrics
from opus.observability.logcontext import LOG_FORMAT
from opus.auth.identity import job_token
from opus.storage.userstore import UserStore
from opus.auth.admin import UserAdmin
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# ---- a small parser of the exposition format -----------------------------------------------------------
def parse(text: str) -> dict[str, dict]:
    """{family: {"type", "help", "samples": [(sample name, {labels}, value)]}}; asserts well-formedness."""
    assert text.endswith("\n")
    families: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            families.setdefault(name, {"samples": []})["help"] = help_text
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert "type" not in families.get(name, {}), f"{name} declared twice"
            families.setdefault(name, {"samples": []})["type"] = kind
            current = name
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name, labels, value = m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))
            base = re.sub(r"_(bucket|sum|count)$", "", name) if families[current]["type"] == "histogram" else name
            assert base == current, f"{name} outside its family {current}"
            families[current]["samples"].append((name, labels, value))
    for name, family in families.items():
        assert "type" in family and "help" in family, name
        if family["type"] == "counter":
            assert name.endswith("_total") and all(v >= 0 for _, _, v in family["samples"]), name
        if family["type"] == "histogram":
            check_histogram(name, family["samples"])
    return families


def check_histogram(name: str, samples: list) -> None:
    buckets = [(labels["le"], v) for n, labels, v in samples if n == f"{name}_bucket"]
    bounds = [float(le) for le, _ in buckets]
    assert buckets and buckets[-1][0] == "+Inf", "the last bucket is +Inf"
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), "bounds increase"
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    (total,) = [v for n, _, v in samples if n == f"{name}_count"]
    (seconds,) = [v for n, _, v in samples if n == f"{name}_sum"]
    assert total == counts[-1] and seconds >= 0


def value(families: dict, family: str, **labels) -> float:
    found = [v for n, lab, v in families[family]["samples"] if n == family and lab == labels]
    assert len(found) == 1, (family, labels, families[family]["samples"])
    return found[0]


def total(families: dict, family: str, **labels) -> float:
    return sum(v for n, lab, v in families[family]["samples"]
               if n == family and all(lab.get(k) == v2 for k, v2 in labels.items()))


# ---- fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture
def server(tmp_path):
    live = LiveServer(make_settings(tmp_path, MAX_RUNNING_JOBS=2))
    admin = UserAdmin(UserStore(live.services.store.engine))
    live.admin_token = admin.add("root", admin=True)[1]
    live.user_token = admin.add("alice")[1]
    yield live
    live.stop()


def scrape(server) -> dict:
    r = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.admin_token}"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == CONTENT_TYPE
    return parse(r.text)


# ---- /metrics ----------------------------------------------------------------------------------------------
def test_metrics_count_requests_jobs_and_callbacks(server):
    first = scrape(server)
    assert value(first, "opus_info", version=__import__("opus").__version__) == 1
    assert value(first, "opus_database_up") == 1
    assert value(first, "opus_processes") == 1
    assert {lab["phase"] for _, lab, _ in first["opus_jobs"]["samples"]} >= {"PENDING", "COMPLETED", "ARCHIVED"}
    assert total(first, "opus_jobs") == 0
    assert value(first, "opus_manager_errors_total", manager="local") == 0
    gets = total(first, "opus_http_requests_total", method="GET", status="200")

    done = server.create(run=True)
    failed = server.create("fail", run=True)
    server.create()
    server.create()
    assert server.wait_final(done) == "COMPLETED" and server.wait_final(failed) == "ERROR"
    for _ in range(5):
        assert requests.get(f"{server.url}/availability").status_code == 200
    assert requests.get(f"{server.url}/no/such/thing").status_code == 404
    assert requests.request("BREW", f"{server.url}/").status_code == 405
    job_id = done.rsplit("/", 1)[1]
    again = requests.post(f"{server.url}/handler/job_event", json={
        "job_id": job_id, "token": job_token(server.settings, job_id), "phase": "COMPLETED", "results": []})
    assert again.json()["outcome"] in ("already", "ignored")
    refused = requests.post(f"{server.url}/handler/job_event", json={"job_id": job_id, "token": "x",
                                                                     "phase": "COMPLETED"})
    assert refused.status_code == 403

    after = scrape(server)
    assert value(after, "opus_jobs", phase="COMPLETED") == 1
    assert value(after, "opus_jobs", phase="ERROR") == 1
    assert value(after, "opus_jobs", phase="PENDING") == 2
    assert total(after, "opus_jobs") == 4
    assert total(after, "opus_http_requests_total", method="GET", status="200") >= gets + 5
    assert total(after, "opus_http_requests_total", method="POST", status="303") == 4
    assert value(after, "opus_http_requests_total", method="GET", status="404") == 1
    assert value(after, "opus_http_requests_total", method="other", status="405") == 1  # methods are bounded
    # Each wrapper reported EXECUTING then its end: 4 applied; ours was a repetition; one refused.
    assert value(after, "opus_callbacks_total", outcome="applied") == 4
    assert total(after, "opus_callbacks_total", outcome="already") + \
        total(after, "opus_callbacks_total", outcome="ignored") == 1
    assert value(after, "opus_callbacks_total", outcome="refused") == 1
    (count,) = [v for n, _, v in after["opus_http_request_duration_seconds"]["samples"] if n.endswith("_count")]
    assert count == total(after, "opus_http_requests_total") > total(first, "opus_http_requests_total")


def test_manager_errors_are_counted(server, monkeypatch):
    def broken(job_id):
        raise OSError("no wrapper today")

    manager = server.services.manager
    monkeypatch.setattr(manager, "_launch", broken)
    assert server.wait_final(server.create(run=True)) == "ERROR"
    assert value(scrape(server), "opus_manager_errors_total", manager="local") == 1


def test_metrics_are_for_admins(server):
    url = f"{server.url}/metrics"
    r = requests.get(url)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    assert requests.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert requests.get(url, headers={"Authorization": f"Bearer {server.user_token}"}).status_code == 403
    assert requests.get(url, headers={"Authorization": f"Bearer {server.admin_token}"}).status_code == 200
    op = requests.get(f"{server.url}/openapi.json").json()["paths"]["/metrics"]["get"]
    assert "security" not in op and {"401", "403"} <= set(op["responses"])


def test_metrics_public_setting(tmp_path):
    live = LiveServer(make_settings(tmp_path, METRICS_PUBLIC=True, ALLOW_ANONYMOUS=False))
    try:
        assert requests.get(f"{live.url}/rest/dummy").status_code == 401  # anonymous callers are refused...
        r = requests.get(f"{live.url}/metrics", headers={"Authorization": "Bearer whatever"})
        assert r.status_code == 200 and r.headers["Content-Type"] == CONTENT_TYPE  # ...but not here
        parse(r.text)
        op = requests.get(f"{live.url}/openapi.json").json()["paths"]["/metrics"]["get"]
        assert op["security"] == []
    finally:
        live.stop()


def test_the_database_being_down_is_a_metric(server, monkeypatch):
    import opus.server.metrics as server_metrics

    def down(engine):
        raise OSError("connection refused")

    monkeypatch.setattr(server_metrics, "jobs_by_phase", down)
    families = scrape(server)
    assert value(families, "opus_database_up") == 0 and families["opus_jobs"]["samples"] == []


def test_label_values_are_escaped(server, monkeypatch):
    import opus.server.metrics as server_metrics

    monkeypatch.setattr(server_metrics, "jobs_by_phase", lambda engine: {'x"y\\z\nw': 1})
    r = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.admin_token}"})
    assert 'opus_jobs{phase="x\\"y\\\\z\\nw"} 1.0\n' in r.text
    assert value(parse(r.text), "opus_jobs", phase='x\\"y\\\\z\\nw') == 1


# ---- the shared files -----------------------------------------------------------------------------------------
COUNT_AND_EXIT = """
import json, os, sys
from pathlib import Path
from opus.observability import metrics
directory = Path(sys.argv[1])
own = metrics.for_directory(directory)
own.count("opus_callbacks_total", outcome="applied")
own.observe_request("GET", "200", 0.2)
totals = {f.name: [[s.name, s.labels, s.value] for s in f.samples] for f in own.collect()}
gauges = sorted(p.name for p in directory.glob("gauge_*"))
print(json.dumps({"pid": os.getpid(), "totals": totals, "gauges": gauges}))
"""


def count_in_another_process(directory: Path) -> dict:
    """Count one callback and one request in a process of its own, which then ends: what it saw."""
    done = subprocess.run([sys.executable, "-c", COUNT_AND_EXIT, str(directory)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def sample(seen: dict, family: str, name: str, **labels) -> float:
    (found,) = [v for n, lab, v in seen["totals"][family] if n == name and lab == labels]
    return found


def test_totals_sum_processes_and_keep_the_counts_of_dead_ones(tmp_path):
    directory = tmp_path / "metrics"
    first = count_in_another_process(directory)
    assert sample(first, "opus_callbacks", "opus_callbacks_total", outcome="applied") == 1
    count_in_another_process(directory)
    # Three processes of one server (one parent, as gunicorn workers replaced one after the other).
    seen = count_in_another_process(directory)
    assert sample(seen, "opus_callbacks", "opus_callbacks_total", outcome="applied") == 3
    assert sample(seen, "opus_http_requests", "opus_http_requests_total", method="GET", status="200") == 3
    assert sample(seen, "opus_http_request_duration_seconds", "opus_http_request_duration_seconds_count") == 3
    assert sample(seen, "opus_http_request_duration_seconds", "opus_http_request_duration_seconds_bucket",
                  le="0.25") == 3
    # The two that ended are not counted as processes: their live gauges are gone, their counters stay.
    assert sample(seen, "opus_processes", "opus_processes") == 1
    assert seen["gauges"] == [f"gauge_livesum_{seen['pid']}.db"]
    assert len(list(directory.glob("counter_*.db"))) == 3
    # A family nothing counted yet is still declared.
    assert seen["totals"]["opus_slurm_end_hints"] == []


def test_a_new_server_clears_the_directory(tmp_path):
    directory = tmp_path / "metrics"
    count_in_another_process(directory)
    # Its parent (this test) is not ours, and none of its processes is alive: a new server.
    found = {f.name: [(s.name, s.labels, s.value) for s in f.samples]
             for f in metrics.for_directory(directory).collect()}
    assert ("opus_callbacks_total", {"outcome": "applied"}, 0) in found["opus_callbacks"]
    assert found["opus_http_requests"] == [] and len(list(directory.glob("counter_*.db"))) == 1
    assert (directory / metrics.SERVER_FILE).read_text() == str(os.getppid())


def test_a_process_counts_for_one_directory_at_a_time(tmp_path):
    first = metrics.for_directory(tmp_path / "a")
    first.count("opus_callbacks_total", outcome="applied")
    second = metrics.for_directory(tmp_path / "b")  # e.g. the next in-process test server
    assert first.closed and not second.closed and metrics.for_directory(tmp_path / "b") is second
    first.count("opus_callbacks_total", outcome="applied")  # nothing, and no error
    first.observe_request("GET", "200", 0.1)
    second.count("opus_callbacks_total", outcome="ignored")

    def applied(families) -> list[float]:
        return [s.value for f in families for s in f.samples if s.labels == {"outcome": "applied"}]

    assert applied(second.collect()) == [0] and applied(first.collect()) == [1]


def test_counting_is_cheap(tmp_path):
    own = metrics.for_directory(tmp_path / "metrics")
    start = time.perf_counter()
    for _ in range(100_000):
        own.observe_request("GET", "200", 0.002)
    per_call = (time.perf_counter() - start) / 100_000
    assert per_call < 20e-6, f"{per_call * 1e6:.1f} µs per request"


# ---- request ids and job ids on log lines ------------------------------------------------------------------------
def test_request_id_round_trip(server):
    r = requests.get(f"{server.url}/availability", headers={"X-Request-ID": "trace-42.a_b"})
    assert r.headers["X-Request-ID"] == "trace-42.a_b"
    made = set()
    for bad in ("", "x" * 65, "has space", "semi;colon", "ünï", None):
        headers = {} if bad is None else {"X-Request-ID": bad}
        got = requests.get(f"{server.url}/no/such/route", headers=headers).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{16}", got), (bad, got)
        made.add(got)
    assert len(made) == 6  # a new one each time
    r = requests.post(f"{server.url}/rest/dummy", data={"text": "x"}, allow_redirects=False,
                      headers={"X-Request-ID": "create-1"})
    assert r.status_code == 303 and r.headers["X-Request-ID"] == "create-1"


def test_request_and_job_ids_on_log_lines(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    live = LiveServer(make_settings(tmp_path))
    try:
        joblist = live.services.jobs
        run = joblist.run

        def logged_run(*args, **kwargs):
            logging.getLogger("opus.test").info("running the job")
            return run(*args, **kwargs)

        monkeypatch.setattr(joblist, "run", logged_run)
        job_url = live.create()
        job_id = job_url.rsplit("/", 1)[1]
        r = requests.post(f"{job_url}/phase", data={"PHASE": "RUN"}, headers={"X-Request-ID": "req-run-1"},
                          allow_redirects=False)
        assert r.status_code == 303
        assert live.wait_final(job_url) == "COMPLETED"
        # A report sent by hand, with our request id: the callback names the job from the report.
        r = requests.post(f"{live.url}/handler/job_event", headers={"X-Request-ID": "req-report-1"}, json={
            "job_id": job_id, "token": job_token(live.settings, job_id), "phase": "COMPLETED"})
        assert r.status_code == 200

        def records(match):
            return [rec for rec in caplog.records if match in rec.getMessage()]

        (mine,) = records("running the job")
        assert (mine.request_id, mine.job_id) == ("req-run-1", job_id)
        line = logging.Formatter(LOG_FORMAT).format(mine)
        assert line.endswith(f"running the job [request=req-run-1 job={job_id}]")
        assert line.split(" ", 3)[2] == str(os.getpid())
        report = [rec for rec in records(f"job {job_id}: report COMPLETED") if rec.request_id == "req-report-1"]
        assert report and report[0].job_id == job_id
        # The wrapper's own reports came with request ids the server made, and name the job.
        wrapper = [rec for rec in records(f"job {job_id}: report EXECUTING")]
        assert wrapper and re.fullmatch(r"[0-9a-f]{16}", wrapper[0].request_id) and wrapper[0].job_id == job_id
        # Background threads (the dispatcher) have neither.
        (dispatcher,) = records("now dispatches local jobs")
        assert (dispatcher.request_id, dispatcher.job_id) == ("-", "-")
        assert logging.Formatter(LOG_FORMAT).format(dispatcher).endswith("[request=- job=-]")
    finally:
        live.stop()


def test_an_unhandled_error_is_logged_with_the_ids(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    live = LiveServer(make_settings(tmp_path))
    try:
        job_url = live.create()
        job_id = job_url.rsplit("/", 1)[1]

        def boom(*args, **kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr(live.services.jobs, "abort", boom)
        r = requests.post(f"{job_url}/phase", data={"PHASE": "ABORT"}, headers={"X-Request-ID": "req-boom"})
        assert r.status_code == 500 and r.headers["X-Request-ID"] == "req-boom"
        errors = [rec for rec in caplog.records if "unhandled error" in rec.getMessage()]
        assert errors and (errors[0].request_id, errors[0].job_id) == ("req-boom", job_id)
        # A job id in a URL that is not a sane token does not reach the log line as it is.
        monkeypatch.setattr(live.services.jobs, "abort", boom)
        requests.post(f"{live.url}/rest/dummy/a%20b%0Ac/phase", data={"PHASE": "ABORT"})
        assert all("\n" not in rec.job_id for rec in caplog.records)
    finally:
        live.stop()


# ---- several gunicorn workers ----------------------------------------------------------------------------------
@pytest.mark.e2e
def test_counters_are_totals_over_gunicorn_workers(tmp_path):
    import http.client

    from gunicorn_server import GunicornServer

    server = GunicornServer(tmp_path, workers=2, METRICS_PUBLIC=True).start()
    try:
        def get_metrics() -> dict:
            r = requests.get(f"{server.url}/metrics", headers={"Connection": "close"})
            assert r.status_code == 200
            return parse(r.text)

        def metrics_of_two_workers() -> dict | None:
            scraped = get_metrics()
            return scraped if value(scraped, "opus_processes") == 2 else None

        def availability_on_new_connections(n: int) -> None:
            for _ in range(n):
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                conn.request("GET", "/availability", headers={"Connection": "close"})
                assert conn.getresponse().status == 200
                conn.close()

        # Each worker counts from when it has built the app (gunicorn may report it before).
        before = wait_for(metrics_of_two_workers, what="both workers in the metrics")
        base = value(before, "opus_http_requests_total", method="GET", status="200")
        availability_on_new_connections(200)
        after = get_metrics()
        # +200, plus the scrape that produced `before` (counted once it was answered).
        assert value(after, "opus_http_requests_total", method="GET", status="200") == base + 201
        directory = server.data_dir / "run" / "metrics"
        served = {}
        for path in directory.glob("counter_*.db"):  # each worker's own file
            merged = MultiProcessCollector.merge([str(path)])
            (requests_family,) = [f for f in merged if f.name == "opus_http_requests"]
            served[int(path.stem.split("_")[1])] = sum(s.value for s in requests_family.samples
                                                       if s.labels["status"] == "200")
        assert set(served) == set(server.worker_pids()) and all(served.values()), served

        # A worker dies: its counts stay in the total, and its replacement is counted too.
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2,
                 what="the worker replaced")
        later = wait_for(metrics_of_two_workers, what="the new worker in the metrics")
        assert value(later, "opus_http_requests_total", method="GET", status="200") >= base + 202
        # The victim's counters stay (its file too), its live gauge is gone (gunicorn's child_exit).
        assert (directory / f"counter_{victim}.db").exists()
        assert not (directory / f"gauge_livesum_{victim}.db").exists()
        log = server.log_file.read_text()
        assert re.search(r"\[request=- job=-\]", log), "the log lines carry the context fields"
    finally:
        server.close()
