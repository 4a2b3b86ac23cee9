"""Bling stock in: the SKU → product map (with the last applied balance time), acknowledgements
and webhook receipts.

Revision ID: 0006_bling_stock
Revises: 0005_bling_connection
Create Date: 2026-11-29 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_bling_stock"
down_revision = "0005_bling_connection"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bling_products",
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("balance_as_of", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_bling_products")),
    )
    op.create_index("ix_bling_products_product_id", "bling_products", ["product_id"], unique=False)
    op.create_table(
        "bling_acks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("quantity", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_bling_acks_quantity_positive")),
        sa.ForeignKeyConstraint(["sku"], ["skus.sku"], name=op.f("fk_bling_acks_sku_skus")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bling_acks")),
    )
    op.create_index(
        "ix_bling_acks_sku_acknowledged_at",
        "bling_acks",
        ["sku", "acknowledged_at"],
        unique=False,
    )
    op.create_table(
        "bling_events",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_bling_events")),
    )
    op.create_index("ix_bling_events_received_at", "bling_events", ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_bling_events_received_at", table_name="bling_events")
    op.drop_table("bling_events")
    op.drop_index("ix_bling_acks_sku_acknowledged_at", table_name="bling_acks")
    op.drop_table("bling_acks")
    op.drop_index("ix_bling_products_product_id", table_name="bling_products")
    op.drop_table("bling_products")
