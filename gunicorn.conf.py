"""Example gunicorn configuration for OPUS:  gunicorn -c gunicorn.conf.py opus.wsgi:application

OPUS_SETTINGS must name the settings file.  Run `opus init` once before starting.
"""

import multiprocessing

bind = "127.0.0.1:8080"
# gthread: each worker serves many requests at once on threads, so blocking WAIT requests
# (held up to MAX_WAIT seconds) do not stall other clients.  Wake-ups cross workers (opus.notify).
worker_class = "gthread"
workers = max(2, multiprocessing.cpu_count())
threads = 64
# Longer than MAX_WAIT, so a worker holding a WAIT is never taken for a stuck one.
timeout = 120
graceful_timeout = 30
keepalive = 5
# Do not preload: each worker starts its own background threads (opus.services.Services.start).
preload_app = False
accesslog = "-"


def post_worker_init(worker):
    """Move what the app loaded at start-up out of the garbage collector's sight, so that a
    worker's first full collection does not pause a request for tens of milliseconds."""
    import gc

    gc.collect()
    gc.freeze()
