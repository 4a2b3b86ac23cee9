"""Rows of the Shopify side: receipts, carts, orders. Same transaction as the stock repository.

Lock order (with stock/repository.py): a cart row before any SKU row, SKU rows in sorted order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from ..db.dialect import insert_ignore, upsert
from ..orders.model import ForwardStatus, Order, OrderDetails, OrderLine
from .tables import carts, order_lines, orders, variants, webhook_receipts

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Cart:
    shop: str
    token: str
    checkout_token: str | None
    cart_updated_at: datetime
    ordered: bool


class SqlShopifyRepository:
    def __init__(self, connection: Connection, now: datetime) -> None:
        self.connection = connection
        self.now = now
        self._postgres = connection.dialect.name == "postgresql"

    # --- webhook receipts -----------------------------------------------------------------

    def record_receipt(self, shop: str, webhook_id: str, topic: str) -> bool:
        """Note a delivery; False if it was seen before (a concurrent twin waits on the key)."""
        stmt = insert_ignore(
            self.connection,
            webhook_receipts,
            {"shop": shop, "webhook_id": webhook_id, "topic": topic, "received_at": self.now},
            ["shop", "webhook_id"],
        )
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT DO NOTHING.
        return self.connection.execute(stmt.returning(webhook_receipts.c.shop)).first() is not None

    # --- carts ----------------------------------------------------------------------------

    def lock_cart(self, shop: str, token: str) -> Cart:
        """Lock the cart's row, creating it (as never updated) on first sight."""
        self.connection.execute(
            insert_ignore(
                self.connection,
                carts,
                {
                    "shop": shop,
                    "token": token,
                    "cart_updated_at": EPOCH,
                    "ordered": False,
                    "updated_at": self.now,
                },
                ["shop", "token"],
            )
        )
        stmt = select(carts).where(carts.c.shop == shop, carts.c.token == token)
        if self._postgres:
            stmt = stmt.with_for_update()
        row = self.connection.execute(stmt).one()
        return Cart(row.shop, row.token, row.checkout_token, row.cart_updated_at, row.ordered)

    def save_cart(self, cart: Cart, shortfalls: dict[str, int] | None = None) -> None:
        values: dict[str, Any] = {
            "checkout_token": cart.checkout_token,
            "cart_updated_at": cart.cart_updated_at,
            "ordered": cart.ordered,
            "updated_at": self.now,
        }
        if shortfalls is not None:
            values["shortfalls"] = json.dumps(shortfalls, sort_keys=True) if shortfalls else None
        self.connection.execute(
            update(carts)
            .where(carts.c.shop == cart.shop, carts.c.token == cart.token)
            .values(**values)
        )

    def cart_token_of_checkout(self, shop: str, checkout_token: str) -> str | None:
        return self.connection.execute(
            select(carts.c.token).where(
                carts.c.shop == shop, carts.c.checkout_token == checkout_token
            )
        ).scalar()

    def shortfalls(self, shop: str, token: str) -> dict[str, int]:
        raw = self.connection.execute(
            select(carts.c.shortfalls).where(carts.c.shop == shop, carts.c.token == token)
        ).scalar()
        return json.loads(raw) if raw else {}

    # --- variants (App Proxy by variant id) ------------------------------------------------

    def remember_variants(self, shop: str, mapping: dict[int, str]) -> None:
        """Record which SKU each variant carries, writing only what is new or changed (so a
        busy SKU's deliveries do not all write, nor lock, the same rows)."""
        if not mapping:
            return
        known = dict(
            self.connection.execute(
                select(variants.c.variant_id, variants.c.sku).where(
                    variants.c.shop == shop, variants.c.variant_id.in_(list(mapping))
                )
            ).all()
        )
        changed = sorted(v for v, sku in mapping.items() if known.get(v) != sku)
        for variant_id in changed:  # sorted: two deliveries lock the rows in the same order
            values = {"shop": shop, "variant_id": variant_id, "sku": mapping[variant_id]}
            values["updated_at"] = self.now
            self.connection.execute(
                upsert(self.connection, variants, values, ["shop", "variant_id"])
            )

    def sku_of_variant(self, shop: str, variant_id: int) -> str | None:
        return self.connection.execute(
            select(variants.c.sku).where(
                variants.c.shop == shop, variants.c.variant_id == variant_id
            )
        ).scalar()

    # --- orders ---------------------------------------------------------------------------

    def order(self, shop: str, order_id: int, *, lock: bool = False) -> Order | None:
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
        )

    def claim_order(self, order: Order) -> bool:
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

    def update_order(self, shop: str, order_id: int, **values: Any) -> None:
        """Set columns of one order (the Bling forwarder records its steps with this)."""
        self.connection.execute(
            update(orders)
            .where(orders.c.shop == shop, orders.c.order_id == order_id)
            .values(updated_at=self.now, **values)
        )

    def save_order(self, order: Order) -> None:
        """Write the order's status and (new) lines after the ledger was changed for it."""
        self.connection.execute(
            update(orders)
            .where(orders.c.shop == order.shop, orders.c.order_id == order.order_id)
            .values(
                status=order.status,
                forward_status=order.forward_status,
                oversold=order.oversold,
                updated_at=self.now,
            )
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

    # --- privacy --------------------------------------------------------------------------

    def forget_cart_tokens(self, shop: str, order_ids: Iterable[int]) -> list[str]:
        """Drop the cart tokens (pseudonymous shopper ids) and the customer's name and e-mail
        kept for Bling from these orders; return the tokens."""
        ids = list(order_ids)
        tokens = [
            t
            for t in self.connection.execute(
                select(orders.c.cart_token).where(orders.c.shop == shop, orders.c.order_id.in_(ids))
            ).scalars()
            if t
        ]
        if ids:
            self.connection.execute(
                update(orders)
                .where(orders.c.shop == shop, orders.c.order_id.in_(ids))
                .values(
                    cart_token=None, customer_name=None, customer_email=None, updated_at=self.now
                )
            )
        if tokens:
            self.connection.execute(
                delete(carts).where(carts.c.shop == shop, carts.c.token.in_(tokens))
            )
        return tokens

    def erase_shop(self, shop: str) -> None:
        """shop/redact: nothing about the shop's carts, customers or deliveries stays.

        Orders whose units are still committed here (waiting for Bling, or for their reversal
        there) keep their ids and lines, without cart token or customer: they are what the
        ledger's ``committed`` counts, and deleting them would leave those units sold forever.
        Every other order goes.
        """
        open_ = orders.c.forward_status.in_([ForwardStatus.PENDING, ForwardStatus.REVERSAL_PENDING])
        self.connection.execute(
            update(orders)
            .where(orders.c.shop == shop, open_)
            .values(cart_token=None, customer_name=None, customer_email=None, updated_at=self.now)
        )
        closed = select(orders.c.order_id).where(orders.c.shop == shop, ~open_)
        self.connection.execute(
            delete(order_lines).where(
                order_lines.c.shop == shop, order_lines.c.order_id.in_(closed)
            )
        )
        self.connection.execute(delete(orders).where(orders.c.shop == shop, ~open_))
        for table in (carts, webhook_receipts, variants):
            self.connection.execute(delete(table).where(table.c.shop == shop))


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
