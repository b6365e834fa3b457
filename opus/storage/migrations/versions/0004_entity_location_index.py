"""An index on entities.location: a destroyed job's entities lose their file by an indexed range.

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_entities_location", "entities", ["location"])


def downgrade() -> None:
    op.drop_index("ix_entities_location", "entities")
