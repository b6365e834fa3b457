"""The SLURM benchmark's table and its JSON."""

from __future__ import annotations

from slurm_common import TARGETS, R


# ---- the report --------------------------------------------------------------------------------------------
def report_rows(results: dict, sizes: dict) -> list[dict]:
    def val(key, field):
        r = results.get(key)
        return None if r is None else r.get(field)

    n1 = val("post_run", "jobs") or sizes["run_jobs"]
    n2 = val("end_to_seen", "measured") or sizes["wait_jobs"]
    k = val("batch", "jobs") or sizes["batch_jobs"]
    rows = [
        ("post_run_p50", f"POST PHASE=RUN ({n1} dummy jobs): p50", val("post_run", "p50_ms"), "ms", None),
        ("post_run_p99", f"POST PHASE=RUN ({n1} dummy jobs): p99", val("post_run", "p99_ms"), "ms",
         ("<=", TARGETS["post_run_p99_ms"])),
        ("end_to_seen_p50", f"script end -> COMPLETED via WAIT ({n2}): p50", val("end_to_seen", "p50_ms"),
         "ms",
         ("<=", TARGETS["end_to_seen_p50_ms"])),
        ("end_to_seen_p99", f"script end -> COMPLETED via WAIT ({n2}): p99", val("end_to_seen", "p99_ms"),
         "ms",
         None),
        ("batch_raw", f"{k} x sleep 1, raw sbatch + squeue", val("batch", "raw_s"), "s", None),
        ("batch_opus", f"{k} x sleep 1, through OPUS", val("batch", "opus_s"), "s", None),
        ("batch_ratio", f"{k} x sleep 1: OPUS / raw", val("batch", "ratio"), "x",
         ("<=", TARGETS["batch_ratio"])),
        ("single_raw", "1 x sleep 1, raw (median)", val("single", "raw_median_s"), "s", None),
        ("single_opus", "1 x sleep 1, through OPUS (median)", val("single", "opus_median_s"), "s", None),
        ("single_ratio", "1 x sleep 1: OPUS / raw", val("single", "ratio"), "x", None),
    ]
    out = []
    for key, label, value, unit, target in rows:
        met = None
        if target is not None and value is not None:
            met = value >= target[1] if target[0] == ">=" else value <= target[1]
        out.append({"key": key, "label": label, "value": value, "unit": unit,
                    "target": None if target is None else f"{target[0]} {target[1]}", "met": met})
    return out


def _fmt(value, unit) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:.3f}"


def _seg(summary: dict | None) -> str:
    if not summary:
        return "-"
    return f"p50 {summary['p50_ms']:.0f} / p99 {summary['p99_ms']:.0f} ms"


