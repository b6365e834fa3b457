"""The measurements of the SLURM benchmark (see bench/slurm.py): RUN latency, end -> WAIT, and
OPUS against raw sbatch, with where the time went read from the logs."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit

from slurm_common import (
    END_RE,
    ERROR_RE,
    FINAL_PHASES,
    FORM,
    JOB_DEADLINE,
    JOBCOMP_LOG,
    PHASE_RE,
    SLURMCTLD_LOG,
    SQUEUE_POLL,
    START_RE,
    WAIT_SECONDS,
    BenchError,
    Client,
    R,
    log,
    percentile,
)
from slurm_logs import (
    LogTail,
    Ours,
    access_times,
    cpu_pressure,
    dispatcher_pids,
    jobcomp_workdirs,
    schedstat,
    server_events,
    slurm,
    slurmctld_events,
)
from slurm_server import SlurmServer


# ---- small helpers ------------------------------------------------------------------------------------
def summary_ms(seconds: list[float]) -> dict | None:
    return R.summary_ms(seconds) if seconds else None


def median(values: list[float]) -> float | None:
    return percentile(values, 50) if values else None


def parse_utc(text: bytes | str) -> float:
    """A UWS instant (``2026-11-27T06:09:11.486Z``) -> epoch seconds."""
    if isinstance(text, bytes):
        text = text.decode()
    return datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def job_path_of(location: str, jobname: str) -> str:
    path = urlsplit(location).path
    if not path.startswith(f"/rest/{jobname}/"):
        raise BenchError(f"unexpected Location {location!r}")
    return path


def create(client: Client, jobname: str, fields: dict) -> tuple[str, float]:
    """POST a new job; returns (its path, client epoch time just before the POST)."""
    t = time.time()
    resp, _ = client.expect(303, "POST", f"/rest/{jobname}", urlencode(fields), FORM)
    return job_path_of(resp.getheader("Location") or "", jobname), t


class Chase:
    """Follow one job through blocking WAITs until it is final; remember when each phase was seen."""

    def __init__(self, path: str):
        self.path = path
        self.seen: dict[str, float] = {}      # phase -> client epoch time of the answer that first said it
        self.phase: str | None = None
        self.body = b""
        self.final_sent = self.final_got = None  # the request whose answer was the final phase
        self.final_asked = None                  # the PHASE= that request waited on

    def run(self, client: Client, deadline: float) -> "Chase":
        for _ in range(1000):  # bounded: each turn ends on a phase change or after WAIT s
            if time.monotonic() > deadline:
                raise BenchError(f"{self.path} was still {self.phase} at the deadline")
            url = self.path if self.phase is None else f"{self.path}?WAIT={WAIT_SECONDS}&PHASE={self.phase}"
            sent = time.time()
            _, body = client.expect(200, "GET", url)
            got = time.time()
            m = PHASE_RE.search(body)
            if not m:
                raise BenchError(f"GET {url}: no phase in {body[:200]!r}")
            asked, self.phase, self.body = self.phase, m.group(1).decode(), body
            self.seen.setdefault(self.phase, got)
            if self.phase in FINAL_PHASES:
                self.final_sent, self.final_got, self.final_asked = sent, got, asked
                return self
        raise BenchError(f"{self.path}: too many WAIT turns")

    def times(self) -> tuple[float | None, float | None]:
        s, e = START_RE.search(self.body), END_RE.search(self.body)
        return (parse_utc(s.group(1)) if s else None, parse_utc(e.group(1)) if e else None)

    def require_completed(self) -> None:
        if self.phase != "COMPLETED":
            m = ERROR_RE.search(self.body)
            raise BenchError(f"{self.path} ended {self.phase}, not COMPLETED"
                             + (f": {m.group(1).decode(errors='replace')}" if m else ""))


# ---- the measurements --------------------------------------------------------------------------------------
class Bench:
    def __init__(self, server: SlurmServer, sizes: dict, ours: Ours, cpus: int | None):
        self.server = server
        self.port = server.port
        self.sizes = sizes
        self.ours = ours
        self.cpus = cpus
        self.results: dict[str, dict] = {}
        self.records: dict[str, list[dict]] = {}   # step -> per-job client-side records
        self.raw_ids: dict[str, list[str]] = {}    # step -> raw SLURM ids
        self.others_seen: dict[str, int] = {}
        self.ctld = LogTail(SLURMCTLD_LOG)
        self.jobcomp = LogTail(JOBCOMP_LOG)

    def client(self) -> Client:
        return Client(self.port, timeout=WAIT_SECONDS + 15)

    def note_others(self, step: str) -> None:
        _, others = self.ours.queue()
        self.others_seen[step] = len(others)
        if others:
            log(f"warning: {len(others)} other SLURM job(s) in the queue during '{step}' "
                f"({', '.join(others[:5])}): they share the {self.cpus} CPUs and distort the figures")

    # -- warm-up -------------------------------------------------------------------------------------
    def warmup(self) -> None:
        """A few dummy jobs through the whole path (create, POST /phase RUN, sbatch, WAIT), each on a new
        connection so that both workers serve some; not measured."""
        for i in range(self.sizes["warmup"]):
            c = self.client()
            try:
                path, _ = create(c, "dummy", {"text": f"warm-up {i}"})
                c.expect(303, "POST", path + "/phase", "PHASE=RUN", FORM)
                Chase(path).run(c, time.monotonic() + JOB_DEADLINE).require_completed()
            finally:
                c.close()
        self.ours.wait_gone()

    # -- 1. POST PHASE=RUN ------------------------------------------------------------------------------
    def measure_post_run(self, n: int) -> None:
        c = self.client()
        records = []
        try:
            paths = [create(c, "dummy", {"text": f"run {i}"})[0] for i in range(n)]
            self.note_others("post_run")
            times = []
            me = [os.getpid()]
            key = f"{os.getpid()}/{threading.get_native_id()}"
            psi0, wall0 = cpu_pressure(), time.monotonic()
            for path in paths:
                before = schedstat(me).get(key, (0, 0))  # outside the timed span
                t_wall = time.time()
                t0 = time.perf_counter()
                c.expect(303, "POST", path + "/phase", "PHASE=RUN", FORM)
                times.append(time.perf_counter() - t0)
                after = schedstat(me).get(key, (0, 0))
                records.append({"path": path, "run_posted": t_wall, "post_s": times[-1],
                                "client_runqueue_ms": (after[1] - before[1]) / 1e6})
            psi1, wall1 = cpu_pressure(), time.monotonic()
            deadline = time.monotonic() + JOB_DEADLINE + n * 2.0
            bad = []
            for rec in records:
                ch = Chase(rec["path"]).run(c, deadline)
                rec["completed_seen"] = ch.seen.get(ch.phase)
                rec["start"], rec["end"] = ch.times()
                if ch.phase != "COMPLETED":
                    bad.append(f"{rec['path']} {ch.phase}")
        finally:
            c.close()
        if bad:
            raise BenchError(f"{len(bad)} dummy job(s) did not complete: {bad[:3]}")
        last_seen = max(r["completed_seen"] for r in records)
        self.records["post_run"] = records
        self.results["post_run"] = {
            "jobs": n, **summary_ms(times),
            "cpu_pressure_pct": None if psi0 is None or psi1 is None else
            round(100 * (psi1 - psi0) / 1e6 / (wall1 - wall0), 1),
            "drain_s": round(last_seen - records[0]["run_posted"], 2),
            "note": "dummy jobs created PENDING first; only POST <job>/phase PHASE=RUN is timed, one after "
                    "the other on one keep-alive connection; then every job is followed to COMPLETED",
        }
        self.results["post_run"]["cluster_idle_after_s"] = round(self.ours.wait_gone(), 2)

    # -- 2. end of the script -> COMPLETED seen through WAIT ----------------------------------------------
    def measure_end_to_seen(self, n: int) -> None:
        records: list[dict] = [{} for _ in range(n)]
        errors: list[str] = []
        start = threading.Barrier(n + 1, timeout=60)

        def work(i: int) -> None:
            c = self.client()
            rec = records[i]
            try:
                start.wait()
                rec["path"], rec["run_posted"] = create(c, "sleep", {"seconds": "1", "PHASE": "RUN"})
                ch = Chase(rec["path"]).run(c, time.monotonic() + JOB_DEADLINE + n * 3.0)
                ch.require_completed()
                rec["start"], rec["end"] = ch.times()
                rec["completed_seen"] = ch.final_got
                rec["final_sent"] = ch.final_sent
                rec["final_asked"] = ch.final_asked
                rec["executing_seen"] = ch.seen.get("EXECUTING")
            except Exception as exc:
                errors.append(f"job {i}: {exc}")
                try:
                    start.abort()
                except Exception:
                    pass
            finally:
                c.close()

        threads = [threading.Thread(target=work, args=(i,), name=f"wait-{i}", daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        self.note_others("end_to_seen")
        try:
            start.wait()
        except threading.BrokenBarrierError:
            pass
        deadline = time.monotonic() + JOB_DEADLINE + n * 3.0 + 30
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            errors.append("a client thread did not finish in time")
        if errors:
            raise BenchError("end -> COMPLETED run failed: " + "; ".join(errors[:3]))
        valid, late = [], 0
        for rec in records:
            # Only a WAIT that was held, on PHASE=EXECUTING, when the script ended measures the wake-up.
            rec["valid"] = rec["final_asked"] == "EXECUTING" and rec["end"] is not None \
                and rec["final_sent"] < rec["end"]
            rec["end_to_seen"] = rec["completed_seen"] - rec["end"] if rec["end"] is not None else None
            if rec["valid"]:
                valid.append(rec["end_to_seen"])
            else:
                late += 1
        self.records["end_to_seen"] = records
        if not valid:
            raise BenchError("no job's WAIT was in place when its script ended")
        self.results["end_to_seen"] = {
            "jobs": n, "measured": len(valid), "not_measured_wait_not_held": late, **summary_ms(valid),
            "wall_s": round(max(r["completed_seen"] for r in records)
                            - min(r["run_posted"] for r in records), 2),
            "note": "sleep jobs (seconds=1) all created with PHASE=RUN at once, one client thread each; each "
                    "thread follows its job with WAIT=30 and, once EXECUTING, holds WAIT=30&PHASE=EXECUTING; "
                    "figure = client clock when that WAIT returned COMPLETED - the job's endTime",
        }
        self.results["end_to_seen"]["cluster_idle_after_s"] = round(self.ours.wait_gone(), 2)

    # -- 3. OPUS vs raw sbatch ------------------------------------------------------------------------------
    def opus_batch(self, k: int, step: str) -> float:
        c = self.client()
        records = []
        try:
            t0 = time.time()
            for _ in range(k):
                path, posted = create(c, "sleep", {"seconds": "1", "PHASE": "RUN"})
                records.append({"path": path, "run_posted": posted})
            deadline = time.monotonic() + JOB_DEADLINE + k * 3.0
            for rec in records:
                ch = Chase(rec["path"]).run(c, deadline)
                ch.require_completed()
                rec["completed_seen"] = ch.final_got
                rec["start"], rec["end"] = ch.times()
            t1 = max(r["completed_seen"] for r in records)
        finally:
            c.close()
        self.records.setdefault(step, []).extend(records)
        return t1 - t0

    def raw_batch(self, k: int, step: str) -> float:
        rawdir = self.server.workdir / "raw"
        rawdir.mkdir(exist_ok=True)
        ids = []
        t0 = time.time()
        for _ in range(k):
            done = slurm("sbatch", "--parsable", f"--job-name={self.ours.raw_name}", f"--chdir={rawdir}",
                         f"--output={rawdir}/%j.out", "--wrap", "sleep 1")
            if done.returncode != 0 or not done.stdout.strip():
                raise BenchError(f"sbatch failed: {done.stderr.strip() or done.stdout.strip()}")
            ids.append(done.stdout.strip().split(";")[0])
        self.raw_ids.setdefault(step, []).extend(ids)
        deadline = time.monotonic() + JOB_DEADLINE + k * 3.0
        while True:
            q = slurm("squeue", "-h", f"--name={self.ours.raw_name}", "-o", "%i")
            if q.returncode == 0 and not q.stdout.split():
                return time.time() - t0  # the moment the raw client sees them all gone
            if time.monotonic() > deadline:
                raise BenchError(f"raw SLURM jobs {q.stdout.split()[:5]} still queued at the deadline")
            time.sleep(SQUEUE_POLL)

    def measure_ratio(self, k: int, reps: int) -> None:
        self.ours.wait_gone()
        self.note_others("batch")
        log(f"{k} x sleep 1, raw sbatch")
        raw = self.raw_batch(k, "batch_raw")
        self.ours.wait_gone()
        log(f"{k} x sleep 1, through OPUS")
        opus = self.opus_batch(k, "batch_opus")
        self.ours.wait_gone()
        self.results["batch"] = {
            "jobs": k, "raw_s": round(raw, 3), "opus_s": round(opus, 3), "ratio": round(opus / raw, 3),
            "note": "raw: K x sbatch --wrap 'sleep 1' then squeue polled every 0.2 s until none is listed "
                    "(COMPLETING included); OPUS: K x POST /rest/sleep seconds=1 PHASE=RUN then WAIT on each "
                    "until COMPLETED; each from the first submission to the last completion seen",
        }
        singles_raw, singles_opus = [], []
        for i in range(reps):
            log(f"one job, raw then OPUS ({i + 1}/{reps})")
            singles_raw.append(self.raw_batch(1, "single_raw"))
            self.ours.wait_gone()
            singles_opus.append(self.opus_batch(1, "single_opus"))
            self.ours.wait_gone()
        r, o = median(singles_raw), median(singles_opus)
        self.results["single"] = {"repetitions": reps, "raw_s": [round(x, 3) for x in singles_raw],
                                  "opus_s": [round(x, 3) for x in singles_opus], "raw_median_s": round(r, 3),
                                  "opus_median_s": round(o, 3), "ratio": round(o / r, 3)}

    # -- where the time goes ---------------------------------------------------------------------------------
    def analyse(self) -> None:
        """Join the client records with slurmctld's, the jobcomp and the server's logs."""
        ctld = slurmctld_events(self.ctld.read())
        comp = jobcomp_workdirs(self.jobcomp.read(), self.server.data_dir / "jobs")
        srv_text = self.server.log_file.read_text(errors="replace") if self.server.log_file.exists() else ""
        srv = server_events(srv_text)
        leaders = dispatcher_pids(srv_text)
        access = access_times(self.server.access_log.read_text(errors="replace")
                              if self.server.access_log.exists() else "")
        out: dict[str, dict] = {}
        for step, records in self.records.items():
            seg: dict[str, list[float]] = {}

            def add(name, a, b, seg=seg):
                if a is not None and b is not None:
                    seg.setdefault(name, []).append(b - a)

            spans = []
            for rec in records:
                job_id = rec["path"].rsplit("/", 1)[1]
                s = srv.get(job_id, {})
                sid = s.get("slurm_id") or comp.get(job_id)
                ev = ctld.get(sid, {}) if sid else {}
                add("run_post_to_sbatch_done", rec.get("run_posted"), s.get("submitted"))
                add("run_post_to_slurm_submit", rec.get("run_posted"), ev.get("submit"))
                add("slurm_submit_to_start", ev.get("submit"), ev.get("start"))
                add("slurm_start_to_wrapper_start", ev.get("start"), rec.get("start"))
                add("wrapper_start_to_end", rec.get("start"), rec.get("end"))
                add("end_to_report_applied", rec.get("end"), s.get("applied_COMPLETED"))
                if step in ("end_to_seen", "single_opus"):  # elsewhere jobs are followed one after the other
                    add("report_applied_to_seen", s.get("applied_COMPLETED"), rec.get("completed_seen"))
                    add("end_to_seen", rec.get("end"), rec.get("completed_seen"))
                add("wrapper_end_to_slurm_end", rec.get("end"), ev.get("end"))
                if ev.get("start") and ev.get("end"):
                    spans.append((ev["start"], ev["end"]))
            out[step] = {"jobs": len(records), "segments_ms": {k: summary_ms(v) for k, v in seg.items()},
                         **self._gaps(spans)}
        for step, ids in self.raw_ids.items():
            seg = {}
            spans = []
            for sid in ids:
                ev = ctld.get(sid, {})
                if ev.get("submit") and ev.get("start"):
                    seg.setdefault("slurm_submit_to_start", []).append(ev["start"] - ev["submit"])
                if ev.get("start") and ev.get("end"):
                    seg.setdefault("slurm_start_to_end", []).append(ev["end"] - ev["start"])
                    spans.append((ev["start"], ev["end"]))
            out[step] = {"jobs": len(ids), "segments_ms": {k: summary_ms(v) for k, v in seg.items()},
                         **self._gaps(spans)}
        by_path = {p[:-len("/phase")]: (t, pid) for m, p, st, t, pid in access
                   if m == "POST" and p.endswith("/phase")}
        post = [by_path[r["path"]] for r in self.records.get("post_run", []) if r["path"] in by_path]
        if post:  # step 1's RUN POSTs only (not the warm-up's)
            out["post_run_server_side_ms"] = summary_ms([t for t, _ in post])
            out["post_run_server_side_dispatching_worker_ms"] = summary_ms(
                [t for t, pid in post if pid in leaders])
            out["post_run_server_side_other_worker_ms"] = summary_ms(
                [t for t, pid in post if pid not in leaders])
        gcs = self.server.gc_pauses()
        requests = self.server.request_log()
        out["post_run_slowest"] = self._slowest_posts(ctld, srv, by_path, leaders, gcs, requests)
        handled = [requests[f"POST {r['path']}/phase"] for r in self.records.get("post_run", [])
                   if f"POST {r['path']}/phase" in requests]
        if handled:  # the RUN POST inside the server: handler time = CPU + run-queue wait + the rest
            out["post_run_handler"] = {
                "wall_ms": summary_ms([h["wall_ms"] / 1000 for h in handled]),
                "cpu_ms": summary_ms([h["cpu_ms"] / 1000 for h in handled]),
                "runqueue_ms": summary_ms([h["runqueue_ms"] / 1000 for h in handled]),
                "rest_ms": summary_ms([max(0.0, h["wall_ms"] - h["cpu_ms"] - h["runqueue_ms"]) / 1000
                                       for h in handled])}
        recs = self.records.get("post_run", [])
        if recs:
            a, b = recs[0]["run_posted"], recs[-1]["run_posted"] + recs[-1]["post_s"]
            during = [round(ms, 1) for t, g, ms, _ in gcs if g == 2 and a <= t <= b]
            out["post_run_full_gc_ms"] = during
        out["gc_pauses_10ms"] = {"count": sum(ms >= 10 for *_, ms, _ in gcs),
                                 "max_ms": round(max((ms for *_, ms, _ in gcs), default=0.0), 1),
                                 "full_collections": sum(g == 2 for _, g, _, _ in gcs)}
        # Step 2 samples during which a worker paused >= 10 ms for garbage collection.
        hit = []
        for rec in self.records.get("end_to_seen", []):
            if rec.get("valid"):
                pauses = [round(ms, 1) for t, g, ms, _ in gcs
                          if ms >= 10 and rec["end"] - 0.05 <= t <= rec["completed_seen"]]
                if pauses:
                    hit.append({"end_to_seen_ms": round(1000 * rec["end_to_seen"], 1), "gc_ms": pauses})
        out["end_to_seen_with_gc_pause"] = hit
        self.results["breakdown"] = out

    def _slowest_posts(self, ctld: dict, srv: dict, by_path: dict, leaders: set, gcs: list, requests: dict,
                       count: int = 5) -> list[dict]:
        """The slowest RUN POSTs of step 1, with what SLURM and the dispatcher were doing meanwhile."""
        records = sorted(self.records.get("post_run", []), key=lambda r: -r["post_s"])[:count]
        submits = [ev["submit"] for ev in ctld.values() if "submit" in ev]
        starts = [ev["start"] for ev in ctld.values() if "start" in ev]
        sbatch_done = [e["submitted"] for e in srv.values() if "submitted" in e]
        out = []
        for r in records:
            a, b = r["run_posted"], r["run_posted"] + r["post_s"]
            server_s, pid = by_path.get(r["path"], (None, None))
            thread = requests.get(f"POST {r['path']}/phase")
            out.append({"job": r["path"].rsplit("/", 1)[1], "post_ms": round(1000 * r["post_s"], 1),
                        "server_ms": None if server_s is None else round(1000 * server_s, 1),
                        "handler_ms": None if thread is None else round(thread["wall_ms"], 1),
                        "handler_cpu_ms": None if thread is None else round(thread["cpu_ms"], 1),
                        "handler_runqueue_ms": None if thread is None else round(thread["runqueue_ms"], 1),
                        "client_runqueue_ms": round(r.get("client_runqueue_ms", 0.0), 1),
                        "dispatching_worker": None if pid is None else pid in leaders,
                        "gc_during_ms": [round(ms, 1) for t, g, ms, w in gcs
                                         if a - 0.001 <= t <= b and ms >= 2 and (pid is None or w == pid)],
                        "slurm_submits_during": sum(a - 0.02 <= t <= b + 0.02 for t in submits),
                        "sbatch_returned_during": sum(a - 0.02 <= t <= b + 0.02 for t in sbatch_done),
                        "slurm_starts_within_100ms_before": sum(a - 0.1 <= t <= b for t in starts)})
        return out

    def _gaps(self, spans: list[tuple[float, float]]) -> dict:
        """CPU use of SLURM jobs, and how long a freed CPU stayed idle while jobs were waiting."""
        if not spans:
            return {}
        spans.sort()
        first, last = spans[0][0], max(e for _, e in spans)
        busy = sum(e - s for s, e in spans)
        # A job that started after the first `cpus` waited for a CPU: the gap is from the latest end
        # before its start (that freed its CPU) to its start.
        refill = []
        cpus = self.cpus or 1
        for i, (s, _) in enumerate(spans):
            if i < cpus:
                continue
            before = [e for _, e in spans[:i] if e <= s]
            if before:
                refill.append(s - max(before))
        return {"slurm_span_s": round(last - first, 3), "slurm_busy_cpu_s": round(busy, 3),
                "cpu_use_pct": round(100 * busy / ((last - first) * cpus), 1) if last > first else None,
                "cpu_refill_gap_ms": summary_ms(refill)}

    # -- the whole run ---------------------------------------------------------------------------------------
    def run(self) -> None:
        s = self.sizes
        log("warming up")
        self.warmup()
        log(f"1. POST PHASE=RUN, {s['run_jobs']} dummy jobs")
        self.measure_post_run(s["run_jobs"])
        log(f"2. script end -> COMPLETED through WAIT, {s['wait_jobs']} sleep jobs")
        self.measure_end_to_seen(s["wait_jobs"])
        log(f"3. {s['batch_jobs']} x sleep 1: OPUS vs raw sbatch")
        self.measure_ratio(s["batch_jobs"], s["single_reps"])
