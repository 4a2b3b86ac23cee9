"""The database engine: one per process, with the locking behaviour the ledger relies on.

PostgreSQL runs at READ COMMITTED and the repository takes row locks (``SELECT … FOR UPDATE``).
SQLite has no row locks, so every write transaction starts with ``BEGIN IMMEDIATE``: the database
write lock is taken before the first read, which makes check-then-write safe across processes.
"""

from __future__ import annotations

import os
import re
from typing import Any, cast

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIModule
from sqlalchemy.exc import DBAPIError

from ..config import Settings

#: Execution option that marks a connection as read only: on SQLite it then begins a deferred
#: transaction, which does not queue behind writers.
READ_ONLY = "bazico_read_only"


def make_engine(settings: Settings) -> Engine:
    """Create the engine for ``settings.database_url`` (no connection is opened here)."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    options = f"-c lock_timeout={settings.db_lock_timeout_ms} -c statement_timeout=15000"
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=10,
        # No ping per checkout (a round trip on every request): a connection found dead fails
        # its request once, and SQLAlchemy then discards every pooled connection that predates
        # the failure, so after a database restart the pool is fresh again at once.
        pool_recycle=1800,
        connect_args={"connect_timeout": 5, "application_name": "bazico", "options": options},
    )


def _sqlite_engine(url: Any) -> Engine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        directory = os.path.dirname(os.path.abspath(database))
        os.makedirs(directory, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see "begin").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = "DEFERRED" if conn.get_execution_options().get(READ_ONLY) else "IMMEDIATE"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


# --- one statement straight on the driver (PostgreSQL's hot paths) ----------------------------

#: psycopg converts a query's ``%(name)s`` placeholders with a regular expression and keeps the
#: result only for queries up to this many bytes (``psycopg._queries``): a longer one is parsed
#: again on every execution, a tenth of a storefront request's Python time.
CONVERSION_CACHED_UP_TO = 4096


def compact_sql(sql: str) -> str:
    """``sql`` on one line: its ``--`` comments dropped and every run of whitespace one space,
    so a hot path's long statement stays within ``CONVERSION_CACHED_UP_TO``. Only for statements
    with no string literals (a ``--`` or a run of spaces inside quotes would change)."""
    code = re.sub(r"--[^\n]*", "", sql)
    if "'" in code:
        raise ValueError("compact_sql: the statement has a string literal")
    return " ".join(code.split())


def execute_autocommit(
    engine: Engine, sql: str, params: dict[str, object], *, all_rows: bool = False
) -> Any:
    """Run one statement as its own transaction on a pooled psycopg connection; its first row
    (every row with ``all_rows``).

    Straight on the driver: SQLAlchemy's execution layer costs more Python time than the
    statement costs PostgreSQL on this path. The pool still owns the connection (checkout and
    return), ``autocommit`` is only flipped while the connection is out (psycopg sends nothing
    for it, and no BEGIN/COMMIT round trips follow), and a driver error is raised as
    SQLAlchemy's, so the app's handlers answer 503 for it as for any other statement. A lost
    connection empties the pool, as SQLAlchemy does on a disconnect: after a database restart
    one request fails, not one per pooled connection.
    """
    fairy = checkout(engine, sql, params)
    try:
        driver = fairy.driver_connection
        driver.autocommit = True
        try:
            with driver.cursor() as cursor:
                cursor.execute(sql, params, prepare=True)
                row = cursor.fetchall() if all_rows else cursor.fetchone()
        finally:
            if not driver.closed:
                driver.autocommit = False
    except psycopg.Error as exc:
        discard_if_broken(engine, fairy, driver, exc)
        raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc
    finally:
        fairy.close()
    return row


def checkout(engine: Engine, sql: str, params: dict[str, object]) -> Any:
    """A pooled connection. ``raw_connection`` raises the driver's own error when a new
    connection cannot be opened (the database is down or restarting); it is raised as
    SQLAlchemy's here, as ``engine.connect()`` would, so the request gets a 503, not a 500."""
    try:
        return engine.raw_connection()
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc


def discard_if_broken(engine: Engine, fairy: Any, driver: Any, exc: psycopg.Error) -> None:
    # SQLAlchemy types a driver error as its protocol's nested DBAPIModule.Error class, which no
    # driver's exception derives from; psycopg's Error is what the psycopg dialect reads.
    if engine.dialect.is_disconnect(cast(DBAPIModule.Error, exc), driver, None) or driver.broken:
        fairy.invalidate(exc)
        engine.dispose(close=False)
