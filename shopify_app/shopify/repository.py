"""Rows of the Shopify side: receipts, carts, variants. Same transaction as the stock and order
repositories.

Lock order (with stock/repository.py, orders/repository.py): a cart row, then an order row, then
the SKU rows in sorted order.

On PostgreSQL the writes wait for the commit (``take_writes``: the unit of work sends them with
the stock's and the COMMIT in one round trip, db/pipeline.py), and so does the delivery's
receipt, last: a delivery seen before then fails on the receipt's key (``is_duplicate``) and
its whole transaction rolls back, where a check first cost every delivery a round trip.
Until then a read of the carts table sends the pending writes first (``_written``), so the
transaction reads what it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.exc import DBAPIError

from ..db import pipeline
from ..db.dialect import insert_ignore, upsert
from ..db.engine import compact_sql
from ..db.pipeline import Statement
from .ports import EPOCH, Cart, CartRaced
from .tables import carts, stock_metafields, variants, webhook_receipts

# PostgreSQL's statements (``%(name)s`` placeholders, db/pipeline.py).
_RECEIPT = (
    "INSERT INTO webhook_receipts (shop, webhook_id, topic, received_at)"
    " VALUES (%(shop)s, %(webhook_id)s, %(topic)s, %(now)s)"
)
_RECEIPT_KEY = "pk_webhook_receipts"
# The cart's row locked, or inserted (then locked as new), in one statement. Empty only when a
# concurrent first delivery of the cart inserted it meanwhile: its row is not in this
# statement's snapshot, so ``lock_cart`` locks it with ``_LOCK_CART`` alone, a statement later
# (``lock_cart_ahead``, whose later locks went out with it, raises CartRaced instead).
_LOCK_OR_CREATE_CART = compact_sql("""
WITH created AS (
    INSERT INTO carts (shop, token, cart_updated_at, ordered, updated_at)
    VALUES (%(shop)s, %(token)s, %(epoch)s, false, %(now)s)
    ON CONFLICT (shop, token) DO NOTHING
    RETURNING shop, token, checkout_token, cart_updated_at, ordered
)
SELECT * FROM created
UNION ALL
SELECT * FROM (SELECT shop, token, checkout_token, cart_updated_at, ordered FROM carts
                WHERE shop = %(shop)s AND token = %(token)s FOR UPDATE) AS known
