"""Several statements of a unit of work in one round trip on PostgreSQL (psycopg's pipeline
mode), inside the transaction SQLAlchemy began on the connection.

A cart webhook's transaction is a handful of reads that each lock something (the cart row, the
holder, the SKU rows) and then writes to six tables and a COMMIT. Through SQLAlchemy's
execution layer each statement cost more Python time than PostgreSQL spent on it, and each was
its own round trip (docs/architecture.md, "A webhook"). Here the reads that do not depend on one
another go out together, and every write of the transaction goes out with its COMMIT: a
delivery costs two round trips instead of thirteen.

The statements are PostgreSQL's own text with ``%(name)s`` placeholders, straight on the
driver (as stock/fast_path.py does); a driver error is raised as SQLAlchemy's, so callers and
the app's error handlers see what they would see from ``Connection.execute``, and a lost
connection is invalidated as SQLAlchemy invalidates one.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class Statement:
    """One statement to pipeline: its SQL (``%(name)s`` placeholders) and parameters."""

    sql: str
    params: Mapping[str, object] = field(default_factory=dict)


#: Ends a pipeline that writes: the transaction commits in the same round trip, and nothing of
#: it is visible (nor answered) before the answer to this arrived.
COMMIT = Statement("COMMIT")


class Ahead:
    """Statements sent first with the connection's next round trip (``ahead``): a lock whose
    answer can wait travels with the locks that follow it in the lock order."""

    def __init__(self, statements: Sequence[Statement]) -> None:
        self.statements = list(statements)
        self._rows: list[list[Any]] | None = None

    def rows(self, connection: Connection) -> list[list[Any]]:
        """Their rows; sent now if no round trip took them yet. An error of the round trip
        that took them is raised there: the transaction can then only roll back."""
        if self._rows is None:
            run(connection, [])
        if self._rows is None:
            raise RuntimeError("the round trip that took these statements failed")
        return self._rows


# Per Connection object (one per unit of work), so nothing queued outlives its transaction.
_AHEAD: weakref.WeakKeyDictionary[Connection, list[Ahead]] = weakref.WeakKeyDictionary()


def ahead(connection: Connection, statements: Sequence[Statement]) -> Ahead:
    """Queue ``statements`` to go out before those of the next ``run`` on ``connection``."""
    queued = Ahead(statements)
    _AHEAD.setdefault(connection, []).append(queued)
    return queued


def run(connection: Connection, statements: Sequence[Statement]) -> list[list[Any]]:
    """Send ``statements`` in one round trip, in order, in the connection's transaction, after
    any queued ``ahead`` of them; each one's rows (an empty list for those that return none).

    PostgreSQL runs them one after the other, each with its own snapshot (READ COMMITTED), so
    a read placed after a lock sees what the lock protects. An error aborts the rest: the
    transaction then only rolls back. With ``COMMIT`` last the transaction has committed (or
    failed) when this returns, and SQLAlchemy's own commit afterwards sends nothing.
    """
    queued = _AHEAD.pop(connection, [])
    if queued:
        statements = [*(s for q in queued for s in q.statements), *statements]
    driver = cast("psycopg.Connection[Any]", connection.connection.driver_connection)
    cursors = [driver.cursor() for _ in statements]
    try:
        with driver.pipeline():
            for cursor, statement in zip(cursors, statements, strict=True):
                # COMMIT is not prepared (a transaction statement); the others are.
                cursor.execute(statement.sql, statement.params, prepare=statement is not COMMIT)
        rows = [cursor.fetchall() if cursor.description else [] for cursor in cursors]
        for q in queued:
            q._rows, rows = rows[: len(q.statements)], rows[len(q.statements) :]
        return rows
    except psycopg.Error as exc:
        if driver.broken or driver.closed:
            connection.invalidate(exc)
        failed = statements[-1]
        raise DBAPIError.instance(failed.sql, dict(failed.params), exc, psycopg.Error) from exc
    finally:
        for cursor in cursors:
            cursor.close()
