"""Shopify side: webhook receipts (dedupe), carts (stale updates), confirmed orders and lines.

Revision ID: 0002_shopify_orders
Revises: c0d58a93727e
Create Date: 2026-11-29 05:13:16.830153
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_shopify_orders"
down_revision = "c0d58a93727e"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "carts",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("token", sa.String(length=255), nullable=False),
        sa.Column("checkout_token", sa.String(length=255), nullable=True),
        sa.Column("cart_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shortfalls", sa.Text(), nullable=True),
        sa.Column("ordered", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop", "token", name=op.f("pk_carts")),
    )
    op.create_index(
        "ix_carts_shop_checkout_token", "carts", ["shop", "checkout_token"], unique=False
    )
    op.create_table(
        "orders",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("cart_token", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("forward_status", sa.String(length=24), nullable=False),
        sa.Column("oversold", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "forward_status IN ('pending', 'forwarded', 'cancelled', 'reversal_pending')",
            name=op.f("ck_orders_forward_status_known"),
        ),
        sa.CheckConstraint(
            "status IN ('confirmed', 'cancelled')", name=op.f("ck_orders_status_known")
        ),
        sa.PrimaryKeyConstraint("shop", "order_id", name=op.f("pk_orders")),
    )
    op.create_index("ix_orders_forward_status", "orders", ["forward_status"], unique=False)
    op.create_table(
        "webhook_receipts",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("webhook_id", sa.String(length=255), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop", "webhook_id", name=op.f("pk_webhook_receipts")),
    )
    op.create_index(
        "ix_webhook_receipts_received_at", "webhook_receipts", ["received_at"], unique=False
    )
    op.create_table(
        "order_lines",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("line_id", sa.BigInteger(), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("from_holds", sa.Integer(), nullable=False),
        sa.Column("from_available", sa.Integer(), nullable=False),
        sa.Column("oversold", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "from_holds + from_available = quantity", name=op.f("ck_order_lines_covered_exactly")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_order_lines_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["shop", "order_id"],
            ["orders.shop", "orders.order_id"],
            name=op.f("fk_order_lines_shop_orders"),
        ),
        sa.PrimaryKeyConstraint("shop", "order_id", "line_id", name=op.f("pk_order_lines")),
    )


def downgrade() -> None:
    op.drop_table("order_lines")
    op.drop_index("ix_webhook_receipts_received_at", table_name="webhook_receipts")
    op.drop_table("webhook_receipts")
    op.drop_index("ix_orders_forward_status", table_name="orders")
    op.drop_table("orders")
    op.drop_index("ix_carts_shop_checkout_token", table_name="carts")
    op.drop_table("carts")
