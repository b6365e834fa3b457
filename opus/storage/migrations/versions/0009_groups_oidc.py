"""Groups and single sign-on: the groups a user belongs to, and the identity provider's users.

* ``users.groups``: space-separated names of the groups the user belongs to (set by an admin, or from
  the identity provider's groups claim at each single sign-on); a job may be shared with a group.
* ``oidc_identities``: which OPUS user an OpenID Connect identity (issuer, subject) signs in as.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("groups", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "oidc_identities",
        sa.Column("issuer", sa.String(255), primary_key=True),
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("uid", sa.Integer(), sa.ForeignKey("users.uid", ondelete="CASCADE"), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("last_signin", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_oidc_identities_uid", "oidc_identities", ["uid"])


def downgrade() -> None:
    op.drop_index("ix_oidc_identities_uid", table_name="oidc_identities")
    op.drop_table("oidc_identities")
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("groups")
