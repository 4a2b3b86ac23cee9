"""Tables of Bling's stock coming in (SQLAlchemy Core). Alembic migrations must match these exactly.

- ``bling_products``: Bling's catalog as far as stock needs it (SKU → product id), and per SKU the
  moment the balance last applied was current (``balance_as_of``), so an older webhook that
  arrives late never overwrites a newer balance.
- ``bling_acks``: the units this service acknowledged (took off ``on_hand``) when Bling posted an
  order's stock. A balance read at T predates the postings acknowledged after T, so those are
  subtracted from it again (docs/architecture.md, The ledger).
- ``bling_events``: one row per webhook delivery (``eventId``), written in the same transaction as
  its effect: a crash before commit leaves no row, so Bling's retry is applied, not dropped.
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
)

from ..db.metadata import SKU, Quantity, UTCDateTime, metadata

# No foreign key to ``skus``: the map is Bling's catalog, and it is filled before the ledger
# learns a SKU (the sync creates ledger rows only when it applies their balance).
bling_products = Table(
    "bling_products",
    metadata,
    Column("sku", SKU, primary_key=True),
    Column("product_id", BigInteger, nullable=False),
    # When the balance applied last was current: a webhook's ``date`` (Bling's clock) or a sync's
    # read time (ours, minus a tolerance; see stock_sync.CLOCK_TOLERANCE). NULL: none applied yet.
    Column("balance_as_of", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    # Webhooks name the product, not the SKU.
    Index("ix_bling_products_product_id", "product_id"),
)

bling_acks = Table(
    "bling_acks",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("sku", SKU, ForeignKey("skus.sku"), nullable=False),
    Column("quantity", Quantity, nullable=False),
    Column("reference", String(255), nullable=True),
    Column("acknowledged_at", UTCDateTime, nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    # "What did this SKU acknowledge since T?" is the only question asked of this table.
    Index("ix_bling_acks_sku_acknowledged_at", "sku", "acknowledged_at"),
)

bling_events = Table(
    "bling_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("event", String(64), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_bling_events_received_at", "received_at"),
)
