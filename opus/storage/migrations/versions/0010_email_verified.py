"""Confirmed e-mail addresses: notifications go only to an address its owner confirmed.

* ``users.email_verified``: the owner opened the confirmation link sent to ``users.email`` (or the
  address came from a trusted source: an admin, ``opus migrate``).  Addresses stored before this
  revision are kept as confirmed, so that an upgrade does not silence a site's notifications.
* ``users.email_verify_sent``: when the last confirmation e-mail went out (at most one per
  ``opus.service.notifications.VERIFY_INTERVAL``: the link cannot be used to flood an address).

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("email_verified", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("users", sa.Column("email_verify_sent", sa.DateTime()))
    users = sa.table("users", sa.column("email", sa.String()), sa.column("email_verified", sa.Boolean()))
    op.execute(users.update().where(users.c.email.is_not(None)).values(email_verified=True))


def downgrade() -> None:
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("email_verify_sent")
        batch.drop_column("email_verified")
