"""Tables of the Shopify side: webhook receipts (dedupe), carts, variants and the stock
metafields written to them (the orders are in ``orders/tables.py``).

Keys are led by the shop, so a second store or a sharded ledger needs no redesign.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    Uuid,
    text,
)

from ..db.metadata import SHOP, SKU, Quantity, UTCDateTime, metadata

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


# --- Shopify's inventory following the ledger (shopify/inventory*.py) ----------------------

#: What a SKU's row says of its Shopify variant: ``mapped`` (one tracked variant, its inventory
#: item stocked at the location: written), ``duplicate`` (several variants carry the SKU: never
#: guessed), ``untracked`` (Shopify does not track the variant's inventory), ``not_stocked`` (the
#: item has no level at the location), ``missing`` (no variant carries the SKU).
INVENTORY_STATES = ("mapped", "duplicate", "untracked", "not_stocked", "missing")

# Per shop and ledger SKU: which inventory item Shopify counts it with, and how far Shopify's
# ``available`` has been brought along. ``sent_external`` is the ledger's ``external_on_hand``
# (the running sum of on-hand changes that came from outside Shopify) already in Shopify's
# count: the next delta is the difference. A write in flight is a batch (``batch_key``) that
# brings the row to ``batch_external`` once Shopify confirms it.
inventory_items = Table(
    "shopify_inventory_items",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("sku", SKU, primary_key=True),
    Column("state", String(16), nullable=False),
    Column("variant_id", BigInteger, nullable=True),
    Column("inventory_item_id", String(64), nullable=True),
    # How many variants carry the SKU (more than one: ``duplicate``).
    Column("variants", Integer, nullable=False, server_default=text("0")),
    Column("mapped_at", UTCDateTime, nullable=False),
    # When Shopify's count was first set to the ledger's (compare-and-set); NULL: not yet, and
    # no delta is sent before it.
    Column("aligned_at", UTCDateTime, nullable=True),
    Column("sent_external", Quantity, nullable=False, server_default=text("0")),
    Column("batch_key", Uuid, nullable=True),
    Column("batch_external", Quantity, nullable=True),
    # The drift check's last observation of a difference: Shopify's figure, the ledger's, and
    # Shopify's ``updatedAt`` of the quantity then. A difference is reported and repaired only
    # when the next check finds the very same one.
    Column("drift_shopify", Quantity, nullable=True),
    Column("drift_target", Quantity, nullable=True),
    Column("drift_updated_at", String(40), nullable=True),
    Column("drift_seen_at", UTCDateTime, nullable=True),
    Column("repaired_at", UTCDateTime, nullable=True),
    Column("problem", String(500), nullable=True),
    CheckConstraint(
        "state IN ('mapped', 'duplicate', 'untracked', 'not_stocked', 'missing')",
        name="inventory_state_known",
    ),
    Index("ix_shopify_inventory_items_shop_batch_key", "shop", "batch_key"),
)

# Inventory writes sent or about to be: the mutation's variables exactly as sent, so a retry
# after a lost answer sends the same call under the same idempotency key (Shopify applies it
# once). Deleted when Shopify's answer is recorded.
inventory_batches = Table(
    "shopify_inventory_batches",
    metadata,
    Column("key", Uuid, primary_key=True),
    Column("shop", SHOP, nullable=False),
    # adjust (deltas), align (a SKU's first absolute write) or repair (a persisting drift).
    Column("kind", String(16), nullable=False),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_error", String(500), nullable=True),
    CheckConstraint("kind IN ('adjust', 'align', 'repair')", name="inventory_batch_kind_known"),
)

# Per shop: the location written, the last catalog walk and drift check, what they found.
inventory_shops = Table(
    "shopify_inventory_shops",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("location_id", String(64), nullable=True),
    Column("location_name", String(255), nullable=True),
    Column("mapped_at", UTCDateTime, nullable=True),
    Column("variants_without_sku", Integer, nullable=False, server_default=text("0")),
    Column("duplicate_skus", Integer, nullable=False, server_default=text("0")),
    Column("drift_checked_at", UTCDateTime, nullable=True),
    Column("last_write_at", UTCDateTime, nullable=True),
    Column("problem", String(500), nullable=True),
)
