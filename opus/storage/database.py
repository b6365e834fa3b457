"""Engines and schema migrations.

One engine per process, built once (the original rebuilt it on every request).  SQLite runs in
WAL mode with a busy timeout, and write transactions take the write lock at BEGIN so that two
processes never deadlock upgrading a read lock.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError

from opus.errors import ConfigurationError
from opus.storage.tables import metadata
from opus.storage.writerproc import PRAGMAS
log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def shown_url(url: str) -> str:
    """A database URL fit to print: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unreadable DATABASE_URL)"


def error_line(exc: BaseException) -> str:
    """The first line of what the driver said of a database error (SQLAlchemy's own text adds the
    SQL and a link), for one-line messages."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database, or SQLite in memory)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" else None


def require_current_schema(engine: Engine, url: str) -> None:
    """ConfigurationError, saying what to do, unless the database is at the schema this OPUS needs
    (``schema_problem``); connection errors are raised (SQLAlchemy's)."""
    problem = schema_problem(engine)
    if problem:
        raise ConfigurationError(f"{problem} (DATABASE_URL {shown_url(url)})")


def create_engine_for(url: str) -> Engine:
    """An engine for ``url`` (sqlite:/// or postgresql+psycopg2://), tuned for OPUS."""
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # LIFO: the connection used last is used next.  Each SQLite connection has a page cache of
        # its own (2 MB by default); taken in turn (FIFO), every pooled connection filled its cache
        # with the pages of the big lists, and a worker grew by tens of MB (bench/README.md).
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               pool_size=20, max_overflow=40, pool_use_lifo=True)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own is deferred).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            for pragma in PRAGMAS:  # the SQLite writer process's too
                cur.execute(pragma)
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if url.startswith("postgresql"):
        try:
            engine = create_engine(url, pool_size=10, max_overflow=40)
        except ImportError as exc:
            raise ConfigurationError(f"DATABASE_URL {url!r}: driver missing ({exc}); pip install psycopg2-binary") from None
        event.listen(engine, "checkout", _pg_checkout)
        event.listen(engine, "checkin", _pg_checkin)
        return engine
    raise ConfigurationError(f"DATABASE_URL {url!r}: only sqlite:/// and postgresql+psycopg2:// are supported")


#: A pooled PostgreSQL connection idle for longer than this is pinged when it is taken from the pool.
PING_IDLE_SECONDS = 5.0


def _pg_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """Hand out only a live PostgreSQL connection, without a round trip for one in use a moment ago.

    SQLAlchemy's ``pool_pre_ping`` sends ``SELECT 1`` at every checkout: a round trip on every
    request and every group commit (a job creation was a ping, BEGIN, two INSERTs and COMMIT).
    Here a connection is pinged only when it has been idle in the pool for more than
    ``PING_IDLE_SECONDS`` (a path that died silently, a firewall's idle timeout), or when its socket
    has something to read: an idle connection is sent nothing, unless the server is closing it
    (a restart, ``pg_terminate_backend``: an error message and end of file) or reports a setting.
    A ping that fails raises DisconnectionError: the pool drops the connection and takes another
    (tests/test_db_outage.py restarts PostgreSQL and kills every backend under a live server)."""
    if time.monotonic() - record.info.get("opus_idle_since", 0.0) <= PING_IDLE_SECONDS and not _readable(dbapi_conn):
        return
    try:
        cur = dbapi_conn.cursor()
        try:
            cur.execute("SELECT 1")
        finally:
            cur.close()
        dbapi_conn.rollback()  # the ping's transaction (psycopg2 opened one): the connection as it was
    except Exception as exc:  # psycopg2.Error: whatever the reason, this connection is not usable
        raise DisconnectionError(f"a pooled PostgreSQL connection failed its check: {exc}") from exc


