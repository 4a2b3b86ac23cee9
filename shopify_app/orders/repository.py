"""The orders' rows: the Order aggregate in and out of ``orders`` and ``order_lines``.

Same transaction as the other repositories (the unit of work hands them out together). Lock
order (with stock/repository.py and shopify/repository.py): the cart row, then the order row,
then the SKU rows in sorted order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from ..db.dialect import insert_ignore
from .model import (
    BlingOrder,
    BlingStock,
    ForwardStatus,
    Order,
    OrderDetails,
    OrderLine,
    OrderStatus,
    StockEntry,
)
from .tables import order_adjustments, order_lines, order_stock_entries, orders

#: Orders whose units are still counted in ``committed`` (or must be given back in the ERP).
OPEN = (ForwardStatus.PENDING, ForwardStatus.AWAITING_PAYMENT, ForwardStatus.REVERSAL_PENDING)


class SqlOrderRepository:
    def __init__(self, connection: Connection, now: datetime) -> None:
        self.connection = connection
        self.now = now
        self._postgres = connection.dialect.name == "postgresql"

    def get(self, shop: str, order_id: int, *, lock: bool = False) -> Order | None:
        stmt = select(orders).where(orders.c.shop == shop, orders.c.order_id == order_id)
        if lock and self._postgres:
            stmt = stmt.with_for_update()
        row = self.connection.execute(stmt).one_or_none()
        if row is None:
            return None
        lines = self.connection.execute(
            select(order_lines)
            .where(order_lines.c.shop == shop, order_lines.c.order_id == order_id)
            .order_by(order_lines.c.line_id)
        )
        return Order(
            shop,
            order_id,
            row.name,
            row.cart_token,
            row.status,
            row.forward_status,
            [
                OrderLine(
                    r.line_id,
                    r.sku,
                    r.quantity,
                    r.from_holds,
                    r.from_available,
                    r.oversold,
                    r.unit_price_cents,
                    r.title,
                    r.removed,
                )
                for r in lines
            ],
            OrderDetails(
                row.placed_at,
                row.shipping_cents,
                row.discount_cents,
                row.customer_name,
                row.customer_email,
            ),
            row.bling_order_id,
            row.bling_stock,
            row.forwarded_at,
            row.bling_order,
            *self._adjustments(shop, order_id),
        )

    def _adjustments(self, shop: str, order_id: int) -> tuple[list[str], list[StockEntry]]:
        applied = self.connection.execute(
            select(order_adjustments.c.adjustment)
            .where(order_adjustments.c.shop == shop, order_adjustments.c.order_id == order_id)
            .order_by(order_adjustments.c.applied_at, order_adjustments.c.adjustment)
        ).scalars()
        entries = self.connection.execute(
            select(order_stock_entries)
            .where(order_stock_entries.c.shop == shop, order_stock_entries.c.order_id == order_id)
            .order_by(order_stock_entries.c.adjustment, order_stock_entries.c.sku)
        )
        return list(applied), [
            StockEntry(r.adjustment, r.sku, r.quantity, r.state) for r in entries
        ]

    def claim(self, order: Order) -> bool:
        """Insert the order row; False if this order was recorded before (idempotency)."""
        stmt = (
            insert_ignore(
                self.connection,
                orders,
                {
                    "shop": order.shop,
                    "order_id": order.order_id,
                    "name": order.name,
                    "cart_token": order.cart_token,
                    "status": order.status,
                    "forward_status": order.forward_status,
                    "oversold": False,
                    "created_at": self.now,
                    "updated_at": self.now,
                    **_details_columns(order.details),
                },
                ["shop", "order_id"],
            )
        ).returning(orders.c.order_id)
        return self.connection.execute(stmt).first() is not None

    def save(self, order: Order) -> None:
        """Write the order's state and its new lines. Call with the order read under its lock
        (``get(lock=True)``) or just claimed: every state column is written."""
        self._update(
            order,
            status=order.status,
            forward_status=order.forward_status,
            oversold=order.oversold,
            bling_order_id=order.bling_order_id,
            bling_stock=order.bling_stock,
            forwarded_at=order.forwarded_at,
            bling_order=order.bling_order,
        )
        existing = set(
            self.connection.execute(
                select(order_lines.c.line_id).where(
                    order_lines.c.shop == order.shop, order_lines.c.order_id == order.order_id
                )
            ).scalars()
        )
        new = [line for line in order.lines if line.line_id not in existing]
        if new:
            self.connection.execute(
                insert(order_lines),
                [{"shop": order.shop, "order_id": order.order_id, **line.__dict__} for line in new],
            )
        for line in order.lines:
            if line.line_id in existing:  # a refund or an edit may have changed it
                self.connection.execute(
                    update(order_lines)
                    .where(
                        order_lines.c.shop == order.shop,
                        order_lines.c.order_id == order.order_id,
                        order_lines.c.line_id == line.line_id,
                    )
                    .values(
                        quantity=line.quantity,
                        from_available=line.from_available,
                        oversold=line.oversold,
                        removed=line.removed,
                    )
                )
        self._save_adjustments(order)

    def _save_adjustments(self, order: Order) -> None:
        key = (order_adjustments.c.shop == order.shop) & (
            order_adjustments.c.order_id == order.order_id
        )
        known = set(
            self.connection.execute(select(order_adjustments.c.adjustment).where(key)).scalars()
        )
        for adjustment in order.adjustments:
            if adjustment not in known:
                self.connection.execute(
                    insert(order_adjustments).values(
                        shop=order.shop,
                        order_id=order.order_id,
                        adjustment=adjustment,
                        applied_at=self.now,
                    )
                )
        self.save_stock_entries(order)

    def save_stock_entries(self, order: Order) -> None:
        """Write the order's ERP stock entries (new ones, and where each stands)."""
        table = order_stock_entries
        rows = self.connection.execute(
            select(table.c.adjustment, table.c.sku, table.c.state).where(
                table.c.shop == order.shop, table.c.order_id == order.order_id
            )
        ).all()
        stored = {(r.adjustment, r.sku): r.state for r in rows}
        for entry in order.stock_entries:
            where = (entry.adjustment, entry.sku)
            if where not in stored:
                self.connection.execute(
                    insert(table).values(
                        shop=order.shop,
                        order_id=order.order_id,
                        adjustment=entry.adjustment,
                        sku=entry.sku,
                        quantity=entry.quantity,
                        state=entry.state,
                        updated_at=self.now,
                    )
                )
            elif stored[where] != entry.state:
                self.connection.execute(
                    update(table)
                    .where(
                        table.c.shop == order.shop,
                        table.c.order_id == order.order_id,
                        table.c.adjustment == entry.adjustment,
                        table.c.sku == entry.sku,
                    )
                    .values(state=entry.state, updated_at=self.now)
                )

    def save_erp_order(self, order: Order) -> None:
        """Write only the ERP's sales order (its id and where it stands): the forward and the
        cancellation in the ERP record it without touching the order's status."""
        self._update(order, bling_order_id=order.bling_order_id, bling_order=order.bling_order)

    def save_stock_state(self, order: Order) -> None:
        """Write only where the ERP's stock posting stands (recorded before each call to it)."""
        self._update(order, bling_stock=order.bling_stock)

    def units_in_reversal(self, skus: Iterable[str]) -> dict[str, int]:
        """Per SKU, the units of acknowledged orders whose ERP posting is being reversed
        (``bling_stock`` reversing, recorded before the call) and that ``reverse`` has not put
        back on hand yet: from the moment the call leaves, the ERP's balance may include them
        while ``on_hand`` does not (erp/stock_sync.py takes them off such a balance)."""
        remaining = func.sum(order_lines.c.quantity - order_lines.c.removed)
        rows = self.connection.execute(
            select(order_lines.c.sku, remaining)
            .join(
                orders,
                (orders.c.shop == order_lines.c.shop)
                & (orders.c.order_id == order_lines.c.order_id),
            )
            .where(
                # reversal_pending first: ix_orders_forward_status finds the few such orders.
                orders.c.forward_status == ForwardStatus.REVERSAL_PENDING,
                orders.c.bling_stock == BlingStock.REVERSING,
                orders.c.forwarded_at.is_not(None),
                order_lines.c.sku.in_(list(skus)),
            )
            .group_by(order_lines.c.sku)
        )
        return {sku: int(units) for sku, units in rows if units}

    def _update(self, order: Order, **values: Any) -> None:
        self.connection.execute(
            update(orders)
            .where(orders.c.shop == order.shop, orders.c.order_id == order.order_id)
            .values(updated_at=self.now, **values)
        )

    # --- privacy --------------------------------------------------------------------------

    def forget_customers(self, shop: str, order_ids: Iterable[int]) -> list[str]:
        """Drop the cart tokens (pseudonymous shopper ids) and the customer's name and e-mail
        kept for the ERP from these orders; return the tokens."""
        ids = list(order_ids)
        if not ids:
            return []
        tokens = [
            t
            for t in self.connection.execute(
                select(orders.c.cart_token).where(orders.c.shop == shop, orders.c.order_id.in_(ids))
            ).scalars()
            if t
        ]
        self.connection.execute(
            update(orders)
            .where(orders.c.shop == shop, orders.c.order_id.in_(ids))
            .values(cart_token=None, customer_name=None, customer_email=None, updated_at=self.now)
        )
        return tokens

    def erase_shop(self, shop: str) -> None:
        """shop/redact: nothing about the shop's customers stays.

        Orders whose units are still committed here (waiting for the ERP, or for their reversal
        there) keep their ids and lines, without cart token or customer: they are what the
        ledger's ``committed`` counts, and deleting them would leave those units sold forever.
        Every other order goes.
        """
        open_ = orders.c.forward_status.in_(list(OPEN))
        self.connection.execute(
            update(orders)
            .where(orders.c.shop == shop, open_)
            .values(cart_token=None, customer_name=None, customer_email=None, updated_at=self.now)
        )
        closed = select(orders.c.order_id).where(orders.c.shop == shop, ~open_)
        for table in (order_adjustments, order_stock_entries):
            self.connection.execute(
                delete(table).where(table.c.shop == shop, table.c.order_id.in_(closed))
            )
        self.connection.execute(
            delete(order_lines).where(
                order_lines.c.shop == shop, order_lines.c.order_id.in_(closed)
            )
        )
        self.connection.execute(delete(orders).where(orders.c.shop == shop, ~open_))


