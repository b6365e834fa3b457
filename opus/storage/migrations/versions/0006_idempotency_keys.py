"""Idempotent job creation: ``jobs.idempotency_key`` and ``jobs.request_digest``.

A client that sends ``Idempotency-Key`` on a creation ``POST`` and retries after a lost response
gets the job its first request created, not a second one.  The key is kept in the job's own row,
written by the job's INSERT: the job and its key exist together or not at all, a unique index makes
two concurrent retries create one job, and the key goes when the job is deleted.

* ``idempotency_key``: SHA-256 (hex) of the owner and the client's key; NULL without a key (NULLs
  never collide in a unique index, on SQLite and on PostgreSQL).
* ``request_digest``: SHA-256 (hex) of the creating request (definition, fields, uploads), so that
  the same key with a different request is refused.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("idempotency_key", sa.String(64)))
    op.add_column("jobs", sa.Column("request_digest", sa.String(64)))
    op.create_index("ix_jobs_idempotency_key", "jobs", ["idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_idempotency_key", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("request_digest")
        batch.drop_column("idempotency_key")
