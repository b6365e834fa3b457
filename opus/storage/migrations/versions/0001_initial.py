"""Initial schema: jobs, parameters, results.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("seq", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), primary_key=True,
                  autoincrement=True),
        sa.Column("job_id", sa.String(32), nullable=False, unique=True),
        sa.Column("jobname", sa.String(64), nullable=False),
        sa.Column("jdl_version", sa.String(64)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("owner_id", sa.String(255)),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("creation_time", sa.DateTime, nullable=False),
        sa.Column("start_time", sa.DateTime),
        sa.Column("end_time", sa.DateTime),
        sa.Column("execution_duration", sa.Integer, nullable=False),
        sa.Column("destruction_time", sa.DateTime),
        sa.Column("quote", sa.DateTime),
        sa.Column("error_type", sa.String(16)),
        sa.Column("error_message", sa.Text),
        sa.Column("error_has_detail", sa.Boolean, nullable=False),
        sa.Column("manager_id", sa.String(64)),
        sa.Column("callback_url", sa.String(512)),
    )
    op.create_index("ix_jobs_jobname_created", "jobs", ["jobname", "creation_time", "seq"])
    op.create_index("ix_jobs_phase_created", "jobs", ["phase", "creation_time"])
    op.create_index("ix_jobs_destruction", "jobs", ["destruction_time"])
    op.create_index("ix_jobs_owner_created", "jobs", ["owner_id", "creation_time"])
    op.create_table(
        "parameters",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("by_reference", sa.Boolean, nullable=False),
        sa.Column("is_post", sa.Boolean, nullable=False),
    )
    op.create_table(
        "results",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("result_id", sa.String(255), primary_key=True),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
    )


def downgrade() -> None:
    op.drop_table("results")
    op.drop_table("parameters")
    op.drop_table("jobs")
