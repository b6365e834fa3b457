"""Which database errors mean "the database is unavailable now" rather than "this code is wrong".

PostgreSQL stopped or restarting, a connection cut, the connection pool exhausted, SQLite's file
locked past its busy timeout or unreadable: the request may well succeed later, so the server
answers 503 with Retry-After (``opus.server.errors``), never 500.  Errors that a retry cannot
cure (a constraint, a syntax error: ``IntegrityError``, ``ProgrammingError``) are not outages.

``JobStore.create`` talks to the driver directly (``opus.storage.driverinsert``), so the drivers'
own exception classes are recognised as well as SQLAlchemy's wrappers of them.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc

try:  # psycopg2 is only needed with PostgreSQL
    import psycopg2
    _PG_OUTAGES: tuple[type[BaseException], ...] = (psycopg2.OperationalError, psycopg2.InterfaceError)
except ImportError:  # pragma: no cover - installed with the package
    _PG_OUTAGES = ()

#: Seconds a client is told to wait before retrying (the Retry-After of a 503).
RETRY_AFTER = 5
_DRIVER_OUTAGES: tuple[type[BaseException], ...] = (sqlite3.OperationalError, *_PG_OUTAGES)


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot be reached or used right now."""
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                        sa_exc.DisconnectionError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(exc.orig, _DRIVER_OUTAGES)
    return isinstance(exc, _DRIVER_OUTAGES)
