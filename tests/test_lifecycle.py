"""The background work of a serving process (dispatcher, maintenance, outbox sender, notification
listener) starts with the app and, once stopped, stays stopped: a request that reaches the app while
it shuts down (a wrapper's late callback, a client) must not start it again on a database that may be
gone by then (seen in CI: the outbox of a stopped test server logging "unable to open database file"
into a later test)."""

from __future__ import annotations

import threading

import requests
from conftest import LiveServer, make_settings


def _opus_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("opus-") and t.is_alive()}


def test_a_request_after_stop_starts_no_background_work(tmp_path):
    before = _opus_threads()
    server = LiveServer(make_settings(tmp_path))
    try:
        assert requests.get(f"{server.url}/availability", timeout=30).status_code == 200
        started = {t.name for t in _opus_threads() - before}
        assert {"opus-outbox", "opus-local-manager"} <= started, started
        server.services.stop()  # the httpd still answers, as during a real shut-down
        # The threads stopped by services.stop end; a request must not start new ones.
        for t in _opus_threads() - before:
            if t.name in ("opus-outbox", "opus-maintenance") or t.name.endswith("-manager"):
                t.join(timeout=30)
        stopped = _opus_threads()
        r = requests.get(f"{server.url}/availability", timeout=30)
        assert r.status_code == 200
        new = {t.name for t in _opus_threads() - stopped}
        assert not new, f"a request after stop started {new}"
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.services.store.engine.dispose()
