"""The statements SQLite and PostgreSQL spell differently, written once.

Both support ``INSERT … ON CONFLICT`` (SQLAlchemy has one ``insert`` per dialect for it); every
repository that inserts-or-ignores or upserts goes through here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert(connection: Connection, table: Table) -> Any:
    """``INSERT INTO table`` with ``on_conflict_do_*`` for ``connection``'s database."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(
    connection: Connection, table: Table, values: dict[str, Any], keys: list[str]
) -> Any:
    """Insert ``values`` unless a row with the same ``keys`` exists (a concurrent twin waits for
    the first one's transaction, then does nothing). Add ``.returning(...)`` to tell which."""
    return insert(connection, table).values(**values).on_conflict_do_nothing(index_elements=keys)


def upsert(
    connection: Connection,
    table: Table,
    values: dict[str, Any],
    keys: list[str],
    update: dict[str, Any] | None = None,
) -> Any:
    """Insert ``values``, or update the existing row with the same ``keys``: with ``update`` when
    given, else with every non-key column of ``values``."""
    stmt = insert(connection, table).values(**values)
    if update is None:
        update = {k: stmt.excluded[k] for k in values if k not in keys}
    return stmt.on_conflict_do_update(index_elements=keys, set_=update)