@contextmanager
def pg_autocommit(driver: Any) -> Iterator[None]:
    """A pooled psycopg2 connection in autocommit mode for a with-block: its one statement (or one
    message of several, which PostgreSQL runs as one transaction) without BEGIN and COMMIT or
    ROLLBACK, each a round trip.  The mode is a flag of the client only (nothing is sent); the
    connection goes back to the pool as it was lent."""
    driver.autocommit = True
    try:
        yield
    finally:
        if not driver.closed:
            driver.autocommit = False


def _pg_checkin(_dbapi_conn: Any, record: Any) -> None:
    record.info["opus_idle_since"] = time.monotonic()


def _readable(dbapi_conn: Any) -> bool:
    """Whether the connection's socket has something to read (poll, not select: a gunicorn worker's
    descriptors go beyond select's 1,024)."""
    try:
        poller = select.poll()
        poller.register(dbapi_conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except Exception:  # a closed connection has no descriptor: it fails the ping
        return True


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


@contextmanager
def _alembic_quiet() -> Iterator[None]:
    """Without Alembic's INFO lines (one per step: a first `opus init` printed eleven, and each
    check of the schema two); its warnings and errors still show."""
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(max(logging.WARNING, level))
    try:
        yield
    finally:
        alembic_log.setLevel(level)


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema to ``revision`` (Alembic).  A database that a newer OPUS upgraded
    is a ConfigurationError that says so (Alembic's own error is a traceback about a revision)."""
    with _alembic_quiet():
        try:
            command.upgrade(_alembic_config(engine), revision)
        except CommandError as exc:
            raise ConfigurationError(schema_problem(engine) or f"cannot upgrade the database schema: {exc}") from None


def schema_is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration."""
    return schema_problem(engine) is None


def schema_revisions(engine: Engine) -> set[str]:
    """The Alembic revisions the database is at (none: no OPUS schema yet)."""
    with engine.connect() as conn, _alembic_quiet():
        if not inspect(conn).has_table("alembic_version"):
            return set()
        return set(MigrationContext.configure(conn).get_current_heads())


def schema_problem(engine: Engine) -> str | None:
    """None when the database's schema is the one this OPUS needs; else what is wrong and what to
    do, in words for the admin (no tables yet, an older schema, a schema of a newer OPUS).  Connection
    errors are raised (SQLAlchemy's)."""
    script = ScriptDirectory.from_config(_alembic_config(engine))
    heads = set(script.get_heads())
    current = schema_revisions(engine)
    if current == heads:
        return None
    needed = ", ".join(sorted(heads))
    if not current:
        return ("the database has no OPUS tables (or no record of their version): create them with "
                "`opus init` and these settings")
    at = ", ".join(sorted(current))
    known = {revision.revision for revision in script.walk_revisions()}
    if current - known:
        return (f"the database schema is at revision {at}, which this version of OPUS does not know "
                f"(it needs {needed}): a newer OPUS upgraded it; run that version")
    return (f"the database schema is at revision {at}; this version of OPUS needs {needed}: upgrade it "
            "with `opus init` and these settings (every job and user is kept)")


def refresh_statistics(engine: Engine) -> None:
    """After a bulk load (``opus migrate``): PostgreSQL's ANALYZE of the tables, so that the planner
    knows how many rows they hold.  Without it a table that was empty when last analysed looks
    empty until autovacuum's next round (up to a minute or more), and the job list took a plan for
    an empty table: LAST=100 of 100,000 jobs sorted every row, 57 ms against 0.1 ms with the index
    (bench/README.md).  SQLite keeps no statistics unless ANALYZE is run, and then keeps them
    however stale they grow: its fixed rules already choose the indexes, so it is left alone."""
    if engine.dialect.name != "postgresql":
        return
    quote = engine.dialect.identifier_preparer.quote
    names = ", ".join(quote(table.name) for table in metadata.sorted_tables)
    with engine.connect() as conn:
        # OPUS's tables only (by the search path, as every statement of OPUS): a bare ANALYZE would
        # go through every table of a database that may hold others'.
        conn.exec_driver_sql(f"ANALYZE {names}")
        conn.commit()
