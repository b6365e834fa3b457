"""Accounts: passwords, the editor role, e-mail, password resets, service tokens.

* ``users.password_hash``: argon2id (``opus.auth.passwords``); NULL for token-only users.
* ``users.is_editor``: may propose and edit job definitions.
* ``users.email``: optional contact address (registration).
* ``users.reset_hash`` / ``reset_expires``: a pending admin-issued password reset (SHA-256 of the
  one-time code).
* ``service_tokens``: named tokens of a user with a scope ("read", "submit") and an expiry.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy of the table): SQLite keeps the table's AUTOINCREMENT, so no
    # user id is ever given again (opus.storage.tables).
    op.add_column("users", sa.Column("password_hash", sa.String(255)))
    op.add_column("users", sa.Column("is_editor", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("users", sa.Column("email", sa.String(254)))
    op.add_column("users", sa.Column("reset_hash", sa.String(64)))
    op.add_column("users", sa.Column("reset_expires", sa.DateTime()))
    op.create_table(
        "service_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("uid", sa.Integer(), sa.ForeignKey("users.uid", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("expires", sa.DateTime(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_service_tokens_uid", "service_tokens", ["uid"])


def downgrade() -> None:
    op.drop_index("ix_service_tokens_uid", table_name="service_tokens")
    op.drop_table("service_tokens")
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch:
        for name in ("reset_expires", "reset_hash", "email", "is_editor", "password_hash"):
            batch.drop_column(name)
