"""The table bench/run.py prints: each figure beside its target, the original OPUS and, for
throughputs, as a fraction of the in-run ceiling (a bare bottle route under the same gunicorn)."""

from __future__ import annotations

import statistics

from common import CLIENT_APPROACH

CREATE_CLIENTS = 16


def size_tag(jobs: int) -> str:
    return f"{jobs // 1000}k" if jobs % 1000 == 0 else str(jobs)


def _get(results: dict, key: str, *path):
    r = results.get(key)
    for p in path:
        if r is None:
            return None
        r = r.get(p)
    return r


def report_rows(results: dict, sizes: dict, database: str) -> list[dict]:
    """key, label, value, unit, target, baseline, met, and the fraction of the ceiling."""
    R = results
    ceiling = _get(R, "ceiling", "per_s")
    create_target = 1000 if database == "sqlite" else 600
    rows = [
        ("ceiling", f"ceiling: bare bottle route, {CREATE_CLIENTS} clients", _get(R, "ceiling", "per_s"),
         "/s", None, None),
        ("create_1", f"jobs created/s, 1 client ({sizes['create_1']} jobs)", _get(R, "create_1", "jobs_per_s"),
         "/s", (">=", 400), 9.8),
        ("create_16", f"jobs created/s, {CREATE_CLIENTS} clients ({sizes['create_16']} jobs)",
         _get(R, "create_16", "jobs_per_s"), "/s", (">=", create_target), 9.6),
        ("list_small", f"job list, {sizes['list_small']} jobs: p50", _get(R, "list_small", "p50_ms"), "ms",
         ("<=", 10), 87),
        ("list_small_p99", f"job list, {sizes['list_small']} jobs: p99", _get(R, "list_small", "p99_ms"), "ms",
         None, None),
    ]
    # The median of the pairs' ratios (Bench.measure_create_paired): each creation round against the
    # ceiling run just before it.
    pairs = [p["ratio_pct"] for p in R.get("create_16_pairs") or [] if p.get("ratio_pct") is not None]
    fraction = statistics.median(pairs) if pairs else None
    rows.insert(3, ("create_16_pct", f"  created/s / ceiling, median of {len(pairs)} pairs",
                    fraction, "%", (">=", 50 if database == "sqlite" else 35), None))
    # CPU per request of the server (all its processes), from /proc: what a loaded machine inflates
    # least (throughputs fall when other programs take the cores; CPU per job hardly moves).
    rows[4:4] = [
        ("ceiling_cpu", "  server CPU per request: ceiling", _cpu_ms(R, "ceiling"), "ms", None, None),
        ("create_1_cpu", "  server CPU per job created: 1 client", _cpu_ms(R, "create_1"), "ms", None, None),
        ("create_16_cpu", f"  server CPU per job created: {CREATE_CLIENTS} clients", _cpu_ms(R, "create_16"), "ms",
         None, None),
    ]
    for jobs in (sizes["list_mid"], sizes["list_big"]):
        tag, big = size_tag(jobs), jobs == sizes["list_big"]
        n = f"{jobs:,}"
        rows += [
            (f"list_last100_{tag}", f"list LAST=100 of {n}: p50", _get(R, f"list_last100_{tag}", "p50_ms"), "ms",
             ("<=", 3) if big else None, None),  # issue 18 (it was 5 ms before)
            (f"list_last100_{tag}_p99", f"list LAST=100 of {n}: p99", _get(R, f"list_last100_{tag}", "p99_ms"),
             "ms", None, None),
            (f"list_phase_{tag}", f"list PHASE=ERROR of {n}: p50", _get(R, f"list_phase_{tag}", "p50_ms"), "ms",
             None, None),
            (f"list_phase_{tag}_p99", f"list PHASE=ERROR of {n}: p99", _get(R, f"list_phase_{tag}", "p99_ms"),
             "ms", None, None),
            (f"list_full_{tag}", f"full list of {n}: p50", _get(R, f"list_full_{tag}", "p50_ms"), "ms",
             None, None),
            (f"list_full_{tag}_p99", f"full list of {n}: p99", _get(R, f"list_full_{tag}", "p99_ms"), "ms",
             None, None),
            (f"list_full_{tag}_rss", f"full list of {n}: worker peak RSS",
             _get(R, f"list_full_{tag}", "memory", "peak_rss_mb"), "MB", ("<", 150) if big else None, None),
        ]
    w = sizes["waiters"]
    rows += [
        ("get_job", "GET one job: p50", _get(R, "get_job", "p50_ms"), "ms", None, 59),
        ("get_job_p99", "GET one job: p99", _get(R, "get_job", "p99_ms"), "ms", None, None),
        ("run_to_completed", "PHASE=RUN -> COMPLETED (WAIT): p50", _get(R, "run_to_completed", "p50_ms"), "ms",
         ("<=", 50), 671),  # issue 18 (it was 100 ms before)
        ("run_to_completed_p99", "PHASE=RUN -> COMPLETED (WAIT): p99", _get(R, "run_to_completed", "p99_ms"),
         "ms", None, None),
        ("end_to_seen", "job end -> WAIT returns: p50", _get(R, "run_to_completed", "end_to_seen", "p50_ms"),
         "ms", ("<=", 10), None),  # issue 18 (it was 20 ms before)
        ("end_to_seen_p99", "job end -> WAIT returns: p99", _get(R, "run_to_completed", "end_to_seen", "p99_ms"),
         "ms", None, None),
        ("waiters_held", f"WAITs held at once (of {w})", _waiters_held(R), "", (">=", w), None),
        ("waiters_other_p50", "  other requests meanwhile: p50", _get(R, "waiters", "with_waiters", "all", "p50_ms"),
         "ms", None, None),
        ("waiters_other_p99", "  other requests meanwhile: p99", _get(R, "waiters", "with_waiters", "all", "p99_ms"),
         "ms", ("<=", 100), None),
        ("waiters_rss", "  memory per waiter (worker RSS)", _get(R, "waiters", "rss_per_waiter_kb"), "KB",
         None, None),
        ("waiters_return_p99", "  abort -> its WAIT returns: p99", _get(R, "waiters", "abort_to_return", "p99_ms"),
         "ms", None, None),
        ("one_job_waiters_last", f"{_one_job_n(R)} WAITs on one job: ABORT -> last returned",
         _get(R, "waiters_one_job", "abort_to_return", "max_ms"), "ms", ("<=", 200), None),
        ("one_job_waiters_p50", "  ABORT -> its WAIT returns: p50",
         _get(R, "waiters_one_job", "abort_to_return", "p50_ms"), "ms", None, None),
        ("errors", "errors (unexpected answers, exceptions)", _get(R, "errors", "total"), "", ("<=", 0), None),
    ]
    out = []
    for key, label, value, unit, target, baseline in rows:
        met = None
        if target is not None and value is not None:
            op, t = target
            met = value >= t if op == ">=" else value <= t if op == "<=" else value < t
        frac = round(100 * value / ceiling, 1) if unit == "/s" and value is not None and ceiling else None
        out.append({"key": key, "label": label, "value": value, "unit": unit,
                    "target": None if target is None else f"{target[0]} {target[1]}",
                    "baseline": baseline, "met": met, "pct_of_ceiling": frac})
    return out


