"""The measurements of one benchmark run (bench/run.py): throughput, list, GET and WAIT latencies."""

from __future__ import annotations

import re
import secrets
import threading
import time
from datetime import datetime

from common import (
    ERRORS,
    FINAL_PHASES,
    FORM,
    JOBNAME,
    JOBREF_RE,
    PHASE_RE,
    BenchError,
    Client,
    CpuMeter,
    RssSampler,
    create_job,
    log,
    proc_cpu,
    summary_ms,
)

WAIT_SECONDS = 30        # the WAIT= of the RUN -> COMPLETED loop
RUN_DEADLINE = 60.0      # one RUN -> COMPLETED repetition must finish within this
MAX_ERRORS_PER_CLIENT = 20
END_RE = re.compile(rb"<uws:endTime>([^<]+)</uws:endTime>")


def throughput(port: int, server_pid: int | None, clients_n: int, total: int, method: str, path: str,
               body=None, headers: dict | None = None, expect: int = 200, check=None,
               keep_latencies: bool = False) -> dict:
    """``total`` requests from ``clients_n`` threads, each on its own keep-alive connection opened
    before the clock starts.  ``body(i, n)`` makes the body of client i's n-th request; ``check``
    validates each answer.  Unexpected answers are counted (common.ERRORS), never fatal here."""
    per_client = [total // clients_n + (1 if i < total % clients_n else 0) for i in range(clients_n)]
    clients = [Client(port) for _ in range(clients_n)]
    latencies: list[list[float]] = [[] for _ in range(clients_n)]
    failed = [0] * clients_n
    barrier = threading.Barrier(clients_n + 1, timeout=60)
    try:
        for c in clients:  # connect before the clock starts
            c.request("GET", path if method == "GET" else "/availability")

        def work(i: int) -> None:
            c, lat = clients[i], latencies[i]
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                return
            for n in range(per_client[i]):
                t0 = time.perf_counter()
                try:
                    _, resp, data = c.request(method, path, body(i, n) if callable(body) else body, headers)
                    lat.append(time.perf_counter() - t0)
                    if resp.status != expect:
                        ERRORS.add(f"{method} {path}: HTTP {resp.status} (expected {expect})", repr(data[:300]))
                        failed[i] += 1
                    elif check is not None:
                        check(resp, data)
                except Exception as exc:  # counted; the other clients go on
                    if not isinstance(exc, BenchError):
                        ERRORS.add(f"{method} {path}: {type(exc).__name__}", str(exc))
                    failed[i] += 1
                if failed[i] >= MAX_ERRORS_PER_CLIENT:
                    log(f"client {i}: {failed[i]} errors, giving up")
                    return

        threads = [threading.Thread(target=work, args=(i,), name=f"client-{i}", daemon=True)
                   for i in range(clients_n)]
        for t in threads:
            t.start()
        with CpuMeter(server_pid) as meter:
            barrier.wait()
            for t in threads:
                t.join(timeout=600)
        if any(t.is_alive() for t in threads):
            ERRORS.add("a client did not finish within 600 s")
    finally:
        for c in clients:
            c.close()
    flat = [x for lat in latencies for x in lat]
    done = len(flat) - sum(failed)
    out = {"clients": clients_n, "requests": len(flat), "ok": done, "per_s": round(done / meter.wall, 1),
           **{f"latency_{k}": v for k, v in summary_ms(flat).items()}, **meter.as_dict()}
    if keep_latencies:
        out["latencies_s"] = flat
    return out


class Bench:
    def __init__(self, server, sizes: dict, seeder):
        self.server = server
        self.port = server.port
        self.sizes = sizes
        self.seeder = seeder
        self.results: dict[str, dict] = {}
        self.job_ids: list[str] = []

    def pid(self) -> int | None:
        return self.server.proc.pid if self.server.proc else None

    def cpu(self) -> CpuMeter:
        return CpuMeter(self.pid())

    # -- the job table ------------------------------------------------------------------------------
    def list_jobs(self, client: Client, query: str = "") -> bytes:
        _, body = client.expect(200, "GET", f"/rest/{JOBNAME}{query}")
        return body

    def count_jobs(self) -> int:
        client = Client(self.port)
        try:
            body = self.list_jobs(client)
        finally:
            client.close()
        self.job_ids = [m.decode() for m in JOBREF_RE.findall(body)]
        return len(self.job_ids)

    def fill_to(self, target: int) -> None:
        have = self.count_jobs()
        if have > target:
            raise BenchError(f"the table already holds {have} {JOBNAME} jobs, more than the {target} wanted")
        if have < target:
            t0 = time.perf_counter()
            self.seeder.add(target - have)
            log(f"seeded {target - have} jobs (bulk INSERT) in {time.perf_counter() - t0:.1f} s")
        have = self.count_jobs()
        if have != target:
            raise BenchError(f"GET /rest/{JOBNAME} shows {have} jobs, expected {target}")

    def warmup(self) -> None:
        """Open connections on every worker, load every code path once."""
        clients = [Client(self.port) for _ in range(8)]
        try:
            for i in range(self.sizes["warmup"]):
                c = clients[i % len(clients)]
                path = create_job(c, f"warm-up {i}")
                c.expect(200, "GET", path)
                c.expect(200, "GET", f"/rest/{JOBNAME}")
                c.expect(200, "GET", f"/rest/{JOBNAME}?LAST=100")
        finally:
            for c in clients:
                c.close()

    # -- job lists ------------------------------------------------------------------------------------
    def _time_list(self, query: str, reps: int, rss: bool = False) -> tuple[dict, bytes]:
        client = Client(self.port)
        times, body, peaks = [], b"", []
        try:
            self.list_jobs(client, query)  # connection + first-touch
            with self.cpu() as meter:
                for _ in range(reps):
                    if rss:
                        pids = self.server.worker_pids()
                        cpu0 = {p: proc_cpu(p) for p in pids}
                        with RssSampler(pids) as sampler:
                            t0 = time.perf_counter()
                            body = self.list_jobs(client, query)
                            times.append(time.perf_counter() - t0)
                        # the serving worker: the one that used the CPU meanwhile
                        p = max(pids, key=lambda q: proc_cpu(q) - cpu0[q])
                        before, after = sampler.before[p], sampler.after[p]
                        peaks.append({"pid": p, "rss_before_mb": round(before.get("VmRSS", 0) / 1024, 1),
                                      "rss_peak_mb": round(sampler.peak[p] / 1024, 1),
                                      "hwm_before_mb": round(before.get("VmHWM", 0) / 1024, 1),
                                      "hwm_after_mb": round(after.get("VmHWM", 0) / 1024, 1),
                                      "samples": sampler.samples})
                    else:
                        t0 = time.perf_counter()
                        body = self.list_jobs(client, query)
                        times.append(time.perf_counter() - t0)
        finally:
            client.close()
        out = {"query": query or "(none)", "response_bytes": len(body), "jobs_listed": len(JOBREF_RE.findall(body)),
               **summary_ms(times), **meter.as_dict()}
        if peaks:
            worst = max(peaks, key=lambda r: max(r["rss_peak_mb"], r["hwm_after_mb"]
                                                  if r["hwm_after_mb"] > r["hwm_before_mb"] else 0))
            out["memory"] = {"peak_rss_mb": max(worst["rss_peak_mb"],
                                                worst["hwm_after_mb"] if worst["hwm_after_mb"] > worst["hwm_before_mb"]
                                                else 0),
                             "per_request": peaks}
        return out, body

    def measure_list(self, key: str, jobs: int, reps: int) -> None:
        """The full list with exactly ``jobs`` jobs in the table (the historical 1,000-job figure)."""
        self.fill_to(jobs)
        out, _ = self._time_list("", reps)
        if out["jobs_listed"] != jobs:
            raise BenchError(f"the list showed {out['jobs_listed']} jobs, expected {jobs}")
        self.results[key] = {"jobs_in_table": jobs, **out}

    def measure_lists_at(self, jobs: int) -> None:
        """LAST=100, a PHASE filter and the full list (with the serving worker's peak RSS)."""
        s = self.sizes
        self.fill_to(jobs)
        tag = f"{jobs // 1000}k"
        last, body = self._time_list("?LAST=100", s["list_last_reps"])
        if last["jobs_listed"] != 100:
            raise BenchError(f"LAST=100 listed {last['jobs_listed']} jobs")
        self.results[f"list_last100_{tag}"] = {"jobs_in_table": jobs, **last}
        phase, body = self._time_list("?PHASE=ERROR", s["list_phase_reps"])
        if any(p != b"ERROR" for p in PHASE_RE.findall(body)):
            raise BenchError("PHASE=ERROR listed other phases")
        self.results[f"list_phase_{tag}"] = {"jobs_in_table": jobs, **phase}
        full, _ = self._time_list("", s["list_full_reps"], rss=True)
        if full["jobs_listed"] != jobs:
            raise BenchError(f"the full list showed {full['jobs_listed']} jobs, expected {jobs}")
        self.results[f"list_full_{tag}"] = {"jobs_in_table": jobs, **full}

    def measure_get(self, reps: int) -> None:
        ids = self.job_ids or []
        if not ids:
            raise BenchError("no job to GET")
        client = Client(self.port)
        times = []
        try:
            client.expect(200, "GET", f"/rest/{JOBNAME}/{ids[0]}")
            with self.cpu() as meter:
                for i in range(reps):
                    path = f"/rest/{JOBNAME}/{ids[(i * 7919) % len(ids)]}"
                    t0 = time.perf_counter()
                    _, body = client.expect(200, "GET", path)
                    times.append(time.perf_counter() - t0)
                    if b"<uws:jobId>" not in body:
                        ERRORS.add("GET /rest/<job>: not a job document", repr(body[:200]))
        finally:
            client.close()
        self.results["get_job"] = {"jobs_in_table": len(ids), **summary_ms(times), **meter.as_dict()}

    # -- throughput -------------------------------------------------------------------------------------
    def measure_create(self, key: str, clients_n: int, total: int) -> None:
        tag = secrets.token_hex(3)
        r = throughput(self.port, self.pid(), clients_n, total, "POST", f"/rest/{JOBNAME}",
                       body=lambda i, n: f"text=bench+{tag}+{i}+{n}", headers=FORM, expect=303)
        self.results[key] = {"jobs": r["ok"], "jobs_per_s": r["per_s"], **r}

    def measure_create_paired(self, key: str, clients_n: int, total: int, hello_server, pairs: int,
                              ceiling_requests: int) -> None:
        """``total`` creations by ``clients_n`` clients in ``pairs`` rounds, each right after a run of
        ``ceiling_requests`` on the ceiling server (up all along): a pair sees the machine in one state,
        so its ratio does not move with the load from elsewhere that moves both throughputs by 10-25 %
        within a minute on a shared VM.  ``key`` gets the totals of the creation rounds and
        ``key``_pairs each pair; the ratio is the median of the pairs' (report.py)."""
        tag = secrets.token_hex(3)
        rounds, latencies = [], []
        sizes = [total // pairs + (1 if i < total % pairs else 0) for i in range(pairs)]
        for i, n in enumerate(sizes):
            c = throughput(hello_server.port, hello_server.proc.pid, clients_n, ceiling_requests, "GET", "/hello")
            k = throughput(self.port, self.pid(), clients_n, n, "POST", f"/rest/{JOBNAME}",
                           body=lambda ci, m, i=i: f"text=bench+{tag}+{i}+{ci}+{m}", headers=FORM, expect=303,
                           keep_latencies=True)
            latencies += k.pop("latencies_s")
            rounds.append({"ceiling_per_s": c["per_s"], "ceiling_server_cpu_s": c["server_cpu_s"],
                           "ceiling_ok": c["ok"], "jobs": k["ok"], "jobs_per_s": k["per_s"],
                           "server_cpu_s": k["server_cpu_s"], "client_cpu_s": k["client_cpu_s"], "wall_s": k["wall_s"],
                           "ratio_pct": round(100 * k["per_s"] / c["per_s"], 1) if c["per_s"] else None})
        wall = sum(r["wall_s"] for r in rounds)
        ok = sum(r["jobs"] for r in rounds)
        server = sum(r["server_cpu_s"] for r in rounds)
        client = sum(r["client_cpu_s"] for r in rounds)
        self.results[key] = {"jobs": ok, "ok": ok, "requests": len(latencies), "clients": clients_n,
                             "jobs_per_s": round(ok / max(wall, 1e-9), 1), "per_s": round(ok / max(wall, 1e-9), 1),
                             "wall_s": round(wall, 3), "server_cpu_s": round(server, 3),
                             "server_cpu_pct": round(100 * server / max(wall, 1e-9), 1),
                             "client_cpu_s": round(client, 3), "client_cpu_pct": round(100 * client / max(wall, 1e-9), 1),
                             **{f"latency_{k}": v for k, v in summary_ms(latencies).items()}}
        self.results[key + "_pairs"] = rounds

    def measure_ceiling(self, hello_server, clients_n: int, total: int) -> None:
        r = throughput(hello_server.port, hello_server.proc.pid, clients_n, total, "GET", "/hello")
        self.results["ceiling"] = {"app": hello_server.app, **r}

    # -- RUN -> COMPLETED through WAIT --------------------------------------------------------------
    def measure_run(self, reps: int) -> None:
        client = Client(self.port, timeout=WAIT_SECONDS + 15)
        totals, post_run, first_exec, segments, end_to_seen = [], [], [], [], []
        try:
            for rep in range(reps):
                path = create_job(client, f"run {rep}")
                seen = {"PENDING": 0.0}
                last = "PENDING"
                t0 = time.perf_counter()
                client.expect(303, "POST", path + "/phase", "PHASE=RUN", FORM)
                post_run.append(time.perf_counter() - t0)
                deadline = t0 + RUN_DEADLINE
                for _ in range(100):  # bounded: each turn returns on a phase change or after WAIT s
                    if time.perf_counter() > deadline:
                        break
                    sent = time.time()
                    _, body = client.expect(200, "GET", f"{path}?WAIT={WAIT_SECONDS}&PHASE={last}")
                    returned = time.time()
                    m = PHASE_RE.search(body)
                    if not m:
                        raise BenchError(f"GET {path}: no phase in {body[:200]!r}")
                    last = m.group(1).decode()
                    seen.setdefault(last, time.perf_counter() - t0)
                    if last in FINAL_PHASES:
                        break
                if last != "COMPLETED":
                    ERRORS.add(f"RUN -> COMPLETED: job ended {last}", str(seen))
                    raise BenchError(f"job {path} ended in {last}, not COMPLETED (phases seen: {seen})")
                totals.append(seen["COMPLETED"])
                end = END_RE.search(body)
                if end:  # the wrapper's endTime (ms) -> this WAIT's return, when the WAIT was held then
                    ended = datetime.fromisoformat(end.group(1).decode().replace("Z", "+00:00")).timestamp()
                    if sent < ended:
                        end_to_seen.append(returned - ended)
                if "EXECUTING" in seen:
                    first_exec.append(seen["EXECUTING"])
                segments.append({k: round(v * 1000, 2) for k, v in seen.items()})
        finally:
            client.close()
        self.results["run_to_completed"] = {
            "repetitions": reps, **summary_ms(totals), "post_run": summary_ms(post_run),
            "executing_seen": summary_ms(first_exec) if first_exec else None,
            "executing_seen_in": len(first_exec), "samples_ms": segments[:10],
            "end_to_seen": summary_ms(end_to_seen) if end_to_seen else None}
