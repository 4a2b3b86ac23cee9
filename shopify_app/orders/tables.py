"""Tables of the orders the ledger sold and of their life with the ERP (orders/model.py).

Keys are led by the shop, like the Shopify side's tables.
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
    text,
)

from ..db.metadata import SHOP, SKU, UTCDateTime, metadata

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
    # The sales order's own life (orders/model.py, BlingOrder): none → requested → created, and
    # once the order is cancelled here, cancelled (or cancel_refused) in Bling; foreign when
    # Bling had one under this order's number that we did not create.
    Column("bling_order", String(16), nullable=False, server_default=text("'none'")),
    CheckConstraint("status IN ('confirmed', 'cancelled')", name="status_known"),
    CheckConstraint(
        "forward_status IN ('pending', 'awaiting_payment', 'test', 'forwarded', 'cancelled', "
        "'reversal_pending', 'reversed')",
        name="forward_status_known",
    ),
    CheckConstraint(
        "bling_order IN ('none', 'requested', 'created', 'cancelled', 'cancel_refused', 'foreign')",
        name="bling_order_known",
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
    # Units taken off the line later: a restocked refund, an order edit's removal.
    Column("removed", Integer, nullable=False, server_default=text("0")),
    ForeignKeyConstraint(["shop", "order_id"], ["orders.shop", "orders.order_id"]),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("from_holds + from_available = quantity", name="covered_exactly"),
    CheckConstraint("removed >= 0 AND removed <= quantity", name="removed_within"),
)

# Refunds and order edits applied to an order (``refund:{id}``, ``edit:{id}``): each once, even
# when Shopify delivers it under several webhook ids.
order_adjustments = Table(
    "order_adjustments",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("order_id", BigInteger, primary_key=True),
    Column("adjustment", String(64), primary_key=True),
    Column("applied_at", UTCDateTime, nullable=False),
    ForeignKeyConstraint(["shop", "order_id"], ["orders.shop", "orders.order_id"]),
)

# What those adjustments change in the ERP's stock beyond the sales order's posting (quantity >
# 0: back into stock; < 0: out of it), recorded before it is sent (orders/model.py StockEntry).
order_stock_entries = Table(
    "order_stock_entries",
    metadata,
    Column("shop", SHOP, primary_key=True),
    Column("order_id", BigInteger, primary_key=True),
    Column("adjustment", String(64), primary_key=True),
    Column("sku", SKU, primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    ForeignKeyConstraint(["shop", "order_id"], ["orders.shop", "orders.order_id"]),
    CheckConstraint("quantity <> 0", name="quantity_nonzero"),
    CheckConstraint("state IN ('pending', 'requested', 'posted', 'void')", name="state_known"),
)
