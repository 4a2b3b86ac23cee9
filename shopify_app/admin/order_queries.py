"""Read models of the orders and their way to Bling: the Pedidos page, the Agora's backlog and
oversells, and ``orders show``. Plain reads in the caller's read-only transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from ..orders.tables import order_lines, orders
from ..outbox import kinds
from ..outbox.tables import outbox_jobs

#: The outbox kinds that carry an order to Bling (keyed "{shop}:{order_id}").
ORDER_KINDS = (kinds.FORWARD_ORDER, kinds.REVERSE_ORDER)
#: Which orders the Pedidos page lists (``state``): "dead" is read from the outbox.
ORDER_STATES = ("all", "pending", "forwarded", "cancelled", "dead")


# --- orders -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobState:
    id: int
    kind: str
    status: str  # pending, done, dead
    attempts: int
    due_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class OrderLineRow:
    sku: str
    quantity: int
    from_holds: int
    from_available: int
    oversold: int
    title: str | None
    #: Units a restocked refund or an order edit took off the line since.
    removed: int = 0


@dataclass(frozen=True)
class OrderRow:
    shop: str
    order_id: int
    name: str | None
    status: str  # confirmed, cancelled
    forward_status: str
    bling_order_id: int | None
    bling_stock: str
    oversold: bool
    created_at: datetime
    forwarded_at: datetime | None
    job: JobState | None = None
    lines: list[OrderLineRow] = field(default_factory=list)

    @property
    def state(self) -> str:
        """What the Pedidos page shows: a dead job first, else the order's way to Bling."""
        if self.job is not None and self.job.status == "dead":
            return "dead"
        return self.forward_status


def _order_row(row: Any) -> OrderRow:
    return OrderRow(
        shop=row.shop,
        order_id=int(row.order_id),
        name=row.name,
        status=row.status,
        forward_status=row.forward_status,
        bling_order_id=row.bling_order_id,
        bling_stock=row.bling_stock,
        oversold=bool(row.oversold),
        created_at=row.created_at,
        forwarded_at=row.forwarded_at,
    )


def _jobs_of(connection: Connection, keys: list[str]) -> dict[str, JobState]:
    """The latest outbox job per order key (the reversal once there is one)."""
    if not keys:
        return {}
    rows = connection.execute(
        select(outbox_jobs)
        .where(outbox_jobs.c.kind.in_(ORDER_KINDS), outbox_jobs.c.key.in_(keys))
        .order_by(outbox_jobs.c.id)
    )
    found: dict[str, JobState] = {}
    for row in rows:
        found[row.key] = JobState(
            row.id, row.kind, row.status, row.attempts, row.due_at, row.last_error
        )
    return found


def list_orders(connection: Connection, *, state: str = "all", limit: int = 100) -> list[OrderRow]:
    """The newest orders first, with their outbox job; ``state`` as in ORDER_STATES."""
    stmt = select(orders).order_by(orders.c.created_at.desc(), orders.c.order_id.desc())
    if state == "dead":
        dead = connection.execute(
            select(outbox_jobs.c.key).where(
                outbox_jobs.c.kind.in_(ORDER_KINDS), outbox_jobs.c.status == "dead"
            )
        )
        ids = [_split_key(row.key) for row in dead]
        wanted = [order_id for _shop, order_id in ids if order_id is not None]
        stmt = stmt.where(orders.c.order_id.in_(wanted))
    elif state in ("pending", "forwarded", "cancelled"):
        statuses = ["pending", "reversal_pending"] if state == "pending" else [state]
        if state == "forwarded":
            statuses = ["forwarded", "reversed"]
        stmt = stmt.where(orders.c.forward_status.in_(statuses))
    found = [_order_row(row) for row in connection.execute(stmt.limit(limit))]
    jobs = _jobs_of(connection, [f"{o.shop}:{o.order_id}" for o in found])
    rows = [_with(o, job=jobs.get(f"{o.shop}:{o.order_id}")) for o in found]
    if state == "dead":
        rows = [o for o in rows if o.state == "dead"]
    return rows


def get_order(connection: Connection, order_id: int) -> OrderRow | None:
    """One order (by Shopify's id) with its lines and its outbox job."""
    row = connection.execute(select(orders).where(orders.c.order_id == order_id)).first()
    if row is None:
        return None
    order = _order_row(row)
    lines = [
        OrderLineRow(
            r.sku, r.quantity, r.from_holds, r.from_available, r.oversold, r.title, r.removed
        )
        for r in connection.execute(
            select(order_lines)
            .where(order_lines.c.shop == order.shop, order_lines.c.order_id == order.order_id)
            .order_by(order_lines.c.line_id)
        )
    ]
    job = _jobs_of(connection, [f"{order.shop}:{order.order_id}"]).get(
        f"{order.shop}:{order.order_id}"
    )
    return _with(order, job=job, lines=lines)


def _with(order: OrderRow, **changes: Any) -> OrderRow:
    return OrderRow(**{**{f: getattr(order, f) for f in order.__dataclass_fields__}, **changes})


def _split_key(key: str) -> tuple[str, int | None]:
    shop, _, order_id = key.rpartition(":")
    return shop, int(order_id) if order_id.isdigit() else None


@dataclass(frozen=True)
class BlingBacklog:
    """Orders waiting for Bling: how many, and how long the oldest has waited."""

    waiting: int
    oldest_age_seconds: float | None
    dead_jobs: int


def bling_backlog(connection: Connection, now: datetime) -> BlingBacklog:
    count, oldest = connection.execute(
        select(func.count(), func.min(orders.c.created_at)).where(
            orders.c.forward_status.in_(["pending", "reversal_pending"])
        )
    ).one()
    dead = connection.execute(
        select(func.count()).where(
            outbox_jobs.c.kind.in_(ORDER_KINDS), outbox_jobs.c.status == "dead"
        )
    ).scalar_one()
    age = None if oldest is None else max(0.0, (now - oldest).total_seconds())
    return BlingBacklog(int(count), age, int(dead))


@dataclass(frozen=True)
class Oversell:
    order_id: int
    name: str | None
    sku: str
    units: int
    created_at: datetime


def oversells(connection: Connection, *, limit: int = 10) -> tuple[int, list[Oversell]]:
    """Units Shopify sold that the ledger could not cover (must stay 0), and the latest lines."""
    total = connection.execute(
        select(func.coalesce(func.sum(order_lines.c.oversold), 0))
    ).scalar_one()
    rows = connection.execute(
        select(orders.c.order_id, orders.c.name, order_lines.c.sku, order_lines.c.oversold)
        .add_columns(orders.c.created_at)
        .join(
            orders,
            (orders.c.shop == order_lines.c.shop) & (orders.c.order_id == order_lines.c.order_id),
        )
        .where(order_lines.c.oversold > 0)
        .order_by(orders.c.created_at.desc())
        .limit(limit)
    )
    lines = [Oversell(r.order_id, r.name, r.sku, r.oversold, r.created_at) for r in rows]
    return int(total), lines
