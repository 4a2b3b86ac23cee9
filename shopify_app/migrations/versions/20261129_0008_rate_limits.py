"""Request-rate counters shared by every process (web/ratelimit.py).

Revision ID: 0008_rate_limits
Revises: 0007_bling_forwarding
Create Date: 2026-11-29 10:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_rate_limits"
down_revision = "0007_bling_forwarding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_counters")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Counters of the last minute or hour: not worth a WAL write each, and a crash that
        # forgets them only forgives a few requests.
        op.execute("ALTER TABLE rate_limit_counters SET UNLOGGED")


def downgrade() -> None:
    op.drop_table("rate_limit_counters")
