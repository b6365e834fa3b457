"""Phase-change notifications across hosts: PostgreSQL LISTEN/NOTIFY on top of the host's sockets.

With PostgreSQL, several web hosts (or several instances with their own DATA_DIR) share one
database.  Each process keeps the same-host datagrams of ``opus.events.notify`` (the fastest path) and
also sends ``NOTIFY opus_jobs, '<job_id> <phase> <origin>'`` after every committed change.  Every
process LISTENs on its own connection and delivers notifications from other origins (other hosts
or other run directories) to its waiters, so a callback handled anywhere ends the matching WAITs
everywhere at once.  When the listening connection breaks, the listener reconnects with back-off
and wakes every waiter of the process so that each re-reads its job: nothing is missed.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from pathlib import Path
from typing import cast

from psycopg2.extensions import connection as PgConnection
from sqlalchemy import Engine

from opus.events.notify import Notifier

log = logging.getLogger(__name__)
CHANNEL = "opus_jobs"


class PgNotifier(Notifier):
    """A Notifier that also crosses hosts through PostgreSQL LISTEN/NOTIFY."""

    def __init__(self, run_dir: str | Path, engine: Engine) -> None:
        super().__init__(run_dir)
        self.engine = engine
        # Same origin = same host and run directory: those peers already got the datagram.
        self.origin = f"{socket.gethostname()}:{self._prefix}"[:120].replace(" ", "_")
        self._send_lock = threading.Lock()
        self._sender: PgConnection | None = None
        self._listening_pid: int | None = None
        self.listening = threading.Event()

    def _connect(self) -> PgConnection:
        raw = self.engine.raw_connection()
        conn = cast(PgConnection, raw.driver_connection)  # PgNotifier is made for psycopg2 URLs only
        raw.detach()  # ours for good: never returned to the pool
        conn.autocommit = True
        return conn

    # ---- listening -----------------------------------------------------------------------------------
    def start(self) -> None:
        super().start()
        if self._listening_pid == self._pid:
            return
        self._listening_pid = self._pid
        threading.Thread(target=self._listen_pg, name="opus-notify-pg", daemon=True).start()

    def _listen_pg(self) -> None:
        delay = 0.5
        first = True
        while self._listening_pid is not None:
            try:
                conn = self._connect()
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {CHANNEL}")
            except Exception as exc:
                log.warning("cannot LISTEN on PostgreSQL (%s); retrying in %.1f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            delay = 0.5
            if not first:
                self._wake_all()  # changes made while we were away: let every waiter re-read
            first = False
            self.listening.set()
            try:
                self._drain(conn)
            except Exception as exc:
                log.warning("PostgreSQL notifications interrupted (%s); reconnecting", exc)
            finally:
                self.listening.clear()
                try:
                    conn.close()
                except Exception:
                    pass

    def _drain(self, conn: PgConnection) -> None:
        while self._listening_pid is not None:
            if select.select([conn], [], [], 30)[0]:
                conn.poll()
            else:
                with conn.cursor() as cur:  # an idle check that the connection is alive
                    cur.execute("SELECT 1")
            while conn.notifies:
                note = conn.notifies.pop(0)
                parts = note.payload.split(" ")
                if len(parts) == 3 and parts[2] != self.origin:
                    self._deliver(parts[0], parts[1])

    def _wake_all(self) -> None:
        with self._lock:
            for group in self._waiters.values():
                for waiter in group:
                    waiter.phase = None
                    waiter.event.set()

    def stop(self) -> None:
        self._listening_pid = None
        super().stop()

    # ---- publishing ----------------------------------------------------------------------------------
    def publish(self, job_id: str, phase: str) -> None:
        super().publish(job_id, phase)
        payload = f"{job_id} {phase} {self.origin}"
        with self._send_lock:
            for attempt in (1, 2):
                try:
                    if self._sender is None:
                        self._sender = self._connect()
                    with self._sender.cursor() as cur:
                        cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                    return
                except Exception as exc:
                    try:
                        if self._sender is not None:
                            self._sender.close()
                    except Exception:
                        pass
                    self._sender = None
                    if attempt == 2:
                        log.warning("NOTIFY for job %s failed: %s (other hosts' waiters time out instead)",
                                    job_id, exc)
