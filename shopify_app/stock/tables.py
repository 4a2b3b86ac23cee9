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
