"""Stock publishing: the dirty SKUs, the stock metafields written, variants found by SKU.

Revision ID: 0014_stock_publishing
Revises: 0013_order_adjustments
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_stock_publishing"
down_revision = "0013_order_adjustments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dirty_skus",
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("change_id", sa.Uuid(), nullable=False),
        sa.Column("changes", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("first_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_id", sa.Uuid(), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_dirty_skus")),
    )
    op.create_table(
        "shopify_stock_metafields",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("variant_id", sa.BigInteger(), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lag_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("shop", "variant_id", name=op.f("pk_shopify_stock_metafields")),
    )
    op.create_index(
        "ix_shopify_stock_metafields_sku_published_at",
        "shopify_stock_metafields",
        ["sku", "published_at"],
    )
    op.create_index("ix_shopify_variants_sku", "shopify_variants", ["sku"])
    # Every variant known so far gets its metafield on the publisher's first reconciliation
    # (shopify/publications.py, ``reconcile``): nothing to copy here.


def downgrade() -> None:
    op.drop_index("ix_shopify_variants_sku", table_name="shopify_variants")
    op.drop_index(
        "ix_shopify_stock_metafields_sku_published_at", table_name="shopify_stock_metafields"
    )
    op.drop_table("shopify_stock_metafields")
    op.drop_table("dirty_skus")