def _cpu_ms(R: dict, key: str):
    r = R.get(key)
    if not r or not r.get("ok") or r.get("server_cpu_s") is None:
        return None
    return round(1000 * r["server_cpu_s"] / r["ok"], 3)


def _one_job_n(R: dict):
    return (R.get("waiters_one_job") or {}).get("waiters", "all")


def _waiters_held(R: dict):
    w = R.get("waiters")
    if not w or "workers_held" not in w:
        return None
    # Held = read by a server thread and not answered (waiters.held_on_server): the thread count
    # undercounts (idle pool threads left by earlier steps take waiters without it growing).
    return max(0, w.get("held_on_server", 0) - w.get("returned_early", 0))


def _fmt(value, unit) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 1 else f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit in ("MB", "KB"):
        return f"{value:.1f} {unit}"
    if unit == "%":
        return f"{value:.1f}%"
    return f"{value:,}"


def print_table(rows: list[dict], results: dict, meta: dict) -> None:
    g = meta.get("gunicorn") or {}
    print()
    print(f"OPUS benchmark: {meta['database']}, gunicorn {meta['workers']} workers × {g.get('threads')} threads "
          f"({g.get('worker_class')}, reuse_port={g.get('reuse_port')}), {meta['cpu_count']} CPUs"
          f"{', QUICK smoke run (figures not meaningful)' if meta['quick'] else ''}"
          f"{'' if meta['complete'] else ' -- INCOMPLETE RUN (failed or interrupted)'}")
    print(f"client: {CLIENT_APPROACH}")
    print(f"load average (1 min) before the run: {meta['load_average_before']} (after, this run included: "
          f"{meta['load_average_after']}); run took {meta['duration_s']:.0f} s"
          + (f"; whole machine {meta['machine_busy_pct']:.0f}% busy, {meta['steal_pct']:.1f}% steal"
             if "steal_pct" in meta else ""))
    head = f"{'measure':<44} {'result':>11} {'ceiling':>8} {'target':>10} {'original':>9}  verdict"
    print(head)
    print("-" * len(head))
    for r in rows:
        unit = r["unit"]
        target = "-"
        if r["target"] is not None:
            op, value = r["target"].split()
            op = {">=": "≥", "<=": "≤"}.get(op, op)
            target = f"{op} {_fmt(float(value) if '.' in value else int(value), unit)}".replace("≤ 0", "0")
        baseline = "-" if r["baseline"] is None else _fmt(r["baseline"], unit)
        frac = "" if r["pct_of_ceiling"] is None else f"{r['pct_of_ceiling']:.0f}%"
        verdict = "" if r["met"] is None else ("ok" if r["met"] else "MISSED")
        print(f"{r['label']:<44} {_fmt(r['value'], unit):>11} {frac:>8} {target:>10} {baseline:>9}  {verdict}")
    print()
    print_details(results, meta)
    print_server_log(meta)


