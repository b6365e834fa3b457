"""Many concurrent WAITs: N clients each hold ``GET <job>?WAIT=60&PHASE=PENDING`` on a PENDING job
at once while other requests are timed; then every job is aborted and each WAIT must return
promptly with ABORTED.

The N waiting connections are plain non-blocking sockets watched by one selector thread, so the
client side costs one thread in all, not one per waiter.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time

from common import (
    ERRORS,
    FORM,
    HOST,
    JOBNAME,
    PHASE_RE,
    BenchError,
    Client,
    CpuMeter,
    create_job,
    log,
    proc_status,
    summary_ms,
)

WAIT = 60                # seconds asked for by each waiter; the whole hold must stay well below it
HOLD_TIMEOUT = 30.0      # every waiter must be held by the server within this
RETURN_TIMEOUT = 15.0    # after its job is aborted, a waiter must have returned within this


class _Waiter:
    __slots__ = ("aborted_at", "buf", "closed", "done", "first_byte", "job_id", "sock")

    def __init__(self, job_id: str, sock: socket.socket):
        self.job_id = job_id
        self.sock = sock
        self.buf = b""
        self.first_byte: float | None = None
        self.done: float | None = None
        self.closed = False
        self.aborted_at: float | None = None

    def complete(self) -> bool:
        head, sep, body = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return len(body) >= int(value)
        return False

    def status(self) -> int:
        try:
            return int(self.buf.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return 0


class WaiterPool:
    """N waiting connections and the selector thread that reads their answers."""

    def __init__(self, port: int, job_ids: list[str]):
        self.port = port
        self.waiters: list[_Waiter] = []
        self.sel = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="waiters", daemon=True)
        self.job_ids = job_ids

    def open(self) -> None:
        for job_id in self.job_ids:
            s = socket.create_connection((HOST, self.port), timeout=10)
            request = (f"GET /rest/{JOBNAME}/{job_id}?WAIT={WAIT}&PHASE=PENDING HTTP/1.1\r\n"
                       f"Host: {HOST}:{self.port}\r\n\r\n").encode()
            s.sendall(request)
            s.setblocking(False)
            w = _Waiter(job_id, s)
            self.waiters.append(w)
            self.sel.register(s, selectors.EVENT_READ, w)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.sel.select(0.05):
                w: _Waiter = key.data
                try:
                    data = w.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                now = time.perf_counter()
                if w.first_byte is None:
                    w.first_byte = now
                if not data:
                    w.closed = True
                    self.sel.unregister(w.sock)
                    continue
                w.buf += data
                if w.done is None and w.complete():
                    w.done = now
                    self.sel.unregister(w.sock)

    def client_ports(self) -> set[int]:
        return {w.sock.getsockname()[1] for w in self.waiters}

    def answered(self) -> list[_Waiter]:
        return [w for w in self.waiters if w.first_byte is not None]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for w in self.waiters:
            try:
                w.sock.close()
            except OSError:
                pass
        self.sel.close()


def held_on_server(server_port: int, client_ports: set[int]) -> int:
    """How many of these clients' requests a server thread has read and not yet answered.

    From the kernel's socket table (/proc/net/tcp, tcp6): the server's end of each client's connection
    is ESTABLISHED with an empty receive queue once a worker thread has read the request (gthread
    reads a request only in the thread that serves it; a request waiting for a free thread stays in
    the receive queue).  Counting threads instead undercounts: idle pool threads left by earlier
    steps take waiters without the thread count growing.
    """
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
                    if state != "01" or int(local.rsplit(":", 1)[1], 16) != server_port:
                        continue
                    if int(remote.rsplit(":", 1)[1], 16) in client_ports and int(queues.split(":")[1], 16) == 0:
                        held += 1
        except OSError:
            continue
    return held


def _workers_status(pids: list[int]) -> dict:
    per = {p: proc_status(p, "VmRSS", "Threads") for p in pids}
    return {"rss_kb": sum(v.get("VmRSS", 0) for v in per.values()),
            "threads": sum(v.get("Threads", 0) for v in per.values()),
            "threads_per_worker": [v.get("Threads", 0) for v in per.values()]}


def other_requests(bench, job_ids: list[str], per_kind: int, clients_n: int = 4) -> dict:
    """``per_kind`` × (GET job, list LAST=100, create) from ``clients_n`` threads, each kind timed."""
    kinds = ("get_job", "list_last100", "create")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    lock = threading.Lock()

    def work(i: int) -> None:
        c = Client(bench.port)
        try:
            for n in range(i, per_kind * len(kinds), clients_n):
                kind = kinds[n % len(kinds)]
                t0 = time.perf_counter()
                try:
                    if kind == "get_job":
                        c.expect(200, "GET", f"/rest/{JOBNAME}/{job_ids[(n * 7919) % len(job_ids)]}")
                    elif kind == "list_last100":
                        c.expect(200, "GET", f"/rest/{JOBNAME}?LAST=100")
                    else:
                        create_job(c, f"other {i} {n}")
                except BenchError:
                    continue  # counted in ERRORS
                with lock:
                    times[kind].append(time.perf_counter() - t0)
        finally:
            c.close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients_n)]
    with CpuMeter(bench.pid()) as meter:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    everything = [x for v in times.values() for x in v]
    return {"clients": clients_n, **{k: summary_ms(v) for k, v in times.items()},
            "all": summary_ms(everything), **meter.as_dict()}


def measure_waiters(bench, n: int, per_kind: int) -> None:
    """Hold ``n`` WAITs, time other requests meanwhile, then end every WAIT by aborting its job."""
    pids = bench.server.worker_pids()
    # n PENDING jobs, bulk-inserted (their creation is not what is measured here)
    job_ids = bench.seeder.add(n, phase="PENDING")
    others_ids = bench.job_ids or job_ids
    log(f"other requests without waiters ({per_kind} of each kind)")
    baseline = other_requests(bench, others_ids, per_kind)
    before = _workers_status(pids)
    log(f"opening {n} waiting connections (WAIT={WAIT})")
    pool = WaiterPool(bench.port, job_ids)
    result: dict = {"waiters": n, "wait_s": WAIT, "workers_before": before, "without_waiters": baseline}
    try:
        t0 = time.perf_counter()
        pool.open()
        # Held = each WAIT's request read by a server thread that has not answered it (see held_on_server).
        deadline = t0 + HOLD_TIMEOUT
        ports = pool.client_ports()
        held_n = held_on_server(bench.port, ports)
        while held_n < n and time.perf_counter() < deadline and not pool.answered():
            time.sleep(0.1)
            held_n = held_on_server(bench.port, ports)
        held = _workers_status(pids)
        result["all_held_after_s"] = round(time.perf_counter() - t0, 2)
        result["workers_held"] = held
        result["held_on_server"] = held_n
        if held_n < n:
            ERRORS.add("waiters not all held", f"{held_n} of {n} waiting requests read by a server thread "
                       f"within {HOLD_TIMEOUT:.0f} s ({held['threads']} server threads)")
        log(f"{held_n} of {n} waiters held after {result['all_held_after_s']} s (server threads "
            f"{before['threads']} -> {held['threads']}); timing other requests meanwhile")
        result["with_waiters"] = other_requests(bench, others_ids, per_kind)
        result["rss_per_waiter_kb"] = round((held["rss_kb"] - before["rss_kb"]) / n, 1)
        early = pool.answered()
        result["returned_early"] = len(early)
        if early:
            ERRORS.add("WAIT returned before its job changed", f"{len(early)} of {n}: {early[0].buf[:200]!r}")
        result["held_for_s"] = round(time.perf_counter() - t0, 2)
        if result["held_for_s"] > WAIT - 10:
            log(f"warning: the waiters were held {result['held_for_s']} s, close to their WAIT={WAIT}")
        # End them: abort every job, 8 clients; each waiter must then return ABORTED at once.
        log(f"aborting the {n} jobs")
        by_id = {w.job_id: w for w in pool.waiters}
        abort_done = []

        def abort(i: int) -> None:
            c = Client(bench.port)
            try:
                for job_id in job_ids[i::8]:
                    by_id[job_id].aborted_at = time.perf_counter()
                    try:
                        c.expect(303, "POST", f"/rest/{JOBNAME}/{job_id}/phase", "PHASE=ABORT", FORM)
                    except BenchError:
                        pass
            finally:
                c.close()
                abort_done.append(i)

        threads = [threading.Thread(target=abort, args=(i,), daemon=True) for i in range(8)]
        t_abort = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        deadline = time.perf_counter() + RETURN_TIMEOUT
        while time.perf_counter() < deadline and any(w.done is None and not w.closed for w in pool.waiters):
            time.sleep(0.05)
        result["abort_all_s"] = round(time.perf_counter() - t_abort, 2)
        lat, bad = [], []
        for w in pool.waiters:
            if w.done is None:
                bad.append(f"{w.job_id}: {'closed' if w.closed else 'no answer'} {w.buf[:100]!r}")
                continue
            m = PHASE_RE.search(w.buf)
            if w.status() != 200 or not m or m.group(1) != b"ABORTED":
                bad.append(f"{w.job_id}: HTTP {w.status()} {w.buf[:160]!r}")
                continue
            lat.append(w.done - w.aborted_at)
        if bad:
            ERRORS.add("waiter did not return ABORTED after its abort", f"{len(bad)} of {n}: {bad[0]}")
        result["returned_ok"] = len(lat)
        result["abort_to_return"] = summary_ms(lat)
    finally:
        pool.close()
    bench.results["waiters"] = result


def measure_waiters_one_job(bench, n: int) -> None:
    """``n`` WAITs on one PENDING job, then one ABORT: how long until the last of them has its answer.
    Every waiter is woken by the same change: the server reads and renders the job once for all
    of them (opus.events.notify.Wake), not once each."""
    job_id = bench.seeder.add(1, phase="PENDING")[0]
    pool = WaiterPool(bench.port, [job_id] * n)
    result: dict = {"waiters": n}
    try:
        t0 = time.perf_counter()
        pool.open()
        ports = pool.client_ports()
        held_n = held_on_server(bench.port, ports)
        while held_n < n and time.perf_counter() < t0 + HOLD_TIMEOUT and not pool.answered():
            time.sleep(0.1)
            held_n = held_on_server(bench.port, ports)
        result["held_on_server"] = held_n
        if held_n < n:
            ERRORS.add("waiters not all held", f"{held_n} of {n} waits on one job held within {HOLD_TIMEOUT:.0f} s")
        c = Client(bench.port)
        try:
            aborted_at = time.perf_counter()
            c.expect(303, "POST", f"/rest/{JOBNAME}/{job_id}/phase", "PHASE=ABORT", FORM)
        finally:
            c.close()
        deadline = time.perf_counter() + RETURN_TIMEOUT
        while time.perf_counter() < deadline and any(w.done is None and not w.closed for w in pool.waiters):
            time.sleep(0.01)
        lat = [w.done - aborted_at for w in pool.waiters
               if w.done is not None and w.status() == 200 and b"ABORTED" in w.buf]
        if len(lat) < n:
            ERRORS.add("waiter did not return ABORTED after its abort", f"{n - len(lat)} of {n} on one job")
        result["returned_ok"] = len(lat)
        result["abort_to_return"] = summary_ms(lat)
    finally:
        pool.close()
    bench.results["waiters_one_job"] = result
