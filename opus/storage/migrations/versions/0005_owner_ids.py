"""Ownership by an id that is never reused: users get ``uid``, jobs and entities ``owner_key``.

Until now a job belonged to its owner's *name*, so a user deleted and later re-created under the same
name got the old account's jobs and results back.  Each user now has an id drawn from an
AUTOINCREMENT column (SQLite) or a sequence (PostgreSQL), which never hands out an id twice, and
jobs and entities carry ``owner_key``:

* ``user:<uid>`` for rows whose owner name is a stored user now;
* ``remote:<name>`` for other names: front-end (REMOTE_USER) users without a stored user, and the
  users deleted before this migration (their jobs stay reachable exactly as before: by that front-end
  name, and by admins);
* NULL for anonymous rows.

``owner_id`` keeps the name, for display (UWS ownerId).  Token hashes need no change of schema: the
stored string names its scheme (``pbkdf2_sha256$...`` rows become ``hmac_sha256$...`` on their first
successful use, ``opus.auth.authenticate``).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_USER_COLUMNS = ("name", "token_id", "token_hash", "is_admin", "enabled", "max_active_jobs", "jobdefs", "created")


def _user_columns() -> list:
    return [
        sa.Column("token_id", sa.String(32), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(255), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("max_active_jobs", sa.Integer),
        sa.Column("jobdefs", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
    ]


def _old_users() -> list[dict]:
    # Typed columns: SQLite hands back DATETIME and BOOLEAN as text and integers otherwise.
    columns = {c.name: c for c in [sa.column("name", sa.String), *(sa.column(c.name, c.type) for c in _user_columns())]}
    table = sa.table("users", *columns.values())
    query = sa.select(*(columns[name] for name in _USER_COLUMNS)).select_from(table) \
        .order_by(columns["created"], columns["name"])
    return [dict(row._mapping) for row in op.get_bind().execute(query)]


def upgrade() -> None:
    # The users table is small: read it, and make it again with the id as its key.  Rows are inserted
    # in order of creation and take their ids from the AUTOINCREMENT / sequence itself, so the
    # counter is where it must be for the next user on both databases.
    rows = _old_users()
    op.drop_table("users")
    table = op.create_table(
        "users",
        sa.Column("uid", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        *_user_columns(),
        sqlite_autoincrement=True,
    )
    for row in rows:  # one by one: the ids follow the order of creation
        op.bulk_insert(table, [row])

    for name in ("jobs", "entities"):
        op.add_column(name, sa.Column("owner_key", sa.String(320)))
        op.execute(f"UPDATE {name} SET owner_key = (SELECT 'user:' || CAST(users.uid AS VARCHAR) FROM users "
                   f"WHERE users.name = {name}.owner_id) WHERE owner_id IS NOT NULL")
        op.execute(f"UPDATE {name} SET owner_key = 'remote:' || owner_id "
                   "WHERE owner_id IS NOT NULL AND owner_key IS NULL")
    # Job lists filter by owner_key now; the index by name would only cost writes.
    op.drop_index("ix_jobs_owner_created", table_name="jobs")
    op.create_index("ix_jobs_owner_key_created", "jobs", ["owner_key", "creation_time"])


def downgrade() -> None:
    # Back to ownership by name: the rows of deleted accounts go back to whoever holds the name.
    op.drop_index("ix_jobs_owner_key_created", table_name="jobs")
    op.create_index("ix_jobs_owner_created", "jobs", ["owner_id", "creation_time"])
    for name in ("entities", "jobs"):
        with op.batch_alter_table(name) as batch:
            batch.drop_column("owner_key")
    rows = _old_users()
    op.drop_table("users")
    table = op.create_table("users", sa.Column("name", sa.String(64), primary_key=True), *_user_columns())
    if rows:
        op.bulk_insert(table, rows)
