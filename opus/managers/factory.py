"""The manager named by the settings: the one place that knows every manager class."""

from __future__ import annotations

from opus.errors import ConfigurationError
from opus.jobdef.registry import JobDefinitionRegistry
from opus.managers.base import Manager
from opus.managers.local import LocalManager
from opus.managers.slurm import SlurmManager
from opus.settings import Settings
from opus.storage.entitystore import EntityStore
from opus.storage.jobstore import JobStore


def make_manager(settings: Settings, store: JobStore, registry: JobDefinitionRegistry,
                 entities: EntityStore | None = None) -> Manager:
    """The manager named by ``settings.MANAGER`` (``entities``: the process's one EntityStore;
    None: the manager builds its own)."""
    if settings.MANAGER == "local":
        return LocalManager(settings, store, registry, entities)
    if settings.MANAGER == "slurm":
        return SlurmManager(settings, store, registry, entities)
    raise ConfigurationError(f"MANAGER: unknown manager {settings.MANAGER!r}; known: 'local', 'slurm'")
