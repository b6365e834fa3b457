"""The manager named by the settings: the one place that knows every manager class."""

from __future__ import annotations

from opus.errors import ConfigurationError
from opus.managers.base import Manager
from opus.managers.local import LocalManager
from opus.managers.slurm import SlurmManager


def make_manager(settings, store, registry) -> Manager:
    """The manager named by ``settings.MANAGER``."""
    if settings.MANAGER == "local":
        return LocalManager(settings, store, registry)
    if settings.MANAGER == "slurm":
        return SlurmManager(settings, store, registry)
    raise ConfigurationError(f"MANAGER: unknown manager {settings.MANAGER!r}; known: 'local', 'slurm'")
