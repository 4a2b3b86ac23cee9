"""The transactional outbox: jobs (claimed with a lease) and per-kind pauses.

Revision ID: 0004_outbox
Revises: 0003_shopify_shops
Create Date: 2026-11-29 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_outbox"
down_revision = "0003_shopify_shops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leased_by", sa.String(length=128), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_outbox_jobs_attempts_not_negative")),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'dead')", name=op.f("ck_outbox_jobs_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_jobs")),
        sa.UniqueConstraint("kind", "key", name=op.f("uq_outbox_jobs_kind_key")),
    )
    op.create_index(
        "ix_outbox_jobs_status_due_at", "outbox_jobs", ["status", "due_at"], unique=False
    )
    op.create_table(
        "outbox_pauses",
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_outbox_pauses")),
    )


def downgrade() -> None:
    op.drop_table("outbox_pauses")
    op.drop_index("ix_outbox_jobs_status_due_at", table_name="outbox_jobs")
    op.drop_table("outbox_jobs")
