"""Tables of the Shopify side: webhook receipts (dedupe), carts, variants and the stock
metafields written to them (the orders are in ``orders/tables.py``).

Keys are led by the shop, so a second store or a sharded ledger needs no redesign.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    String,
    Table,
    Text,
    text,
)

from ..db.metadata import SHOP, SKU, UTCDateTime, metadata

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

# Which SKU each of the shop's variants carries, as Shopify's own payloads (cart and order lines)
# last showed it: the App Proxy's variant routes reserve by variant id with it.
variants = Table(
    "shopify_variants",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("variant_id", BigInteger, primary_key=True),
    Column("sku", SKU, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # The stock publisher finds a dirty SKU's variants by SKU.
    Index("ix_shopify_variants_sku", "sku"),
)

# What the stock publisher (shopify/publisher.py) last wrote to each variant's ``$app:bazico``
# ``stock`` metafield: an unchanged value is not written again, a SKU's variants are written at
# most once per SHOPIFY_PUBLISH_MIN_INTERVAL_SECONDS, and a variant that stops carrying a
# tracked SKU has its metafield deleted (and its row with it).
stock_metafields = Table(
    "shopify_stock_metafields",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("variant_id", BigInteger, primary_key=True),
    Column("sku", SKU, nullable=False),
    Column("value", Text, nullable=False),
    Column("published_at", UTCDateTime, nullable=False),
    # From the oldest change the write carried to Shopify's answer.
    Column("lag_seconds", Float, nullable=False),
    Index("ix_shopify_stock_metafields_sku_published_at", "sku", "published_at"),
)

# How far the worker's order reconciliation got, per shop: every order Shopify updated before
# ``seen_until`` was applied (shopify/reconcile.py). The next run asks from there.
order_cursors = Table(
    "shopify_order_cursors",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("seen_until", UTCDateTime, nullable=False),
    Column("checked_at", UTCDateTime, nullable=False),
)

# The last catalog audit per shop (``flask catalog audit``, catalog.py), for the admin's Saúde
# page: its JSON report and when it ran.
catalog_audits = Table(
    "catalog_audits",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("report", Text, nullable=False),
    Column("ran_at", UTCDateTime, nullable=False),
)
