"""The stock ledger: SKU rows, holds and the append-only movement ledger.

Revision ID: c0d58a93727e
Revises:
Create Date: 2026-11-29 04:37:59.545312
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0d58a93727e"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "skus",
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column(
            "on_hand",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "reserved",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "committed",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("committed >= 0", name=op.f("ck_skus_committed_not_negative")),
        sa.CheckConstraint("on_hand >= 0", name=op.f("ck_skus_on_hand_not_negative")),
        sa.CheckConstraint("reserved >= 0", name=op.f("ck_skus_reserved_not_negative")),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_skus")),
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_ref", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "source IN ('api', 'proxy', 'cart', 'checkout')", name=op.f("ck_holds_source_known")
        ),
        sa.CheckConstraint(
            "status IN ('active', 'confirmed', 'released', 'expired')",
            name=op.f("ck_holds_status_known"),
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_holds_quantity_positive")),
        sa.ForeignKeyConstraint(["sku"], ["skus.sku"], name=op.f("fk_holds_sku_skus")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    op.create_index(
        "ix_holds_active_sku_expires_at",
        "holds",
        ["sku", "expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_index("ix_holds_holder", "holds", ["holder"], unique=False)

    op.create_table(
        "stock_movements",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column(
            "on_hand_delta", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "reserved_delta", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "committed_delta", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["sku"], ["skus.sku"], name=op.f("fk_stock_movements_sku_skus")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_movements")),
    )
    op.create_index("ix_stock_movements_sku_id", "stock_movements", ["sku", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_stock_movements_sku_id", table_name="stock_movements")
    op.drop_table("stock_movements")
    op.drop_index("ix_holds_holder", table_name="holds")
    op.drop_index("ix_holds_active_sku_expires_at", table_name="holds")

    op.drop_table("holds")
    op.drop_table("skus")
