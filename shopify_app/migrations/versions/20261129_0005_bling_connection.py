"""Bling connection: the encrypted OAuth tokens and the account's shared request slot.

Revision ID: 0005_bling_connection
Revises: 0004_outbox
Create Date: 2026-11-29 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_bling_connection"
down_revision = "0004_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bling_connection",
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("access_token_encrypted", sa.Text(), nullable=True),
        sa.Column("refresh_token_encrypted", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lost_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lost_reason", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_bling_connection")),
    )
    op.create_table(
        "bling_rate_limit",
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("next_slot_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_bling_rate_limit")),
    )


def downgrade() -> None:
    op.drop_table("bling_rate_limit")
    op.drop_table("bling_connection")