""")
_LOCK_CART = (
    "SELECT shop, token, checkout_token, cart_updated_at, ordered FROM carts"
    " WHERE shop = %(shop)s AND token = %(token)s FOR UPDATE"
)
_SAVE_CART = (
    "UPDATE carts SET checkout_token = %(checkout_token)s, cart_updated_at = %(cart_updated_at)s,"
    " ordered = %(ordered)s, updated_at = %(now)s{shortfalls}"
    " WHERE shop = %(shop)s AND token = %(token)s"
)
# One primary-key lookup per variant (a filter on the shop's rows otherwise, on a table the
# planner has no statistics for yet); None for a variant not recorded.
_KNOWN_VARIANTS = (
    "SELECT id, (SELECT sku FROM shopify_variants WHERE shop = %(shop)s AND variant_id = id)"
    " FROM unnest(%(ids)s::bigint[]) AS wanted(id)"
)
_REMEMBER_VARIANT = (
    "INSERT INTO shopify_variants (shop, variant_id, sku, updated_at)"
    " VALUES (%(shop)s, %(variant_id)s, %(sku)s, %(now)s)"
    " ON CONFLICT (shop, variant_id) DO UPDATE SET sku = EXCLUDED.sku,"
    " updated_at = EXCLUDED.updated_at"
)
_FORGET_VARIANT = (
    "DELETE FROM shopify_variants WHERE shop = %(shop)s AND variant_id = %(variant_id)s"
)


class SqlShopifyRepository:
    def __init__(self, connection: Connection, now: datetime) -> None:
        self.connection = connection
        self.now = now
        self._postgres = connection.dialect.name == "postgresql"
        self._remapped: set[str] = set()
        self._writes: list[Statement] = []
        self._receipt: Statement | None = None
        #: PostgreSQL: variant -> SKU recorded (None: none), as ``lock_cart`` read them.
        self._known_variants: dict[int, str | None] = {}

    # --- webhook receipts -----------------------------------------------------------------

    def record_receipt(self, shop: str, webhook_id: str, topic: str) -> bool:
        """Note a delivery; False if it was seen before (a concurrent twin waits on the key).

        PostgreSQL: always True here; the receipt is written at commit, and a delivery seen
        before fails there (``is_duplicate``), rolling back all it did."""
        if self._postgres:
            values = {"shop": shop, "webhook_id": webhook_id, "topic": topic, "now": self.now}
            self._receipt = Statement(_RECEIPT, values)
            return True
        stmt = insert_ignore(
            self.connection,
            webhook_receipts,
            {"shop": shop, "webhook_id": webhook_id, "topic": topic, "received_at": self.now},
            ["shop", "webhook_id"],
        )
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT DO NOTHING.
        return self.connection.execute(stmt.returning(webhook_receipts.c.shop)).first() is not None

    @staticmethod
    def is_duplicate(exc: DBAPIError) -> bool:
        """Whether a failed commit failed on the receipt's key: the delivery was seen before."""
        diag = getattr(exc.orig, "diag", None)
        return getattr(diag, "constraint_name", None) == _RECEIPT_KEY

    def take_writes(self) -> list[Statement]:
        """PostgreSQL: the writes waiting for the commit (the receipt aside)."""
        writes, self._writes = self._writes, []
        return writes

    def take_receipt(self) -> list[Statement]:
        """PostgreSQL: the receipt's insert, to send last (the last lock the transaction takes:
        a twin delivery waiting on its key waits for nothing else)."""
        receipt, self._receipt = self._receipt, None
        return [receipt] if receipt is not None else []

    def _written(self) -> None:
        """Send the pending writes before a read of what they change."""
        if self._writes:
            pipeline.run(self.connection, self._writes)
            self._writes = []

    # --- carts ----------------------------------------------------------------------------

    def lock_cart(self, shop: str, token: str, variant_ids: Collection[int] = ()) -> Cart:
        """Lock the cart's row, creating it (as never updated) on first sight.

        The lock first: a cart's later deliveries (the most of them) find its row in one round
        trip; only the first inserts it (a concurrent first delivery waits on the key, then
        inserts nothing) and locks it then. PostgreSQL: one statement, in one round trip with
        the read of ``variant_ids``' SKUs that ``remember_variants`` will compare with."""
        if self._postgres:
            statements, values = self._cart_statements(shop, token, variant_ids)
            rows = self._cart_rows(pipeline.run(self.connection, statements))
            if not rows:
                (rows,) = pipeline.run(self.connection, [Statement(_LOCK_CART, values)])
            return Cart(*rows[0])
        stmt = select(carts).where(carts.c.shop == shop, carts.c.token == token)
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

    def lock_cart_ahead(
        self, shop: str, token: str, variant_ids: Collection[int] = ()
    ) -> Callable[[], Cart]:
        """``lock_cart``, answered later: on PostgreSQL its statements go out first with the
        transaction's next round trip (the locks that follow the cart's in the lock order ride
        with it). Call the result for the cart.

        CartRaced if a concurrent first delivery inserted the cart's row meanwhile: its row is
        not in the statement's snapshot, and locking it now would come after the locks that
        followed; the delivery is to be run again (its row is there then)."""
        if not self._postgres:
            cart = self.lock_cart(shop, token, variant_ids)
            return lambda: cart
        statements, _ = self._cart_statements(shop, token, variant_ids)
        queued = pipeline.ahead(self.connection, statements)

        def answer() -> Cart:
            rows = self._cart_rows(queued.rows(self.connection))
            if not rows:
                raise CartRaced(token)
            return Cart(*rows[0])

        return answer

    def _cart_statements(
        self, shop: str, token: str, variant_ids: Collection[int]
    ) -> tuple[list[Statement], dict[str, Any]]:
        self._written()
        values = {"shop": shop, "token": token, "epoch": EPOCH, "now": self.now}
        statements = [Statement(_LOCK_OR_CREATE_CART, values)]
        if variant_ids:
            ids = sorted(set(variant_ids))
            statements.append(Statement(_KNOWN_VARIANTS, {"shop": shop, "ids": ids}))
        return statements, values

    def _cart_rows(self, results: list[list[Any]]) -> list[Any]:
        """The cart's row(s) of ``_cart_statements``' results, noting the variants read."""
        rows, *known = results
        if known:
            self._known_variants = dict(known[0])
        return rows

    def save_cart(self, cart: Cart, shortfalls: dict[str, int] | None = None) -> None:
        values: dict[str, Any] = {
            "checkout_token": cart.checkout_token,
            "cart_updated_at": cart.cart_updated_at,
            "ordered": cart.ordered,
            "updated_at": self.now,
        }
        if shortfalls is not None:
            values["shortfalls"] = json.dumps(shortfalls, sort_keys=True) if shortfalls else None
        if self._postgres:
            extra = ", shortfalls = %(shortfalls)s" if shortfalls is not None else ""
            params = {**values, "now": self.now, "shop": cart.shop, "token": cart.token}
            self._writes.append(Statement(_SAVE_CART.format(shortfalls=extra), params))
            return
        self.connection.execute(
            update(carts)
            .where(carts.c.shop == cart.shop, carts.c.token == cart.token)
            .values(**values)
        )

    def cart_token_of_checkout(self, shop: str, checkout_token: str) -> str | None:
        self._written()
        return self.connection.execute(
            select(carts.c.token).where(
                carts.c.shop == shop, carts.c.checkout_token == checkout_token
            )
        ).scalar()

    def shortfalls(self, shop: str, token: str) -> dict[str, int]:
        self._written()
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
        if self._postgres and wanted <= self._known_variants.keys():
            # Read with the cart's lock (``lock_cart``): None for a variant not recorded.
            known = {v: sku for v, sku in self._known_variants.items() if sku is not None}
        elif self._postgres:
            params = {"shop": shop, "ids": sorted(wanted)}
            (rows,) = pipeline.run(self.connection, [Statement(_KNOWN_VARIANTS, params)])
            known = {variant: sku for variant, sku in rows if sku is not None}
        else:
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
            sku = None if variant_id in gone else mapping[variant_id]
            self._write_variant(shop, variant_id, sku)
            if variant_id in self._known_variants:
                self._known_variants[variant_id] = sku
            if sku is not None:
                self._remapped.add(sku)
            if variant_id in known:
                self._remapped.add(known[variant_id])

    def _write_variant(self, shop: str, variant_id: int, sku: str | None) -> None:
        """Record the variant's SKU, or forget the variant (``sku`` None)."""
        values: dict[str, Any] = {"shop": shop, "variant_id": variant_id}
        if self._postgres:
            values.update(sku=sku, now=self.now)
            sql = _FORGET_VARIANT if sku is None else _REMEMBER_VARIANT
            self._writes.append(Statement(sql, values))
        elif sku is None:
            self.connection.execute(
                delete(variants).where(variants.c.shop == shop, variants.c.variant_id == variant_id)
            )
        else:
            values.update(sku=sku, updated_at=self.now)
            self.connection.execute(
                upsert(self.connection, variants, values, ["shop", "variant_id"])
            )

    def take_remapped(self) -> set[str]:
        """The SKUs whose variants changed in this transaction (for the dirty marks)."""
        remapped, self._remapped = self._remapped, set()
        return remapped

    def sku_of_variant(self, shop: str, variant_id: int) -> str | None:
        self._written()
        return self.connection.execute(
            select(variants.c.sku).where(
                variants.c.shop == shop, variants.c.variant_id == variant_id
            )
        ).scalar()

    # --- privacy --------------------------------------------------------------------------

    def forget_carts(self, shop: str, tokens: Iterable[str]) -> None:
        """customers/redact: the carts of these tokens go (the orders forgot them already)."""
        chosen = list(tokens)
        self._written()
        if chosen:
            self.connection.execute(
                delete(carts).where(carts.c.shop == shop, carts.c.token.in_(chosen))
            )

    def erase_shop(self, shop: str) -> None:
        """shop/redact: nothing about the shop's carts, deliveries, variants or the stock
        metafields written to them stays (the orders' part is orders/repository.py's)."""
        self._written()
        for table in (carts, webhook_receipts, variants, stock_metafields):
            self.connection.execute(delete(table).where(table.c.shop == shop))
