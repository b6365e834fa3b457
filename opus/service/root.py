"""The composition root: every object one OPUS process works with, built once from the settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from opus.auth.authenticate import Authenticator
from opus.auth.identity import check_job_token
from opus.events.notify import Notifier
from opus.events.notify_pg import PgNotifier
from opus.jobdef import JobDefinitionRegistry
from opus.managers.base import Manager
from opus.managers.factory import make_manager
from opus.observability import metrics
from opus.service.completion import CompletionService
from opus.service.inputs import InputResolver
from opus.service.jobs import JobService
from opus.service.maintenance import MaintenanceService
from opus.service.notifications import Notifications
from opus.service.sharing import SharingService
from opus.settings import Settings
from opus.storage import JobStore, create_engine_for
from opus.storage.entitystore import EntityStore
from opus.storage.sharestore import ShareStore
from opus.storage.userstore import UserStore
from opus.uws import FINAL, Phase

log = logging.getLogger(__name__)
#: Builds the manager from the settings and the collaborators it drives (``make_manager`` by default).
ManagerFactory = Callable[[Settings, JobStore, JobDefinitionRegistry, EntityStore], Manager]
#: Phase changes that give the dispatcher nothing new to do: no job was queued, none freed a slot.
_NO_DISPATCH_WORK = frozenset(p.value for p in Phase if p is not Phase.QUEUED and p not in FINAL)


@dataclass
class Root:
    """The collaborators of one process, each built once by ``build``: the routes, the CLI and the
    tests reach them here."""

    settings: Settings
    store: JobStore
    registry: JobDefinitionRegistry
    notifier: Notifier
    manager: Manager
    users: UserStore
    auth: Authenticator
    entities: EntityStore
    jobs: JobService
    completion: CompletionService
    maintenance: MaintenanceService
    notifications: Notifications
    sharing: SharingService
    #: The process that started the background work (a forked worker must start its own).
    _started_pid: int | None = field(default=None, init=False)
    #: Set by ``stop``: a request that arrives while the server shuts down must not start it again.
    _stopped: bool = field(default=False, init=False)

    @classmethod
    def build(cls, settings: Settings, manager_factory: ManagerFactory = make_manager) -> Root:
        """Everything ``settings`` describe; ``manager_factory`` chooses the manager (tests pass a fake)."""
        engine = create_engine_for(settings.database_url)
        # PostgreSQL may be shared by several hosts: its LISTEN/NOTIFY carries wake-ups between them.
        notifier = PgNotifier(settings.run_dir, engine) if engine.dialect.name == "postgresql" \
            else Notifier(settings.run_dir)
        store = JobStore(engine, on_change=notifier.publish, writer_process=settings.SQLITE_WRITER_PROCESS)
        registry = JobDefinitionRegistry(settings.JDL_DIR)
        entities = EntityStore(store)
        manager = manager_factory(settings, store, registry, entities)
        users = UserStore(engine, settings)
        jobs = JobService(settings, store, registry, manager, notifier, InputResolver(settings, entities),
                          active_jobs=users.active_jobs)
        completion = CompletionService(store, registry, manager, entities, settings.jobs_dir,
                                       verify_token=partial(check_job_token, settings),
                                       count=partial(metrics.count, settings))
        maintenance = MaintenanceService(store, manager, jobs, settings.jobs_dir, settings.run_dir,
                                         archive=settings.DESTRUCTION_POLICY == "archive",
                                         interval=settings.MAINTENANCE_INTERVAL)
        notifications = Notifications.build(settings, store)
        completion.on_phase = notifications.phase_changed  # e-mail and webhooks when a report changes a phase
        sharing = SharingService(settings, ShareStore(engine), entities, store, users)
        return cls(settings, store, registry, notifier, manager, users, Authenticator(settings, users),
                   entities, jobs, completion, maintenance, notifications, sharing)

    # ---- background work of a serving process --------------------------------------------------------
    def start(self) -> None:
        """Start listening for notifications, the manager and the maintenance task (once per process)."""
        if self._stopped or self._started_pid == os.getpid():
            return
        self._started_pid = os.getpid()
        self.settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.notifier.start()
        self.notifier.subscribe(self._on_change)
        self.manager.start(self.completion.replay)
        self.maintenance.start()
        self.notifications.start()

    def _on_change(self, job_id: str, phase: str) -> None:
        # Work for the dispatcher: a job was queued, or one ended (or was deleted) and freed a slot.
        if phase not in _NO_DISPATCH_WORK:
            self.manager.wake()

    def stop(self) -> None:
        """Stop the background work for good (a later ``start`` does nothing)."""
        self._stopped = True
        self.notifications.stop()
        self.maintenance.stop()
        self.manager.stop()
        self.notifier.stop()
        self.store.close()
        self._started_pid = None
