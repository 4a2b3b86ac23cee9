"""The request-rate counters skip PostgreSQL's write-ahead log.

Every storefront request updates two counter rows (its address and its cart): logging them
costs the database as much as the hold itself. A counter is worth nothing after a crash (a
window lasts a minute), so the table is UNLOGGED on PostgreSQL: PostgreSQL empties it after a
crash, which only lets the next minute start from zero. SQLite has no such thing.

Revision ID: 0016_unlogged_rate_counters
Revises: 0015_shopify_inventory
Create Date: 2026-12-02 14:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0016_unlogged_rate_counters"
down_revision = "0015_shopify_inventory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE rate_limit_counters SET UNLOGGED")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE rate_limit_counters SET LOGGED")
