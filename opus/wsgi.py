"""WSGI entry point for gunicorn and mod_wsgi: ``gunicorn -c gunicorn.conf.py opus.wsgi:application``.

The settings file is named by ``OPUS_SETTINGS``: from the process environment (gunicorn,
systemd), the app is built at import, so background work starts with the worker; from the WSGI
environment (Apache's ``SetEnv``), it is built on the first request.  The schema must be current
(``opus init``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from bottle import Bottle

# Absolute imports: mod_wsgi executes this file as a script of its own (not as ``opus.wsgi``), so
# relative imports would fail there.  ``opus`` must be importable: installed in the virtualenv of
# python-home, or on python-path.
from opus.events.notify import end_all_waits
from opus.server import create_app
from opus.settings import load_settings
_app: Bottle | None = create_app(load_settings()) if os.environ.get("OPUS_SETTINGS") else None
_lock = threading.Lock()


def _end_waits_when_mod_wsgi_stops() -> None:
    """Under mod_wsgi, its process stopping (Apache stopped or restarted, even gracefully) answers
    the WAITs it holds at once (opus.events.notify.end_all_waits): otherwise mod_wsgi kills the
    process a few seconds later (shutdown-timeout) and Apache answers each WAIT with a 500.
    gunicorn.conf.py does the same for gunicorn's workers."""
    try:
        import mod_wsgi  # type: ignore[import-not-found]  # only inside Apache's mod_wsgi
        subscribe = mod_wsgi.subscribe_shutdown
    except (ImportError, AttributeError):
        return
    subscribe(lambda event, **details: end_all_waits())


_end_waits_when_mod_wsgi_stops()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI callable (PEP 3333)."""
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                _app = create_app(load_settings(environ.get("OPUS_SETTINGS")))
    served: Iterable[bytes] = _app(environ, start_response)
    return served
