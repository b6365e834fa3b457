"""Notifications and sharing: share links, jobs shared with named users, the outbox.

* ``share_links``: signed, expiring, revocable links to one entity's file (the signature is not
  stored; ``opus.service.sharing``).
* ``job_shares``: a job shared read-only with a named user.
* ``outbox``: e-mails, digest lines and webhook calls waiting to go out (``opus.events.mail``).

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "share_links",
        sa.Column("link_id", sa.String(32), primary_key=True),
        sa.Column("entity_id", sa.String(32), nullable=False),
        sa.Column("owner_key", sa.String(320)),
        sa.Column("owner_id", sa.String(255)),
        sa.Column("label", sa.String(400), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("expires", sa.DateTime(), nullable=False),
        sa.Column("revoked", sa.DateTime()),
    )
    op.create_index("ix_share_links_owner", "share_links", ["owner_key", "created"])
    op.create_table(
        "job_shares",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("grantee_key", sa.String(320), primary_key=True),
        sa.Column("grantee_name", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_job_shares_grantee", "job_shares", ["grantee_key", "created"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), primary_key=True,
                  autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(2048), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("next_try", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("claim", sa.String(32)),
        sa.Column("claimed", sa.DateTime()),
        sa.Column("sent", sa.DateTime()),
        sa.Column("last_error", sa.Text()),
    )
    op.create_index("ix_outbox_pending", "outbox", ["sent", "next_try"])


def downgrade() -> None:
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_job_shares_grantee", table_name="job_shares")
    op.drop_table("job_shares")
    op.drop_index("ix_share_links_owner", table_name="share_links")
    op.drop_table("share_links")
