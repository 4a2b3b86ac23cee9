"""The ledger's tables (SQLAlchemy Core). Alembic migrations must match these exactly.

Every table's key is led by the SKU (or is a UUID looked up with its SKU), so the ledger can later
be sharded by SKU without a redesign (docs/architecture.md, "Scale").
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Uuid,
    text,
)

from ..db.metadata import SKU, Quantity, UTCDateTime, metadata

skus = Table(
    "skus",
    metadata,
    Column("sku", SKU, primary_key=True),
    Column("on_hand", Quantity, nullable=False, server_default=text("0")),
    Column("reserved", Quantity, nullable=False, server_default=text("0")),
    Column("committed", Quantity, nullable=False, server_default=text("0")),
    # The running sum of on-hand changes from outside Shopify (Bling balances, manual counts:
    # domain.FROM_OUTSIDE_SHOPIFY): Shopify's inventory follower passes on its growth as deltas.
    # It may go below zero; it only ever moves with a movement of one of those reasons.
    Column("external_on_hand", Quantity, nullable=False, server_default=text("0")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
    CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    CheckConstraint("committed >= 0", name="committed_not_negative"),
)

holds = Table(
    "holds",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("sku", SKU, ForeignKey("skus.sku"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("holder", String(255), nullable=True),
    Column("source", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("order_ref", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # When a cart webhook first listed the hold's units for its cart; a storefront (proxy) hold
    # is pending until then (domain.Hold.pending).
    Column("listed_at", UTCDateTime, nullable=True),
    # The hold whose cart line this one's units joined (domain.Hold.line_ref); NULL: its own.
    Column("line_ref", Uuid, nullable=True),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint(
        "status IN ('active', 'confirmed', 'released', 'expired')", name="status_known"
    ),
    CheckConstraint("source IN ('api', 'proxy', 'cart', 'checkout')", name="source_known"),
    # Lazy expiry and the sweeper look for a SKU's active holds past their time.
    Index(
        "ix_holds_active_sku_expires_at",
        "sku",
        "expires_at",
        postgresql_where=text("status = 'active'"),
        sqlite_where=text("status = 'active'"),
    ),
    Index("ix_holds_holder", "holder"),
)

stock_movements = Table(
    "stock_movements",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("sku", SKU, ForeignKey("skus.sku"), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("reference", String(255), nullable=True),
    Column("on_hand_delta", Quantity, nullable=False),
    Column("reserved_delta", Quantity, nullable=False),
    Column("committed_delta", Quantity, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_stock_movements_sku_id", "sku", "id"),
)

# SKUs whose ledger changed since their followers (the Shopify stock metafield publisher) last
# published them: a queue, not a history. The transaction that changes a SKU upserts its row
# (stock/dirty.py, in the repository's flush and in the fast path's statement), so a change is
# marked if and only if it commits. A follower clears the row only if ``change_id`` is still the
# one it read before publishing (compare-and-clear): a change made meanwhile keeps it, and many
# changes between two publishes share one row, so bursts coalesce.
dirty_skus = Table(
    "dirty_skus",
    metadata,
    # No foreign key: a variant moved to a SKU the ledger does not track is marked too, so its
    # metafield gets deleted.
    Column("sku", SKU, primary_key=True),
    # A new random id per change: what compare-and-clear compares (never reused, so a slow
    # follower cannot clear a row that was cleared and marked again meanwhile).
    Column("change_id", Uuid, nullable=False),
    # How many changes this row stands for (coalescing, for the metrics).
    Column("changes", Integer, nullable=False, server_default=text("1")),
    # The oldest change not yet published: the publish lag starts here.
    Column("first_changed_at", UTCDateTime, nullable=False),
    # Not to be published before this (a follow-up at a hold's expiry, or a retry's delay).
    Column("not_before", UTCDateTime, nullable=True),
    # The follower that took it, until when (a lease: a follower that died hands it on).
    Column("claim_id", Uuid, nullable=True),
    Column("claimed_until", UTCDateTime, nullable=True),
)
