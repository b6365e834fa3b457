"""Phase-change notifications across the processes of one server host.

Every process that serves requests (each gunicorn worker, the development server) listens on a
Linux abstract-namespace datagram socket and registers its name as an empty file in
``<DATA_DIR>/run/events/``.  A process that commits a phase change wakes its own waiters directly
and sends one datagram ``"<job_id> <phase>"`` to every registered peer, which wakes its waiters.
A WAIT therefore ends as soon as the change is committed, whichever worker committed it, without
any polling.  A peer that has died is noticed (ECONNREFUSED) and unregistered.

With PostgreSQL, ``opus.events.notify_pg.PgNotifier`` adds LISTEN/NOTIFY on top of this, so that wake-ups
also cross hosts; the interface (``publish``/``watch``/``subscribe``) is the same.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import socket
import threading
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar, cast

log = logging.getLogger(__name__)
T = TypeVar("T")
_NOTHING = object()


class Wake:
    """One delivered change of one job, shared by every waiter it woke.

    A thousand WAITs on one job wake together; what they all need after the change (the job read
    again, its rendering) is made by the first that asks and handed to the others (``once``),
    rather than made a thousand times.  Any read made after the change was committed is a right
    answer for every one of them."""

    __slots__ = ("phase", "_lock", "_made")

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self._lock = threading.Lock()
        self._made: dict[Hashable, object] = {}

    def once(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()``'s value for ``key``, made by the first caller (the others wait for it); an
        exception is not kept: the next caller tries again."""
        made = self._made.get(key, _NOTHING)  # made already: no lock (a thousand threads would queue on it)
        if made is not _NOTHING:
            return cast(T, made)
        with self._lock:
            if key not in self._made:
                self._made[key] = make()
            return cast(T, self._made[key])


class Waiter:
    """One WAIT.  The waiters a change wakes are woken one after another: the delivering thread
    wakes the first, and each woken waiter wakes the one ``after`` it before going on (``wait``),
    or when it leaves (``Notifier.watch``)."""

    __slots__ = ("after", "event", "phase", "wake")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.phase: str | None = None
        #: The change that woke it last (None: woken to re-check, not by a change).
        self.wake: Wake | None = None
        #: The waiter to wake next, put by the delivering thread, taken by ``relay``.  A deque of
        #: one: putting (which replaces) and taking are each one atomic operation, so a change
        #: delivered while this waiter relays the previous one cannot be lost between a read and
        #: a reset (a replaced successor is in the newer change's chain, if it still waits).
        self.after: deque[Waiter] = deque(maxlen=1)

    def wait(self, timeout: float) -> bool:
        woken = self.event.wait(timeout)
        if woken:
            self.relay()
        return woken

    def relay(self) -> None:
        try:
            following = self.after.popleft()
        except IndexError:
            return
        following.event.set()