def print_details(results: dict, meta: dict) -> None:
    for key in ("ceiling", "create_1", "create_16"):
        r = results.get(key)
        if r and r.get("ok"):
            print(f"{key}: latency p50 {r['latency_p50_ms']:.1f} ms, p99 {r['latency_p99_ms']:.1f} ms; "
                  f"CPU over {r['wall_s']:.2f} s: client {r['client_cpu_pct']:.0f}%, "
                  f"server {r['server_cpu_pct']:.0f}% (of {100 * meta['cpu_count']}%); "
                  f"server CPU {1000 * r['server_cpu_s'] / max(r['ok'], 1):.2f} ms/request")
    pairs = results.get("create_16_pairs") or []
    if pairs:
        print("create_16, by pair (ceiling run, then creation): " + "; ".join(
            f"{p['ceiling_per_s']:,.0f}/s then {p['jobs_per_s']:,.0f}/s = {p['ratio_pct']}%"
            f" ({1000 * p['ceiling_server_cpu_s'] / max(p['ceiling_ok'], 1):.2f} / "
            f"{1000 * p['server_cpu_s'] / max(p['jobs'], 1):.2f} ms CPU)" for p in pairs))
    for key, r in results.items():
        if key.startswith("list_") and r and r.get("n"):
            mem = r.get("memory")
            extra = ""
            if mem:
                worst = max(mem["per_request"], key=lambda x: x["rss_peak_mb"])
                extra = (f"; serving worker RSS {worst['rss_before_mb']:.0f} -> peak {worst['rss_peak_mb']:.0f} MB "
                         f"(VmHWM {worst['hwm_before_mb']:.0f} -> {worst['hwm_after_mb']:.0f} MB)")
            print(f"{key}: {r['jobs_in_table']} jobs in table, {r['query']}: {r['jobs_listed']} listed, "
                  f"{r['response_bytes']:,} bytes; n={r['n']}, server CPU "
                  f"{1000 * r['server_cpu_s'] / max(r['n'], 1):.1f} ms/request{extra}")
    r = results.get("run_to_completed")
    if r and r.get("n"):
        ex = r.get("executing_seen")
        print(f"run_to_completed: n={r['repetitions']}; POST PHASE=RUN p50 {r['post_run']['p50_ms']:.1f} ms"
              + (f"; EXECUTING first seen p50 {ex['p50_ms']:.1f} ms ({r['executing_seen_in']}/{r['repetitions']})"
                 if ex else "; EXECUTING never observed (the job finished between two answers)")
              + (f"; job end -> WAIT return measured on {r['end_to_seen']['n']}" if r.get("end_to_seen") else ""))
    w = results.get("waiters")
    if w and "with_waiters" in w:
        b, h = w["without_waiters"], w["with_waiters"]
        print(f"waiters: {w['waiters']} held after {w['all_held_after_s']} s, for {w['held_for_s']} s; server threads "
              f"{w['workers_before']['threads']} -> {w['workers_held']['threads']} "
              f"(per worker {w['workers_held']['threads_per_worker']}); worker RSS "
              f"{w['workers_before']['rss_kb'] / 1024:.0f} -> {w['workers_held']['rss_kb'] / 1024:.0f} MB")
        for kind in ("get_job", "list_last100", "create"):
            if b.get(kind, {}).get("n") and h.get(kind, {}).get("n"):
                print(f"  {kind:<13} p50/p99 without waiters {b[kind]['p50_ms']:.1f}/{b[kind]['p99_ms']:.1f} ms, "
                      f"with {h[kind]['p50_ms']:.1f}/{h[kind]['p99_ms']:.1f} ms")
        if w.get("abort_to_return", {}).get("n"):
            a = w["abort_to_return"]
            print(f"  all {w['waiters']} aborted in {w['abort_all_s']} s; abort POST sent -> its WAIT returned: "
                  f"p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms, max {a['max_ms']:.1f} ms; "
                  f"{w['returned_ok']} returned ABORTED")
    errors = results.get("errors") or {}
    if errors.get("total"):
        print(f"ERRORS: {errors['total']}")
        for kind, count in errors["by_kind"].items():
            print(f"  {count} × {kind}: {errors['examples'].get(kind, '')[:160]}")


def print_server_log(meta: dict) -> None:
    """The warnings and errors found in the server's log, if any, then a blank line."""
    found = meta.get("server_log") or {}
    if found.get("notifications_dropped") or found.get("error_lines"):
        print(f"server log: {found.get('notifications_dropped', 0)} 'notification dropped' warning(s), "
              f"{found.get('error_lines', 0)} error line(s)")
    print()