def _details_columns(details: OrderDetails | None) -> dict[str, Any]:
    if details is None:
        return {}
    return {
        "placed_at": details.placed_at,
        "shipping_cents": details.shipping_cents,
        "discount_cents": details.discount_cents,
        "customer_name": details.customer_name,
        "customer_email": details.customer_email,
    }


# --- for operators (outbox show) -----------------------------------------------------------------


@dataclass(frozen=True)
class Attention:
    """One order an operator must look at: (Shopify id, name, the ERP's sales order id)."""

    order_id: int
    name: str | None
    erp_order_id: int | None


@dataclass
class LifeFigures:
    """Where the orders that still need the ERP, or a person, stand."""

    awaiting_payment: int = 0
    #: Cancelled here; their ERP sales order is not cancelled there yet.
    to_cancel: int = 0
    cancel_refused: list[Attention] = field(default_factory=list)
    #: The ERP had a sales order under their number that we did not create: not forwarded.
    foreign: list[Attention] = field(default_factory=list)


def life_figures(connection: Connection, *, limit: int = 20) -> LifeFigures:
    """Read the figures (and up to ``limit`` orders of each list) in the caller's transaction."""
    c = orders.c
    figures = LifeFigures()
    figures.awaiting_payment = connection.execute(
        select(func.count()).where(c.forward_status == ForwardStatus.AWAITING_PAYMENT)
    ).scalar_one()
    maybe_open = [BlingOrder.REQUESTED, BlingOrder.CREATED, BlingOrder.CANCEL_REFUSED]
    figures.to_cancel = connection.execute(
        select(func.count()).where(c.status == OrderStatus.CANCELLED, c.bling_order.in_(maybe_open))
    ).scalar_one()
    for state, target in (
        (BlingOrder.CANCEL_REFUSED, figures.cancel_refused),
        (BlingOrder.FOREIGN, figures.foreign),
    ):
        rows = connection.execute(
            select(c.order_id, c.name, c.bling_order_id)
            .where(c.bling_order == state)
            .order_by(c.updated_at.desc())
            .limit(limit)
        )
        target.extend(Attention(r.order_id, r.name, r.bling_order_id) for r in rows)
    return figures
