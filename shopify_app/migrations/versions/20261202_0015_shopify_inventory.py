"""Shopify's inventory following the ledger: the ledger's outside changes, the SKU → inventory
item map, the writes in flight and each shop's location.

Revision ID: 0015_shopify_inventory
Revises: 0014_stock_publishing
Create Date: 2026-12-02 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_shopify_inventory"
down_revision = "0014_stock_publishing"
branch_labels = None
depends_on = None

QUANTITY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Zero for every SKU: the follower aligns each SKU once with an absolute write when it is
    # first mapped, and counts the outside changes from there.
    op.add_column(
        "skus",
        sa.Column("external_on_hand", QUANTITY, server_default=sa.text("0"), nullable=False),
    )
    op.create_table(
        "shopify_inventory_items",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("variant_id", sa.BigInteger(), nullable=True),
        sa.Column("inventory_item_id", sa.String(length=64), nullable=True),
        sa.Column("variants", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("mapped_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("aligned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_external", QUANTITY, server_default=sa.text("0"), nullable=False),
        sa.Column("batch_key", sa.Uuid(), nullable=True),
        sa.Column("batch_external", QUANTITY, nullable=True),
        sa.Column("drift_shopify", QUANTITY, nullable=True),
        sa.Column("drift_target", QUANTITY, nullable=True),
        sa.Column("drift_updated_at", sa.String(length=40), nullable=True),
        sa.Column("drift_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("repaired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("problem", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "state IN ('mapped', 'duplicate', 'untracked', 'not_stocked', 'missing')",
            name=op.f("ck_shopify_inventory_items_inventory_state_known"),
        ),
        sa.PrimaryKeyConstraint("shop", "sku", name=op.f("pk_shopify_inventory_items")),
    )
    op.create_index(
        "ix_shopify_inventory_items_shop_batch_key",
        "shopify_inventory_items",
        ["shop", "batch_key"],
    )
    op.create_table(
        "shopify_inventory_batches",
        sa.Column("key", sa.Uuid(), nullable=False),
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "kind IN ('adjust', 'align', 'repair')",
            name=op.f("ck_shopify_inventory_batches_inventory_batch_kind_known"),
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_shopify_inventory_batches")),
    )
    op.create_table(
        "shopify_inventory_shops",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("location_id", sa.String(length=64), nullable=True),
        sa.Column("location_name", sa.String(length=255), nullable=True),
        sa.Column("mapped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "variants_without_sku", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("duplicate_skus", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("drift_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_write_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("problem", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("shop", name=op.f("pk_shopify_inventory_shops")),
    )


def downgrade() -> None:
    op.drop_table("shopify_inventory_shops")
    op.drop_table("shopify_inventory_batches")
    op.drop_index("ix_shopify_inventory_items_shop_batch_key", table_name="shopify_inventory_items")
    op.drop_table("shopify_inventory_items")
    with op.batch_alter_table("skus") as batch:
        batch.drop_column("external_on_hand")
