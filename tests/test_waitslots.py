"""MAX_HELD_WAITS: how many WAITs a process holds, from its server's threads (opus.service.waitslots).

The real fault (a worker's threads all held by WAITs) is in test_gunicorn_e2e.py
(test_waits_never_take_every_thread); here the arithmetic, where the threads are learnt from, and
a WAIT beyond the limit through the whole application.
"""

from __future__ import annotations

import sys
import threading
import types

import pytest
import requests

from conftest import LiveServer, make_settings
from helpers import wait_for
from opus.errors import ConfigurationError
from opus.service.waitslots import THREADS_ENV, WaitSlots, held_waits_limit, request_threads
from opus.settings import load_settings


@pytest.mark.parametrize("threads, limit", [(1, 0), (2, 0), (3, 1), (8, 6), (32, 29), (100, 90), (1000, 900)])
def test_a_tenth_of_the_threads_and_at_least_two_are_kept(threads, limit):
    assert held_waits_limit(None, threads) == limit


def test_the_setting_wins_and_unknown_threads_mean_no_limit():
    assert held_waits_limit(5, 1000) == 5
    assert held_waits_limit(0, None) == 0
    assert held_waits_limit(None, None) is None


def test_threads_from_gunicorn_conf_then_mod_wsgi(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "mod_wsgi", raising=False)
    assert request_threads() is None  # opus serve, tests: no limit
    monkeypatch.setitem(sys.modules, "mod_wsgi", types.SimpleNamespace(threads_per_process=32))
    assert request_threads() == 32
    monkeypatch.setenv(THREADS_ENV, "1000")
    assert request_threads() == 1000
    assert WaitSlots.of(None).limit == 900 and "1000 request threads" in WaitSlots.of(None).describe()
    assert WaitSlots.of(3).limit == 3 and WaitSlots.of(3).describe() == "MAX_HELD_WAITS = 3"


def test_slots_are_taken_and_given_back():
    slots = WaitSlots(2)
    assert slots.take() and slots.take() and not slots.take()
    slots.give()
    assert slots.held == 1 and slots.take()
    unlimited = WaitSlots(None)
    assert all(unlimited.take() for _ in range(10_000))


@pytest.mark.parametrize("value", [-1, "10", 1.5, True])
def test_a_bad_setting_is_refused(tmp_path, value):
    with pytest.raises(ConfigurationError, match="MAX_HELD_WAITS"):
        load_settings(None, DATA_DIR=str(tmp_path), MAX_HELD_WAITS=value)


#: MAX_WAIT of the tests below, far beyond any client timeout of theirs: a WAIT answered at all was
#: answered before its time, with no clock read (a machine busy with other work cannot break it).
LONG = 3600
CLIENT_TIMEOUT = 120


def _get(url: str, wait: int | None = None) -> requests.Response:
    params = {"WAIT": str(wait)} if wait is not None else None
    return requests.get(url, params=params, headers={"Accept": "application/json"}, timeout=CLIENT_TIMEOUT)


def test_a_wait_beyond_the_limit_is_answered_at_once_and_the_slot_comes_back(tmp_path):
    server = LiveServer(make_settings(tmp_path, MAX_HELD_WAITS=1, MAX_WAIT=LONG))
    try:
        job_url = server.create("dummy")
        first: dict = {}

        def hold() -> None:
            r = _get(job_url, LONG)
            first.update(status=r.status_code, phase=r.json()["phase"])

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        wait_for(lambda: server.services.jobs.wait_slots.held == 1, 60, "the first WAIT to be held")

        r = _get(job_url, LONG)  # answered within the client's timeout: not held for its hour
        assert r.status_code == 200 and r.json()["phase"] == "PENDING"
        assert holder.is_alive() and not first  # answered while the first is still held

        r = requests.post(job_url + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False, timeout=30)
        assert r.status_code == 303
        holder.join(CLIENT_TIMEOUT)
        assert first["status"] == 200 and first["phase"] == "ABORTED"
        assert server.services.jobs.wait_slots.held == 0  # given back
    finally:
        server.stop()


def test_a_stopping_process_answers_its_waits_at_once(tmp_path):
    """Notifier.end_waits (gunicorn.conf.py calls it on a worker's SIGTERM): held WAITs answer now
    with the job as it is, and a WAIT arriving afterwards does not block (the e2e test sends the
    signals to a real gunicorn: test_gunicorn_e2e.test_a_reload_or_a_stop_answers_the_waits_at_once)."""
    server = LiveServer(make_settings(tmp_path, MAX_WAIT=LONG))
    try:
        job_url = server.create("dummy")
        answers: list[tuple[int, str]] = []

        def hold() -> None:
            r = _get(job_url, LONG)
            answers.append((r.status_code, r.json()["phase"]))

        holders = [threading.Thread(target=hold, daemon=True) for _ in range(3)]
        for t in holders:
            t.start()
        job_id = job_url.rsplit("/", 1)[1]
        wait_for(lambda: len(server.services.notifier._waiters.get(job_id, ())) == 3, 60, "the three WAITs to be held")
        assert not answers
        server.services.notifier.end_waits()  # this server's only: end_all_waits would reach every server here
        for t in holders:
            t.join(CLIENT_TIMEOUT)
        # Answered at all: before their hour (the job did not change).
        assert answers == [(200, "PENDING")] * 3
        r = _get(job_url, LONG)  # a new WAIT does not block either
        assert r.status_code == 200 and r.json()["phase"] == "PENDING"
        assert server.services.jobs.wait_slots.held == 0
    finally:
        server.stop()
