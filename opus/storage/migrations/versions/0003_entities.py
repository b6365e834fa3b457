"""Entities (every input and result) and the used relation, for the result store and provenance.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entities",
        sa.Column("entity_id", sa.String(32), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("owner_id", sa.String(255)),
        sa.Column("generated_by", sa.String(32)),
        sa.Column("role", sa.String(255), nullable=False),
        sa.Column("jobname", sa.String(64)),
        sa.Column("location", sa.String(512)),
        sa.Column("source", sa.Text),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    op.create_index("ix_entities_sha256", "entities", ["sha256"])
    op.create_index("ix_entities_generated_by", "entities", ["generated_by"])
    op.create_table(
        "used",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("role", sa.String(64), primary_key=True),
        sa.Column("entity_id", sa.String(32), primary_key=True),
    )
    op.create_index("ix_used_entity", "used", ["entity_id"])


def downgrade() -> None:
    op.drop_table("used")
    op.drop_table("entities")
