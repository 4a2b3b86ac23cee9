"""The connected Bling account: its company id and its default deposit, as Bling reported them.

Revision ID: 0010_bling_account
Revises: 0009_storefront_holds
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_bling_account"
down_revision = "0009_storefront_holds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for a connection made before this release: the worker's next reconciliation (or
    # `bling sync`) reads both from Bling.
    op.add_column("bling_connection", sa.Column("company_id", sa.String(length=64), nullable=True))
    op.add_column(
        "bling_connection", sa.Column("default_deposit_id", sa.BigInteger(), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("bling_connection") as batch:
        batch.drop_column("default_deposit_id")
        batch.drop_column("company_id")