class Notifier:
    """Wakes waiters and subscribers of this process and of its peers on one host."""

    #: The notifiers of this process, for ``end_all_waits`` (a process may serve several apps).
    _all: "weakref.WeakSet[Notifier]" = weakref.WeakSet()

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir) / "events"
        self._prefix = "opus-" + hashlib.sha1(str(self.dir.resolve()).encode()).hexdigest()[:12]
        self._waiters: dict[str, set[Waiter]] = {}
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[str, str], None]] = []
        self._sock: socket.socket | None = None
        self._name: str | None = None
        self._send_sock: socket.socket | None = None
        self._pid: int | None = None
        self._prepare: Callable[[str, Wake], None] | None = None
        #: The process is stopping (``end_waits``): no WAIT blocks any more.
        self.stopping = False
        Notifier._all.add(self)

    # ---- listening ---------------------------------------------------------------------------
    def start(self) -> None:
        """Register this process as a peer and start the listener thread (once per process)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._name = f"{os.getpid()}-{secrets.token_hex(4)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind("\0" + self._prefix + "-" + self._name)
        self._sock = sock
        (self.dir / self._name).touch()
        threading.Thread(target=self._listen, args=(sock,), name="opus-notify", daemon=True).start()

    def stop(self) -> None:
        if self._name:
            try:
                (self.dir / self._name).unlink()
            except FileNotFoundError:
                pass
        if self._sock:
            self._sock.close()
        self._sock = self._name = self._pid = None

    def _listen(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(512)
            except OSError:
                return
            try:
                job_id, phase = data.decode("ascii").split(" ", 1)
            except ValueError:
                continue
            self._deliver(job_id, phase)

    # ---- publishing --------------------------------------------------------------------------
    def publish(self, job_id: str, phase: str) -> None:
        """Announce that ``job_id`` changed to ``phase`` (or "DELETED"), here and to every peer."""
        self._deliver(job_id, phase)
        try:
            peers = os.listdir(self.dir)
        except FileNotFoundError:
            return
        if not peers or (len(peers) == 1 and peers[0] == self._name):
            return
        if self._send_sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            # A peer's queue holds few datagrams (net.unix.max_dgram_qlen); its listener drains it
            # at once, so wait briefly rather than drop a wake-up.
            sock.settimeout(1.0)
            self._send_sock = sock
        message = f"{job_id} {phase}".encode("ascii")
        for peer in peers:
            if peer == self._name:
                continue
            try:
                self._send_sock.sendto(message, "\0" + self._prefix + "-" + peer)
            except TimeoutError:
                log.warning("notification to peer %s dropped: its queue stayed full for 1 s", peer)
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    try:
                        (self.dir / peer).unlink()
                    except FileNotFoundError:
                        pass
                else:
                    log.warning("notification to peer %s failed: %s", peer, exc)

    def prepare_wakes(self, prepare: Callable[[str, Wake], None]) -> None:
        """Have ``prepare(job_id, wake)`` called by the thread that delivers a change, before it
        wakes the change's waiters (only when it has some): what every waiter will need (the job
        read again: ``wake.once``) is then ready when they wake, instead of made by the first of a
        thousand threads woken together while the others queue for it.  Its errors are ignored
        (the waiters then make it themselves)."""
        self._prepare = prepare

    def _deliver(self, job_id: str, phase: str) -> None:
        wake = Wake(phase)
        prepare = self._prepare
        if prepare is not None and phase != "DELETED" and self._waiters.get(job_id):
            try:
                prepare(job_id, wake)
            except Exception as exc:  # noqa: BLE001 - the waiters will try again themselves
                log.debug("preparing the wake-up of job %s failed: %s", job_id, exc)
        with self._lock:
            waiters = self._waiters.get(job_id)
            if waiters:
                # One after another, not all at once: a thousand threads made runnable together
                # spend their time taking the GIL from each other (and this lock, to leave).
                following: Waiter | None = None
                for w in waiters:
                    w.phase = phase
                    w.wake = wake
                    if following is not None:
                        w.after.append(following)
                    following = w
                if following is not None:
                    following.event.set()
        for callback in self._subscribers:
            try:
                callback(job_id, phase)
            except Exception:  # a subscriber's bug must not stop notifications
                log.exception("notification subscriber failed")

    # ---- waiting -----------------------------------------------------------------------------
    @contextmanager
    def watch(self, job_id: str) -> Iterator[Waiter]:
        """Register interest in ``job_id`` *before* reading its state, then ``.wait(timeout)``."""
        waiter = Waiter()
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                group = self._waiters.get(job_id)
                if group is not None:
                    group.discard(waiter)
                    if not group:
                        del self._waiters[job_id]
                waiter.relay()  # woken or not, the waiters after it must be

    def end_waits(self) -> None:
        """This process is stopping: every WAIT it holds answers now, and no new one blocks.

        A WAIT held through a stop would hold its worker until the WAIT's end (gunicorn's reload),
        or be cut without an answer when the server kills the worker (a stop, after gunicorn's
        graceful_timeout): its client then fails (pyvo's wait() raises) instead of asking again."""
        self.stopping = True
        with self._lock:
            waiters = [w for group in self._waiters.values() for w in group]
        for w in waiters:
            w.event.set()  # no phase: woken to look, and JobService sees ``stopping``

    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(job_id, phase)`` on every change seen by this process."""
        self._subscribers.append(callback)


def end_all_waits() -> None:
    """``Notifier.end_waits`` for every notifier of this process: called when the server starts to
    stop this process (gunicorn.conf.py, on SIGTERM)."""
    for notifier in list(Notifier._all):
        notifier.end_waits()
