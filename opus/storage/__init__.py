"""Persistence: SQLAlchemy tables, migrations, and the JobStore that returns domain objects."""

from opus.storage.database import create_engine_for, upgrade_schema
from opus.storage.jobstore import JobStore
__all__ = ["JobStore", "create_engine_for", "upgrade_schema"]
