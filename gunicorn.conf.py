"""Example gunicorn configuration for OPUS:  gunicorn -c gunicorn.conf.py opus.wsgi:application

OPUS_SETTINGS must name the settings file.  Run `opus init` once before starting.

Sized for many clients holding WAIT at once (bench/run.py holds 1,000 on 2 workers while timing
other requests; bench/README.md has the figures):

* gthread, not an async worker.  A WAIT blocks its request in ``threading.Event.wait``; a thread
  doing so costs about 30-60 KB of resident memory (its touched stack pages and the request's
  objects) and no CPU.  gevent would hold a waiter for less, but only after monkey-patching every
  blocking call: psycopg2 blocks in C (it needs psycogreen's wait callback), SQLite's calls and
  flock() (the SQLite write lock in opus.storage.jobstore) block the whole hub, and opus.events.notify's
  listener threads and the job managers' subprocess/threads would all change meaning.  Threads keep
  the database drivers as they are.
* ``threads`` per worker bounds the requests a worker serves at once, WAITs included: a request
  beyond it waits in the worker's queue until a thread is free, however cheap it is.  So it is
  sized for every waiter a worker may hold (threads are started only when needed, and stay).
* ``worker_connections`` bounds the connections a worker keeps open (busy + kept alive); it must
  exceed ``threads`` or no connection is ever kept alive.
* ``reuse_port``: each worker binds its own SO_REUSEPORT socket and the kernel spreads new
  connections over the workers evenly.  Without it the workers race for each accept, and one
  worker usually wins most of a burst (measured with 16 keep-alive clients: one worker served
  76 % of the requests), so its single GIL does most of the work and its threads carry most of
  the waiters (with it: 514 and 494 of 1,000 waiters).  Costs: a connection still in the accept queue of a worker that
  exits is reset; the port is bound by the workers, not the master (no systemd socket activation,
  and a port in use shows as "Worker failed to boot"); another gunicorn of the same user started
  with reuse_port on the same port would share it silently.
* Open files: each connection is a descriptor, so a worker may need ``worker_connections`` plus
  its database and log files.  The soft RLIMIT_NOFILE is raised to the hard limit below; in
  production set the hard limit high enough (systemd: ``LimitNOFILE=65536``, deploy/).
"""

import multiprocessing
import os
import resource

bind = "127.0.0.1:8080"
worker_class = "gthread"
workers = max(2, multiprocessing.cpu_count())
threads = 1000
worker_connections = 2000
reuse_port = True
backlog = 2048
# Longer than MAX_WAIT, so a worker holding a WAIT is never taken for a stuck one.
timeout = 120
graceful_timeout = 30
keepalive = 5
# Do not preload: each worker starts its own background threads (opus.service.root.Services.start).
preload_app = False
# No access log by default: formatting one line costs about 11 % of a job creation's CPU (measured with
# py-spy under 16 clients), paid even when written to /dev/null.  Log requests at the proxy in front
# (Apache, nginx), or turn it on here: accesslog = "-" (stdout) or a file path; OPUS's own log lines
# carry the request id either way (docs/deployment.md, "Logs").
accesslog = None

#: Stack reserved per thread, KiB (Linux's default is the stack ulimit, usually 8 MiB).  Only the
#: pages a thread touches are resident, so this mostly saves address space and commit charge
#: (1,000 threads × 8 MiB would be refused under strict overcommit); 1 MiB leaves room for deep
#: C recursion.
THREAD_STACK_KB = 1024


