"""Forwarding orders to Bling: what the sales order needs, and each step's recorded result.

Revision ID: 0007_bling_forwarding
Revises: 0006_bling_stock
Create Date: 2026-11-29 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_bling_forwarding"
down_revision = "0006_bling_stock"
branch_labels = None
depends_on = None

_OLD_FORWARD = "forward_status IN ('pending', 'forwarded', 'cancelled', 'reversal_pending')"
_NEW_FORWARD = (
    "forward_status IN ('pending', 'forwarded', 'cancelled', 'reversal_pending', 'reversed')"
)
_BLING_STOCK = "bling_stock IN ('none', 'requested', 'posted', 'reversing', 'reversed')"


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a CHECK constraint, so the table is copied there.
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("shipping_cents", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("discount_cents", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("customer_name", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("customer_email", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("bling_order_id", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column(
                "bling_stock",
                sa.String(length=16),
                server_default=sa.text("'none'"),
                nullable=False,
            )
        )
        batch.add_column(sa.Column("forwarded_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint(op.f("ck_orders_forward_status_known"), type_="check")
        batch.create_check_constraint(op.f("ck_orders_forward_status_known"), _NEW_FORWARD)
        batch.create_check_constraint(op.f("ck_orders_bling_stock_known"), _BLING_STOCK)
    with op.batch_alter_table("order_lines") as batch:
        batch.add_column(sa.Column("unit_price_cents", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("title", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("order_lines") as batch:
        batch.drop_column("title")
        batch.drop_column("unit_price_cents")
    op.execute("UPDATE orders SET forward_status = 'cancelled' WHERE forward_status = 'reversed'")
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint(op.f("ck_orders_bling_stock_known"), type_="check")
        batch.drop_constraint(op.f("ck_orders_forward_status_known"), type_="check")
        batch.create_check_constraint(op.f("ck_orders_forward_status_known"), _OLD_FORWARD)
        for column in (
            "forwarded_at",
            "bling_stock",
            "bling_order_id",
            "customer_email",
            "customer_name",
            "discount_cents",
            "shipping_cents",
            "placed_at",
        ):
            batch.drop_column(column)
