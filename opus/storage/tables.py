"""The database schema (SQLAlchemy Core).  Alembic migrations in ``migrations/`` create it.

Instants are stored as naive UTC ``DateTime`` truncated to milliseconds (what UWS prints), so
that ``AFTER=<a printed creationTime>`` never returns the job that printed it.  ``seq`` orders
jobs created in the same millisecond.
"""

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, ForeignKey, Index, Integer, MetaData, String,
                        Table, Text)

metadata = MetaData()

jobs = Table(
    "jobs", metadata,
    Column("seq", Integer().with_variant(BigInteger(), "postgresql"), primary_key=True, autoincrement=True),
    Column("job_id", String(32), nullable=False, unique=True),
    Column("jobname", String(64), nullable=False),
    Column("jdl_version", String(64)),
    Column("run_id", String(64)),
    # The owner's name, for display (UWS ownerId); access goes by owner_key.
    Column("owner_id", String(255)),
    # "user:<uid>", "remote:<front-end name>" or NULL (anonymous): see opus.auth.identity.Identity.
    Column("owner_key", String(320)),
    Column("phase", String(16), nullable=False),
    Column("creation_time", DateTime, nullable=False),
    Column("start_time", DateTime),
    Column("end_time", DateTime),
    Column("execution_duration", Integer, nullable=False),
    Column("destruction_time", DateTime),
    Column("quote", DateTime),
    Column("error_type", String(16)),
    Column("error_message", Text),
    Column("error_has_detail", Boolean, nullable=False, default=False),
    Column("manager_id", String(64)),
    Column("callback_url", String(512)),
    # Idempotent creation (the Idempotency-Key header): a SHA-256 of the owner and the client's key,
    # unique while the job exists, and a SHA-256 of the request that created the job (a retry must
    # be the same request).  NULL for jobs created without a key.
    Column("idempotency_key", String(64)),
    Column("request_digest", String(64)),
    Index("ix_jobs_jobname_created", "jobname", "creation_time", "seq"),
    Index("ix_jobs_phase_created", "phase", "creation_time"),
    Index("ix_jobs_destruction", "destruction_time"),
    Index("ix_jobs_owner_key_created", "owner_key", "creation_time"),
    Index("ix_jobs_idempotency_key", "idempotency_key", unique=True),
)

