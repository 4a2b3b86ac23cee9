"""Storefront holds: pending until a cart webhook lists them; variant → SKU for the App Proxy.

Revision ID: 0009_storefront_holds
Revises: 0008_rate_limits
Create Date: 2026-12-01 22:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_storefront_holds"
down_revision = "0008_rate_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("holds", sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("holds", sa.Column("line_ref", sa.Uuid(), nullable=True))
    # Holds granted before this release followed the old rule (a cart webhook that did not list
    # them released them): count them as listed, so their behaviour does not change mid-life.
    op.execute(
        "UPDATE holds SET listed_at = created_at WHERE source = 'proxy' AND status = 'active'"
    )
    op.create_table(
        "shopify_variants",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("variant_id", sa.BigInteger(), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop", "variant_id", name=op.f("pk_shopify_variants")),
    )


def downgrade() -> None:
    op.drop_table("shopify_variants")
    with op.batch_alter_table("holds") as batch:
        batch.drop_column("line_ref")
        batch.drop_column("listed_at")