def print_table(rows: list[dict], results: dict, meta: dict) -> None:
    print()
    cluster = meta["cluster"]
    print(f"OPUS SLURM benchmark: gunicorn {meta['workers']} workers, SLURM {cluster.get('SLURM_VERSION')} "
          f"on {cluster.get('cpus')} CPUs ({cluster.get('SchedulerParameters')})"
          f"{', QUICK smoke run (figures not meaningful)' if meta['quick'] else ''}"
          f"{'' if meta['complete'] else ' -- INCOMPLETE RUN (failed or interrupted)'}")
    pressure = meta.get("cpu_pressure_before_pct") or {}
    print(f"load average before: {meta['load_average_before']}, after: {meta['load_average_after']}; "
          + (f"before the run some task waited for a CPU {pressure.get('avg60')}% of the last minute; "
             if pressure else "")
          + f"run took {meta['duration_s']:.0f} s; other users' SLURM jobs seen: {meta['other_jobs_seen']}")
    head = f"{'measure':<46} {'result':>10} {'target':>9}  verdict"
    print(head)
    print("-" * len(head))
    for r in rows:
        unit = r["unit"]
        target = "-" if r["target"] is None else \
            r["target"].replace("<=", "≤").replace(">=", "≥") + (" ms" if unit == "ms" else "")
        verdict = "" if r["met"] is None else ("ok" if r["met"] else "MISSED")
        print(f"{r['label']:<46} {_fmt(r['value'], unit):>10} {target:>9}  {verdict}")
    print()
    r = results.get("post_run")
    b = results.get("breakdown") or {}
    if r:
        print(f"post_run: max {r['max_ms']:.1f} ms, mean {r['mean_ms']:.1f} ms; server-side (gunicorn %(D)s) "
              f"{_seg(b.get('post_run_server_side_ms'))} (worker running the dispatcher: "
              f"{_seg(b.get('post_run_server_side_dispatching_worker_ms'))}; other worker: "
              f"{_seg(b.get('post_run_server_side_other_worker_ms'))}); {r['jobs']} dummy jobs all COMPLETED "
              f"{r['drain_s']:.1f} s after the first RUN; some task waited for a CPU "
              f"{r.get('cpu_pressure_pct')}% of the time (/proc/pressure/cpu)")
        h = b.get("post_run_handler")
        if h:
            print(f"    inside the server (pre_request -> post_request hooks, the handler thread): wall "
                  f"{_seg(h['wall_ms'])}; on a CPU {_seg(h['cpu_ms'])}; "
                  f"waiting for a CPU {_seg(h['runqueue_ms'])}; "
                  f"blocked (GIL, locks, I/O) {_seg(h['rest_ms'])}")
        for p in b.get("post_run_slowest") or []:
            where = "" if p["server_ms"] is None else \
                f" ({p['server_ms']:.1f} ms in the " \
                f"{'dispatching' if p['dispatching_worker'] else 'other'} worker)"
            gc_note = f"; GC pause(s) in that worker meanwhile: {p['gc_during_ms']} ms" \
                if p["gc_during_ms"] else ""
            sched = "" if p["handler_ms"] is None else \
                (f"; the handler thread took {p['handler_ms']:.1f} ms: "
                 f"{p['handler_cpu_ms']:.1f} ms on a CPU, "
                 f"{p['handler_runqueue_ms']:.1f} ms waiting for one, "
                 f"{max(0.0, p['handler_ms'] - p['handler_cpu_ms'] - p['handler_runqueue_ms']):.1f} "
                 "ms blocked "
                 f"(GIL, locks, I/O); the client waited {p['client_runqueue_ms']:.1f} ms for a CPU")
            print(f"    slow RUN POST {p['post_ms']:.1f} ms{where}{gc_note}{sched}; meanwhile (±20 ms) "
                  f"{p['slurm_submits_during']} sbatch reached slurmctld and "
                  f"{p['sbatch_returned_during']} returned; "
                  f"{p['slurm_starts_within_100ms_before']} SLURM job(s) started within 100 ms before")
        g = b.get("gc_pauses_10ms") or {}
        print(f"    full (generation 2) garbage collections in the workers during step 1: "
              f"{b.get('post_run_full_gc_ms') or 'none'} (ms); "
              f"whole run: {g.get('full_collections', 0)} full, "
              f"{g.get('count', 0)} pause(s) >= 10 ms, longest {g.get('max_ms', 0)} ms")
    r = results.get("end_to_seen")
    if r:
        hit = b.get("end_to_seen_with_gc_pause") or []
        print(f"end_to_seen: {r['measured']}/{r['jobs']} measured (WAIT held when the script ended); "
              f"{r['jobs']} jobs took {r['wall_s']:.1f} s; samples overlapping a worker GC pause >= 10 ms: "
              + (", ".join(f"{h['end_to_seen_ms']} ms (GC {h['gc_ms']} ms)" for h in hit) if hit else "none"))
    r = results.get("single")
    if r:
        print(f"single: raw {r['raw_s']} s, OPUS {r['opus_s']} s")
    labels = {
        "run_post_to_sbatch_done": "RUN POST -> sbatch returned (server log)",
        "run_post_to_slurm_submit": "RUN POST -> slurmctld got the job",
        "slurm_submit_to_start": "slurmctld: submit -> start",
        "slurm_start_to_wrapper_start": "SLURM start -> wrapper startTime",
        "wrapper_start_to_end": "wrapper startTime -> endTime",
        "end_to_report_applied": "endTime -> report applied (server log)",
        "report_applied_to_seen": "report applied -> WAIT returned",
        "end_to_seen": "endTime -> COMPLETED seen by the client",
        "wrapper_end_to_slurm_end": "endTime -> slurmctld _job_complete",
        "slurm_start_to_end": "slurmctld: start -> _job_complete",
    }
    for step in ("post_run", "end_to_seen", "batch_raw", "batch_opus", "single_raw", "single_opus"):
        info = b.get(step)
        if not info:
            continue
        gap = info.get("cpu_refill_gap_ms")
        print(f"where the time goes, {step} ({info['jobs']} jobs"
              + (f"; SLURM span {info['slurm_span_s']:.1f} s, CPU use {info['cpu_use_pct']}%" if info.get(
                  "cpu_use_pct") is not None else "")
              + (f"; a freed CPU idle before the next start: {_seg(gap)}" if gap else "") + "):")
        for key, label in labels.items():
            if key in info["segments_ms"] and info["segments_ms"][key]:
                print(f"    {label:<44} {_seg(info['segments_ms'][key])}")
    R.print_server_log(meta)
