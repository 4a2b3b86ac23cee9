"""Rows of the Shopify side: receipts, carts, variants. Same transaction as the stock and order
repositories.

Lock order (with stock/repository.py, orders/repository.py): a cart row, then an order row, then
the SKU rows in sorted order.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from ..db.dialect import insert_ignore, upsert
from .ports import EPOCH, Cart
from .tables import carts, stock_metafields, variants, webhook_receipts


class SqlShopifyRepository:
    def __init__(self, connection: Connection, now: datetime) -> None:
        self.connection = connection
        self.now = now
        self._postgres = connection.dialect.name == "postgresql"
        self._remapped: set[str] = set()

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
        """Lock the cart's row, creating it (as never updated) on first sight.

        The lock first: a cart's later deliveries (the most of them) find its row in one round
        trip; only the first inserts it (a concurrent first delivery waits on the key, then
        inserts nothing) and locks it then."""
        stmt = select(carts).where(carts.c.shop == shop, carts.c.token == token)
        if self._postgres:
            stmt = stmt.with_for_update()
        row = self.connection.execute(stmt).first()
        if row is None:
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

    def remember_variants(
        self, shop: str, mapping: dict[int, str], untracked: Collection[int] = ()
    ) -> None:
        """Record which SKU each variant carries, writing only what is new or changed (so a
        busy SKU's deliveries do not all write, nor lock, the same rows); forget the variants of
        ``untracked`` (their lines now carry a SKU the ledger does not track).

        The SKUs a variant moved from or to are marked dirty at commit (the unit of work hands
        them to the stock repository): the variant's stock metafield follows its SKU, or is
        deleted once it carries none the ledger tracks.
        """
        wanted = set(mapping) | set(untracked)
        if not wanted:
            return
        known = dict(
            self.connection.execute(
                select(variants.c.variant_id, variants.c.sku).where(
                    variants.c.shop == shop, variants.c.variant_id.in_(sorted(wanted))
                )
            ).all()
        )
        changed = {v for v, sku in mapping.items() if known.get(v) != sku}
        gone = {v for v in untracked if v in known and v not in mapping}
        for variant_id in sorted(changed | gone):  # sorted: deliveries lock rows in one order
            if variant_id in gone:
                self.connection.execute(
                    delete(variants).where(
                        variants.c.shop == shop, variants.c.variant_id == variant_id
                    )
                )
            else:
                values = {"shop": shop, "variant_id": variant_id, "sku": mapping[variant_id]}
                values["updated_at"] = self.now
                self.connection.execute(
                    upsert(self.connection, variants, values, ["shop", "variant_id"])
                )
                self._remapped.add(mapping[variant_id])
            if variant_id in known:
                self._remapped.add(known[variant_id])

    def take_remapped(self) -> set[str]:
        """The SKUs whose variants changed in this transaction (for the dirty marks)."""
        remapped, self._remapped = self._remapped, set()
        return remapped

    def sku_of_variant(self, shop: str, variant_id: int) -> str | None:
        return self.connection.execute(
            select(variants.c.sku).where(
                variants.c.shop == shop, variants.c.variant_id == variant_id
            )
        ).scalar()

    # --- privacy --------------------------------------------------------------------------

    def forget_carts(self, shop: str, tokens: Iterable[str]) -> None:
        """customers/redact: the carts of these tokens go (the orders forgot them already)."""
        chosen = list(tokens)
        if chosen:
            self.connection.execute(
                delete(carts).where(carts.c.shop == shop, carts.c.token.in_(chosen))
            )

    def erase_shop(self, shop: str) -> None:
        """shop/redact: nothing about the shop's carts, deliveries, variants or the stock
        metafields written to them stays (the orders' part is orders/repository.py's)."""
        for table in (carts, webhook_receipts, variants, stock_metafields):
            self.connection.execute(delete(table).where(table.c.shop == shop))
