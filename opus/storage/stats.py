"""Read-only figures about the stored jobs, for monitoring (``GET /metrics``)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from opus.storage.tables import jobs
def jobs_by_phase(engine: Engine) -> dict[str, int]:
    """How many jobs the database holds in each phase (phases without jobs are absent): one query."""
    query = select(jobs.c.phase, func.count()).group_by(jobs.c.phase)
    with engine.connect() as conn:
        return {phase: count for phase, count in conn.execute(query)}
