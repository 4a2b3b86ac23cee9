"""Refunds and order edits: units taken off an order's lines, the adjustments applied (each
once), and the ERP stock entries they need.

Revision ID: 0013_order_adjustments
Revises: 0012_order_life
Create Date: 2026-12-02 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_order_adjustments"
down_revision = "0012_order_life"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("order_lines") as batch:
        batch.add_column(
            sa.Column("removed", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.create_check_constraint(
            op.f("ck_order_lines_removed_within"), "removed >= 0 AND removed <= quantity"
        )
    op.create_table(
        "order_adjustments",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("adjustment", sa.String(length=64), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop", "order_id"],
            ["orders.shop", "orders.order_id"],
            name=op.f("fk_order_adjustments_shop_orders"),
        ),
        sa.PrimaryKeyConstraint(
            "shop", "order_id", "adjustment", name=op.f("pk_order_adjustments")
        ),
    )
    op.create_table(
        "order_stock_entries",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("adjustment", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity <> 0", name=op.f("ck_order_stock_entries_quantity_nonzero")),
        sa.CheckConstraint(
            "state IN ('pending', 'requested', 'posted', 'void')",
            name=op.f("ck_order_stock_entries_state_known"),
        ),
        sa.ForeignKeyConstraint(
            ["shop", "order_id"],
            ["orders.shop", "orders.order_id"],
            name=op.f("fk_order_stock_entries_shop_orders"),
        ),
        sa.PrimaryKeyConstraint(
            "shop", "order_id", "adjustment", "sku", name=op.f("pk_order_stock_entries")
        ),
    )


def downgrade() -> None:
    # The older code knows no removed units: its lines would post and count them again.
    op.drop_table("order_stock_entries")
    op.drop_table("order_adjustments")
    with op.batch_alter_table("order_lines") as batch:
        batch.drop_constraint(op.f("ck_order_lines_removed_within"), type_="check")
        batch.drop_column("removed")