parameters = Table(
    "parameters", metadata,
    Column("job_id", String(32), ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("by_reference", Boolean, nullable=False, default=False),
    Column("is_post", Boolean, nullable=False, default=False),
)

results = Table(
    "results", metadata,
    Column("job_id", String(32), ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("result_id", String(255), primary_key=True),
    Column("file_name", String(255), nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("size", BigInteger),
    Column("sha256", String(64)),
)

users = Table(
    "users", metadata,
    # AUTOINCREMENT (SQLite) and a sequence (PostgreSQL) never give an id again, even the newest
    # after its user was deleted: jobs owned by "user:<uid>" never pass to a later account.
    Column("uid", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    # Public half of the token ("<token_id>.<secret>"): finds the user of a Bearer token.
    Column("token_id", String(32), nullable=False, unique=True),
    # Keyed hash of the whole token (opus.auth.users; legacy rows: PBKDF2 until first use); never the token.
    Column("token_hash", String(255), nullable=False),
    Column("is_admin", Boolean, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("max_active_jobs", Integer),
    # Space-separated job definition names the user may use; "*" for all.
    Column("jobdefs", Text, nullable=False),
    Column("created", DateTime, nullable=False),
    # ---- accounts (migration 0007) ----
    # argon2id hash of the user's password (opus.auth.passwords); NULL: no password, tokens only.
    Column("password_hash", String(255)),
    # The user may propose and edit job definitions (the "editor" role; admins always may).
    Column("is_editor", Boolean, nullable=False, default=False),
    # Contact address given at registration (optional, never shown to other users).
    Column("email", String(254)),
    # A pending password reset: SHA-256 (hex) of the one-time code an admin issued, and its expiry.
    Column("reset_hash", String(64)),
    Column("reset_expires", DateTime),
    # ---- groups (migration 0009) ----
    # Space-separated names of the user's groups (an admin's, or the identity provider's groups claim).
    Column("groups", Text, nullable=False, default=""),
    # ---- confirmed e-mail (migration 0010) ----
    # The owner opened the confirmation link sent to ``email`` (or an admin or opus migrate set it):
    # notifications go only to a confirmed address.  And when the last confirmation mail went out.
    Column("email_verified", Boolean, nullable=False, default=False),
    Column("email_verify_sent", DateTime),
    sqlite_autoincrement=True,
)

# Which user an OpenID Connect identity signs in as (migration 0009): (issuer, subject) is the stable
# identity of the provider's user; it goes with its OPUS user.
oidc_identities = Table(
    "oidc_identities", metadata,
    Column("issuer", String(255), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("uid", Integer, ForeignKey("users.uid", ondelete="CASCADE"), nullable=False),
    Column("created", DateTime, nullable=False),
    Column("last_signin", DateTime, nullable=False),
    Index("ix_oidc_identities_uid", "uid"),
)

# Named service tokens of a user (applications, scripts): a scope and an expiry each; the token is
# "<token_id>.<secret>" like a user's own, stored only as a keyed hash.  They go with their user.
service_tokens = Table(
    "service_tokens", metadata,
    Column("token_id", String(32), primary_key=True),
    Column("uid", Integer, ForeignKey("users.uid", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(255), nullable=False),
    # "read" (GET, HEAD, OPTIONS only) or "submit" (the user's own jobs: create, run, abort, delete).
    Column("scope", String(16), nullable=False),
    Column("expires", DateTime, nullable=False),
    Column("created", DateTime, nullable=False),
    Index("ix_service_tokens_uid", "uid"),
)

# Every input and result is an entity (IVOA provenance).  Entities outlive their jobs' rows: when a job
# is destroyed its results' files go, their rows stay with ``location`` NULL so that the provenance of
# jobs that used them still names them.
entities = Table(
    "entities", metadata,
    Column("entity_id", String(32), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("owner_id", String(255)),  # the owner's name, for display; access goes by owner_key
    Column("owner_key", String(320)),
    # The job that generated it (None: an input that came from outside), the result's name there.
    Column("generated_by", String(32)),
    Column("role", String(255), nullable=False),
    Column("jobname", String(64)),
    # Path under DATA_DIR/jobs ("<job id>/results/<file>"); None once the file is gone.
    Column("location", String(512)),
    # Where an outside input came from (its URL), if known.
    Column("source", Text),
    Column("created", DateTime, nullable=False),
    Index("ix_entities_sha256", "sha256"),
    Index("ix_entities_generated_by", "generated_by"),
    Index("ix_entities_location", "location"),
)

# Which job used which entity, in which role (the input's name).
used = Table(
    "used", metadata,
    Column("job_id", String(32), primary_key=True),
    Column("role", String(64), primary_key=True),
    Column("entity_id", String(32), primary_key=True),
    Index("ix_used_entity", "entity_id"),
)

# ---- notifications and sharing (migration 0008) ----
# A share link: anyone holding "<link_id>.<signature>" may read one entity's file until the link expires
# or is revoked.  The signature (HMAC under the server secret) is not stored: the database alone makes
# no working link.
share_links = Table(
    "share_links", metadata,
    Column("link_id", String(32), primary_key=True),
    Column("entity_id", String(32), nullable=False),
    # Who created it: access to the list and to revocation goes by owner_key (opus.auth.identity).
    Column("owner_key", String(320)),
    Column("owner_id", String(255)),
    # What was shared, for the owner's list: "result <id> of job <job id>", "input <name> ...", "entity".
    Column("label", String(400), nullable=False),
    Column("created", DateTime, nullable=False),
    Column("expires", DateTime, nullable=False),
    Column("revoked", DateTime),
    Index("ix_share_links_owner", "owner_key", "created"),
)

# A job shared read-only with a named user (by owner key, "user:<uid>"): they may read it, never change it.
job_shares = Table(
    "job_shares", metadata,
    Column("job_id", String(32), ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("grantee_key", String(320), primary_key=True),
    Column("grantee_name", String(255), nullable=False),
    Column("created", DateTime, nullable=False),
    Index("ix_job_shares_grantee", "grantee_key", "created"),
)

# Messages waiting to go out (e-mail and webhooks), written where a job ends, sent by a background
# sender (opus.events.mail.Outbox) that claims each row with a compare-and-set: sent once by one worker.
outbox = Table(
    "outbox", metadata,
    Column("id", Integer().with_variant(BigInteger(), "postgresql"), primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),        # "mail", "digest" (a line of a digest), "webhook"
    Column("recipient", String(2048), nullable=False),  # an e-mail address or a webhook URL
    Column("subject", String(400), nullable=False),
    Column("body", Text, nullable=False),
    Column("created", DateTime, nullable=False),
    Column("next_try", DateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claim", String(32)),
    Column("claimed", DateTime),
    Column("sent", DateTime),
    Column("last_error", Text),
    Index("ix_outbox_pending", "sent", "next_try"),
)
