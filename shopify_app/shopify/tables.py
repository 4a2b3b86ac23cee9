"""Tables of the Shopify side: webhook receipts (dedupe), carts, and confirmed orders.

Keys are led by the shop, so a second store or a sharded ledger needs no redesign.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)

from ..db.metadata import SKU, UTCDateTime, metadata

SHOP = String(255)

# One row per delivery (X-Shopify-Webhook-Id), written in the same transaction as its effect:
# a crash before commit leaves no receipt, so Shopify's retry is applied, not dropped.
webhook_receipts = Table(
    "webhook_receipts",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("webhook_id", String(255), primary_key=True),
    Column("topic", String(64), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_webhook_receipts_received_at", "received_at"),
)

# The last cart state applied, to ignore stale (out of order) carts/update deliveries.
carts = Table(
    "carts",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("token", String(255), primary_key=True),
    Column("checkout_token", String(255), nullable=True),
    Column("cart_updated_at", UTCDateTime, nullable=False),
    Column("shortfalls", Text, nullable=True),
    Column("ordered", Boolean, nullable=False, server_default=text("false")),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_carts_shop_checkout_token", "shop", "checkout_token"),
)

orders = Table(
    "orders",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("order_id", BigInteger, primary_key=True),
    Column("name", String(64), nullable=True),
    Column("cart_token", String(255), nullable=True),
    Column("status", String(16), nullable=False),
    Column("forward_status", String(24), nullable=False),
    Column("oversold", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # What the Bling sales order needs (money in cents); customer_* are erased on redact.
    Column("placed_at", UTCDateTime, nullable=True),
    Column("shipping_cents", BigInteger, nullable=True),
    Column("discount_cents", BigInteger, nullable=True),
    Column("customer_name", String(255), nullable=True),
    Column("customer_email", String(255), nullable=True),
    # Forwarding to Bling, one recorded step at a time (erp/forwarding.py): the sales order's id
    # once known, then the stock posting: none → requested (sent; outcome unknown until
    # answered) → posted, and on cancellation reversing → reversed.
    Column("bling_order_id", BigInteger, nullable=True),
    Column("bling_stock", String(16), nullable=False, server_default=text("'none'")),
    Column("forwarded_at", UTCDateTime, nullable=True),
    CheckConstraint("status IN ('confirmed', 'cancelled')", name="status_known"),
    CheckConstraint(
        "forward_status IN ('pending', 'forwarded', 'cancelled', 'reversal_pending', 'reversed')",
        name="forward_status_known",
    ),
    CheckConstraint(
        "bling_stock IN ('none', 'requested', 'posted', 'reversing', 'reversed')",
        name="bling_stock_known",
    ),
    Index("ix_orders_forward_status", "forward_status"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("order_id", BigInteger, primary_key=True),
    Column("line_id", BigInteger, primary_key=True),
    Column("sku", SKU, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("from_holds", Integer, nullable=False),
    Column("from_available", Integer, nullable=False),
    Column("oversold", Integer, nullable=False),
    Column("unit_price_cents", BigInteger, nullable=True),
    Column("title", String(255), nullable=True),
    ForeignKeyConstraint(["shop", "order_id"], ["orders.shop", "orders.order_id"]),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("from_holds + from_available = quantity", name="covered_exactly"),
)

# Which SKU each of the shop's variants carries, as Shopify's own payloads (cart and order lines)
# last showed it: the App Proxy's variant routes reserve by variant id with it.
variants = Table(
    "shopify_variants",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("variant_id", BigInteger, primary_key=True),
    Column("sku", SKU, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
