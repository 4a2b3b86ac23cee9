"""The worker's order reconciliation remembers how far it got per shop; the last catalog audit
per shop is kept for the admin page.

Revision ID: 0011_order_cursors
Revises: 0010_bling_account
Create Date: 2026-12-02 01:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_order_cursors"
down_revision = "0010_bling_account"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shopify_order_cursors",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("seen_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop"),
    )
    op.create_table(
        "catalog_audits",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop"),
    )


def downgrade() -> None:
    op.drop_table("catalog_audits")
    op.drop_table("shopify_order_cursors")