def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = worker_connections + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(hard, max(wanted, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


_raise_nofile()


def post_fork(server, worker):
    """Before the worker starts any thread: a smaller stack reserved per thread, and at most
    ``MALLOC_ARENAS`` malloc arenas."""
    import threading

    threading.stack_size(THREAD_STACK_KB * 1024)
    _limit_malloc_arenas(MALLOC_ARENAS)


#: glibc gives a process of many threads up to 8 malloc arenas per core, and memory freed in one is
#: not given back while any of its blocks is in use: after a thousand WAITs and long job lists,
#: a worker kept more (bench/run.py, full list of 100,000 jobs, interleaved runs: serving worker
#: 142 and 150 MB, 135 and 138 MB with 2 arenas; Python's small objects do not use malloc's arenas).
MALLOC_ARENAS = 2


def _limit_malloc_arenas(arenas):
    """mallopt(M_ARENA_MAX) for the threads to come (glibc; elsewhere nothing): what the environment
    variable MALLOC_ARENA_MAX does, which gunicorn's forked workers could not take from the master."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    M_ARENA_MAX = -8
    mallopt(M_ARENA_MAX, arenas)


def post_worker_init(worker):
    """Move what the app loaded at start-up out of the garbage collector's sight, so that a
    worker's first full collection does not pause a request for tens of milliseconds."""
    import gc

    gc.collect()
    gc.freeze()
    _end_waits_on_stop()
    _end_waits_on_retirement(worker)


def _end_waits_on_stop():
    """SIGTERM to a worker (gunicorn stopping, or a reload replacing it): the WAITs it holds answer
    at once with the job as it is, and their clients ask again, of the next server.  Otherwise a
    reload waits for every WAIT to run its course, and a stop cuts them unanswered after
    ``graceful_timeout`` (pyvo's wait() then raises).  gunicorn's own handler still runs."""
    import signal
    import threading

    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        # Not in the handler itself: it interrupts the main thread, maybe inside a lock a waiter holds.
        threading.Thread(target=_end_all_waits, name="opus-end-waits", daemon=True).start()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


def _end_waits_on_retirement(worker):
    """``max_requests`` (not set here; an admin may): after that many requests gunicorn retires the
    worker without a signal, and its WAITs would be held until ``graceful_timeout`` and then cut
    unanswered.  A thread of the worker's watches for the moment it stops taking requests (whatever
    the cause) and ends its WAITs as a stop does.  Without ``max_requests``, no thread."""
    if not getattr(worker.cfg, "max_requests", 0):
        return
    import threading

    def watch():
        pause = threading.Event()  # never set: its timed wait is the pause
        while worker.alive:
            pause.wait(0.5)
        _end_all_waits()

    threading.Thread(target=watch, name="opus-retirement-watch", daemon=True).start()


def _end_all_waits():
    from opus.events.notify import end_all_waits

    end_all_waits()


def _publish_listen_address(server):
    """Tell the workers (through their inherited environment) the addresses this server is bound to:
    without CALLBACK_URL and BASE_URL, jobs report to the first TCP one (0.0.0.0/:: mean loopback),
    and its names are the Host values allowed by default.  opus.listen.listen_address reads it."""
    scheme = "https://" if getattr(server.cfg, "is_ssl", False) else ""
    os.environ["OPUS_LISTEN_ADDRESS"] = "\n".join(scheme + bind for bind in server.cfg.bind)


def _publish_request_threads(server):
    """Tell OPUS how many requests a worker serves at once: it then holds WAITs on at most that many
    less a reserve, so that WAITs never take every thread (opus.service.waitslots, MAX_HELD_WAITS).
    gthread: ``threads``; sync: one.  Other worker classes (gevent...) do not tie a WAIT to a thread."""
    kind = str(server.cfg.worker_class_str).rsplit(".", 1)[-1].lower()  # a name, or a class path
    threads = {"gthread": server.cfg.threads, "threadworker": server.cfg.threads, "sync": 1,
               "syncworker": 1}.get(kind)
    if threads is None:
        os.environ.pop("OPUS_REQUEST_THREADS", None)
    else:
        os.environ["OPUS_REQUEST_THREADS"] = str(threads)


def on_reload(server):
    """SIGHUP: the new workers may have a new bind list and thread count."""
    _publish_listen_address(server)
    _publish_request_threads(server)


def on_starting(server):
    _publish_listen_address(server)
    _publish_request_threads(server)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < worker_connections + 64:
        server.log.warning("open files limit %d is below worker_connections (%d): raise LimitNOFILE / ulimit -n",
                           soft, worker_connections)


def child_exit(server, worker):
    """A worker is gone: its live gauge (opus_processes) leaves the metrics at once, while its
    counters stay in the totals (prometheus_client's mark_process_dead; opus.observability.metrics).
    Without this hook, the next scrape does the same."""
    try:
        from opus.observability.metrics import directory_of, process_exited
        from opus.settings import load_settings

        process_exited(directory_of(load_settings()), worker.pid)
    except Exception as exc:  # the master must not fail for the metrics
        server.log.warning("metrics: cannot forget worker %s: %s", worker.pid, exc)
