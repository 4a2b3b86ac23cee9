"""Read models of the admin pages and of the operator commands that show the same things.

Plain reads in one read-only transaction each (never a lock): the hottest SKUs, the holds about
to end, a SKU's holds and movement history, and what the health page shows (the orders and
their way to Bling: ``order_queries.py``). Writes go through the use cases (``actions.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from ..db.engine import READ_ONLY
from ..erp.stock_tables import bling_products
from ..erp.tables import bling_rate_limit
from ..observability.events import holder_hash
from ..outbox.tables import outbox_pauses
from ..runtime import Runtime
from ..shopify.tables import webhook_receipts
from ..stock.tables import holds, skus, stock_movements


@contextmanager
def reading(runtime: Runtime) -> Iterator[Connection]:
    """A read-only transaction (a deferred one on SQLite: it never queues behind writers)."""
    with runtime.engine.connect() as connection:
        connection = connection.execution_options(**{READ_ONLY: True})
        with connection.begin():
            yield connection


def as_json(value: Any) -> Any:
    """Dataclasses, lists and datetimes as JSON values (ISO 8601 times)."""
    if hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# --- SKUs and holds ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SkuFigures:
    sku: str
    on_hand: int
    reserved: int
    committed: int
    available: int


def _due_quantity(now: datetime) -> Any:
    """Per SKU row, the units of active holds past their time: buyers no longer see them."""
    return (
        select(func.coalesce(func.sum(holds.c.quantity), 0))
        .where(
            holds.c.sku == skus.c.sku,
            holds.c.status == "active",
            holds.c.expires_at <= now,
        )
        .scalar_subquery()
    )


def _figures(rows: Any) -> list[SkuFigures]:
    found = []
    for row in rows:
        reserved = int(row.reserved) - int(row.due)
        available = int(row.on_hand) - reserved - int(row.committed)
        found.append(SkuFigures(row.sku, row.on_hand, reserved, row.committed, available))
    return found


def hottest_skus(connection: Connection, now: datetime, *, limit: int = 12) -> list[SkuFigures]:
    """The SKUs with the most units held or sold and not yet posted, then the scarcest."""
    stmt = (
        select(skus.c.sku, skus.c.on_hand, skus.c.reserved, skus.c.committed)
        .add_columns(_due_quantity(now).label("due"))
        .order_by(
            (skus.c.reserved + skus.c.committed).desc(),
            (skus.c.on_hand - skus.c.reserved - skus.c.committed),
            skus.c.sku,
        )
        .limit(limit)
    )
    return _figures(connection.execute(stmt))


def sku_figures(connection: Connection, now: datetime, sku: str) -> SkuFigures | None:
    stmt = (
        select(skus.c.sku, skus.c.on_hand, skus.c.reserved, skus.c.committed)
        .add_columns(_due_quantity(now).label("due"))
        .where(skus.c.sku == sku)
    )
    found = _figures(connection.execute(stmt))
    return found[0] if found else None


def sku_count(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(skus)).scalar_one())


@dataclass(frozen=True)
class HoldRow:
    id: str
    sku: str
    quantity: int
    source: str
    holder_hash: str | None  # never the cart token itself
    pending: bool  # a storefront hold no cart webhook has listed yet
    created_at: datetime
    expires_at: datetime
    seconds_left: int
    order_ref: str | None = None


def _hold_rows(rows: Any, now: datetime) -> list[HoldRow]:
    return [
        HoldRow(
            id=str(row.id),
            sku=row.sku,
            quantity=row.quantity,
            source=row.source,
            holder_hash=holder_hash(row.holder),
            pending=row.source == "proxy" and row.listed_at is None,
            created_at=row.created_at,
            expires_at=row.expires_at,
            seconds_left=max(0, int((row.expires_at - now).total_seconds())),
            order_ref=row.order_ref,
        )
        for row in rows
    ]


def live_holds(
    connection: Connection, now: datetime, *, sku: str | None = None, limit: int = 200
) -> list[HoldRow]:
    """Active holds not yet past their time, the soonest to end first."""
    stmt = (
        select(holds)
        .where(holds.c.status == "active", holds.c.expires_at > now)
        .order_by(holds.c.expires_at, holds.c.id)
        .limit(limit)
    )
    if sku is not None:
        stmt = stmt.where(holds.c.sku == sku)
    return _hold_rows(connection.execute(stmt), now)


@dataclass(frozen=True)
class MovementRow:
    id: int
    created_at: datetime
    reason: str
    reference: str | None
    on_hand_delta: int
    reserved_delta: int
    committed_delta: int
    # The SKU's counters right after this movement (walked back from the current ones).
    on_hand: int
    reserved: int
    committed: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.committed


def movement_history(connection: Connection, sku: str, *, limit: int = 100) -> list[MovementRow]:
    """The SKU's latest movements, newest first, each with the figures it left behind: "why is
    this SKU at 0?" read from the top down."""
    current = connection.execute(
        select(skus.c.on_hand, skus.c.reserved, skus.c.committed).where(skus.c.sku == sku)
    ).first()
    if current is None:
        return []
    rows = connection.execute(
        select(stock_movements)
        .where(stock_movements.c.sku == sku)
        .order_by(stock_movements.c.id.desc())
        .limit(limit)
    )
    on_hand, reserved, committed = current.on_hand, current.reserved, current.committed
    found = []
    for row in rows:
        found.append(
            MovementRow(
                id=row.id,
                created_at=row.created_at,
                reason=row.reason,
                reference=row.reference,
                on_hand_delta=row.on_hand_delta,
                reserved_delta=row.reserved_delta,
                committed_delta=row.committed_delta,
                on_hand=on_hand,
                reserved=reserved,
                committed=committed,
            )
        )
        on_hand -= row.on_hand_delta
        reserved -= row.reserved_delta
        committed -= row.committed_delta
    return found


def bling_product_of(connection: Connection, sku: str) -> dict[str, Any] | None:
    row = connection.execute(
        select(bling_products.c.product_id, bling_products.c.balance_as_of).where(
            bling_products.c.sku == sku
        )
    ).first()
    if row is None:
        return None
    return {"product_id": row.product_id, "balance_as_of": row.balance_as_of}


# --- health -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicDelivery:
    topic: str
    last_received_at: datetime
    deliveries: int


def last_deliveries(connection: Connection, shop: str | None) -> list[TopicDelivery]:
    """Per webhook topic, the last delivery received (and how many receipts are kept)."""
    stmt = select(
        webhook_receipts.c.topic,
        func.max(webhook_receipts.c.received_at),
        func.count(),
    ).group_by(webhook_receipts.c.topic)
    if shop is not None:
        stmt = stmt.where(webhook_receipts.c.shop == shop)
    rows = connection.execute(stmt.order_by(webhook_receipts.c.topic))
    return [TopicDelivery(topic, last, int(count)) for topic, last, count in rows]


@dataclass(frozen=True)
class PauseRow:
    kind: str
    until: datetime
    reason: str | None


def pauses(connection: Connection, now: datetime) -> list[PauseRow]:
    rows = connection.execute(
        select(outbox_pauses).where(outbox_pauses.c.until > now).order_by(outbox_pauses.c.kind)
    )
    return [PauseRow(r.kind, r.until, r.reason) for r in rows]


def bling_next_slot(connection: Connection, account: str | None) -> datetime | None:
    """When the next Bling request may leave (the shared rate limit's row), if booked."""
    if account is None:
        return None
    row = connection.execute(
        select(bling_rate_limit.c.next_slot_at).where(bling_rate_limit.c.account == account)
    ).first()
    return None if row is None else row.next_slot_at
