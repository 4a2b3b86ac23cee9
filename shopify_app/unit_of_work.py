"""Unit of work: one database transaction, rolled back unless ``commit()`` is called.

App-wide (not a feature's): one transaction hands out the repositories of every feature it
touches (the stock ledger, the orders and the Shopify side), so a webhook's receipt, its effect
on the ledger and its outbox job commit together.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol, Self

from sqlalchemy import Connection, Engine, RootTransaction
from sqlalchemy.exc import DBAPIError

from .clock import Clock, utc_now
from .db import pipeline
from .db.engine import READ_ONLY
from .observability.events import Event, emit_all
from .orders.ports import OrderRepository
from .orders.repository import SqlOrderRepository
from .shopify.ports import DuplicateDelivery, ShopifyRepository
from .shopify.repository import SqlShopifyRepository
from .stock.ports import StockRepository
from .stock.repository import SqlStockRepository


class UnitOfWork(Protocol):
    """What the use cases need: repositories, the transaction's time, commit and rollback.

    Each repository is a port (stock/ports.py, orders/ports.py, shopify/ports.py), so the use
    cases run over the in-memory fakes of tests/support/fakes.py as well.
    """

    now: datetime

    # Read-only in the protocol, so an implementation may hold a more specific repository.
    @property
    def stock(self) -> StockRepository: ...

    @property
    def orders(self) -> OrderRepository: ...

    @property
    def shopify(self) -> ShopifyRepository: ...

    @property
    def connection(self) -> Connection:
        """The transaction's connection, for the adapters that keep tables of their own (Bling's
        books, the shops' tokens) and must commit or roll back with the rest."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def commit(self) -> None:
        """Commit; DuplicateDelivery if the delivery whose receipt this transaction recorded
        turns out to have been seen before (everything it did is rolled back)."""
        ...

    def rollback(self) -> None: ...

    def record(self, action: str, **fields: Any) -> None: ...

    def enqueue(self, kind: str, key: str, payload: dict[str, Any]) -> bool:
        """Queue an outbox job in this transaction; False if ``(kind, key)`` exists already."""
        ...


class SqlAlchemyUnitOfWork:
    """A transaction on ``engine``; each ``with`` block is a new one, so an instance can be reused.

    ``now`` is read once when the transaction begins: every expiry decision in the transaction
    uses the same instant.
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock = utc_now,
        *,
        read_only: bool = False,
        snapshot: bool = False,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.read_only = read_only or snapshot
        self.snapshot = snapshot
        self._connection: Connection | None = None
        self._transaction: RootTransaction | None = None

    def __enter__(self) -> Self:
        connection = self.engine.connect()
        if self.read_only:
            options: dict[str, object] = {READ_ONLY: True}
            if connection.dialect.name == "postgresql":
                # Several statements, one snapshot (SQLite's read transaction is one already):
                # costs two extra round trips, so only reads that compare tables ask for it.
                # Other reads run each statement on its own (autocommit): no BEGIN, no COMMIT,
                # one round trip, and READ COMMITTED gave each statement its own snapshot anyway.
                options["isolation_level"] = "REPEATABLE READ" if self.snapshot else "AUTOCOMMIT"
            connection = connection.execution_options(**options)
        self._connection = connection
        try:
            self._transaction = connection.begin()
        except BaseException:
            connection.close()
            raise
        self.now = self.clock()
        self.events: list[Event] = []
        self.stock = SqlStockRepository(connection, self.now)
        self.orders = SqlOrderRepository(connection, self.now)
        self.shopify = SqlShopifyRepository(connection, self.now)
        return self

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("connection outside a with block")
        return self._connection

    def __exit__(self, *exc: object) -> None:
        try:
            if self._transaction is not None and self._transaction.is_active:
                self._transaction.rollback()
        finally:
            if self._connection is not None:
                self._connection.close()
            self._connection = self._transaction = None

    def commit(self) -> None:
        if self._transaction is None:
            raise RuntimeError("commit() outside a with block")
        # A variant that moved SKU needs its metafield written: its SKUs are marked dirty with
        # the ledger's own changes (stock/dirty.py), in one sorted write.
        self.stock.mark_changed(self.shopify.take_remapped())
        self.stock.flush()
        # PostgreSQL: the repositories queued their writes; they go out with the COMMIT, in one
        # round trip (db/pipeline.py), the Shopify side's first (its cart row is locked before
        # any SKU row), its delivery receipt last. SQLite wrote them already.
        writes = [
            *self.shopify.take_writes(),
            *self.stock.take_writes(),
            *self.shopify.take_receipt(),
        ]
        if writes:
            try:
                pipeline.run(self.connection, [*writes, pipeline.COMMIT])
            except DBAPIError as exc:
                if self.shopify.is_duplicate(exc):
                    raise DuplicateDelivery from exc
                raise
        self._transaction.commit()
        # Logged and counted only now that they are true.
        emit_all([*self.stock.take_events(), *self.events])
        self.events = []

    def enqueue(self, kind: str, key: str, payload: dict[str, Any]) -> bool:
        """Queue an outbox job in this transaction (outbox/service.py): it commits or rolls back
        with the change that needs it."""
        from .outbox.service import enqueue

        if self._connection is None:
            raise RuntimeError("enqueue() outside a with block")
        return enqueue(self._connection, kind, key, payload, now=self.now)

    def record(self, action: str, *, level: int = logging.INFO, **fields: Any) -> None:
        """Queue a business event; ``commit()`` emits it once the transaction committed."""
        self.events.append(Event(action, fields, level))

    def rollback(self) -> None:
        if self._transaction is not None:
            self._transaction.rollback()
