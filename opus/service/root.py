"""The objects one OPUS process works with, built once from the settings."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from dataclasses import dataclass

from opus.auth.authenticate import Authenticator
from opus.jobdef import JobDefinitionRegistry
from opus.service.jobs import JobList
from opus.managers.base import Manager
from opus.managers.factory import make_manager
from opus.events.notify import Notifier
from opus.events.notify_pg import PgNotifier
from opus.settings import Settings
from opus.storage import JobStore, create_engine_for
from opus.storage.userstore import UserStore
log = logging.getLogger(__name__)


@dataclass
class Services:
    """Engine, store, definitions, notifier, manager and job list of one process."""

    settings: Settings
    store: JobStore
    registry: JobDefinitionRegistry
    notifier: Notifier
    manager: Manager
    joblist: JobList
    users: UserStore
    auth: Authenticator

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        engine = create_engine_for(settings.database_url)
        # PostgreSQL may be shared by several hosts: its LISTEN/NOTIFY carries wake-ups between them.
        notifier = PgNotifier(settings.run_dir, engine) if engine.dialect.name == "postgresql" \
            else Notifier(settings.run_dir)
        store = JobStore(engine, on_change=notifier.publish)
        registry = JobDefinitionRegistry(settings.JDL_DIR)
        manager = make_manager(settings, store, registry)
        users = UserStore(engine, settings)
        joblist = JobList(settings, store, registry, manager, notifier, active_jobs=users.active_jobs)
        services = cls(settings, store, registry, notifier, manager, joblist, users, Authenticator(settings, users))
        services._started_pid = None
        services._stop = threading.Event()
        return services

    # ---- background work of a serving process --------------------------------------------------------
    def start(self) -> None:
        """Start listening for notifications, the manager and the maintenance task (once per process)."""
        if self._started_pid == os.getpid():
            return
        self._started_pid = os.getpid()
        self._stop.clear()
        self.settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.notifier.start()
        self.notifier.subscribe(self._on_change)
        self.manager.start(self.joblist.apply_report)
        if self.settings.MAINTENANCE_INTERVAL:
            threading.Thread(target=self._maintenance, name="opus-maintenance", daemon=True).start()

    def _on_change(self, job_id: str, phase: str) -> None:
        # Work for the dispatcher: a job was queued, or one ended and freed a slot.
        if phase not in ("EXECUTING", "PENDING", "HELD", "SUSPENDED", "UNKNOWN"):
            self.manager.wake()

    def stop(self) -> None:
        self._stop.set()
        self.manager.stop()
        self.notifier.stop()
        self._started_pid = None

    def _maintenance(self) -> None:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.settings.run_dir / "maintenance.lock", "a+") as lock:
            while not self._stop.is_set():
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    self._stop.wait(self.settings.MAINTENANCE_INTERVAL)
            while not self._stop.is_set():
                try:
                    count = self.joblist.destroy_expired()
                    if count:
                        log.info("maintenance: %d expired job(s) destroyed", count)
                except Exception:
                    log.exception("maintenance failed; will retry")
                self._stop.wait(self.settings.MAINTENANCE_INTERVAL)
