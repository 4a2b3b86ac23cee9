"""The order's life with Bling: unpaid and test orders; the sales order's own state.

``forward_status`` gains ``awaiting_payment`` (sold unpaid: boleto, PIX) and ``test`` (a Shopify
test order, never sent to Bling). ``bling_order`` records the sales order's life: none →
requested → created → cancelled (or cancel_refused) in Bling; foreign when Bling had one under
the order's number that this service did not create.

Revision ID: 0012_order_life
Revises: 0011_order_cursors
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012_order_life"
down_revision = "0011_order_cursors"
branch_labels = None
depends_on = None

_OLD_FORWARD = (
    "forward_status IN ('pending', 'forwarded', 'cancelled', 'reversal_pending', 'reversed')"
)
_NEW_FORWARD = (
    "forward_status IN ('pending', 'awaiting_payment', 'test', 'forwarded', 'cancelled', "
    "'reversal_pending', 'reversed')"
)
_BLING_ORDER = (
    "bling_order IN ('none', 'requested', 'created', 'cancelled', 'cancel_refused', 'foreign')"
)


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a CHECK constraint, so the table is copied there.
    with op.batch_alter_table("orders") as batch:
        batch.add_column(
            sa.Column(
                "bling_order",
                sa.String(length=16),
                server_default=sa.text("'none'"),
                nullable=False,
            )
        )
        batch.drop_constraint(op.f("ck_orders_forward_status_known"), type_="check")
        batch.create_check_constraint(op.f("ck_orders_forward_status_known"), _NEW_FORWARD)
        batch.create_check_constraint(op.f("ck_orders_bling_order_known"), _BLING_ORDER)
    # Orders that reached Bling before this release: their sales order is ours and known.
    op.execute("UPDATE orders SET bling_order = 'created' WHERE bling_order_id IS NOT NULL")


def downgrade() -> None:
    # The older code knows neither status. A test order's units are back already, as a
    # cancelled one's. An unpaid order becomes pending, as the older code recorded every order,
    # and gets the forward job that code queued at the sale (its orders/paid would do nothing).
    _queue_forward_of_unpaid_orders()
    op.execute(
        "UPDATE orders SET forward_status = 'pending' WHERE forward_status = 'awaiting_payment'"
    )
    op.execute(
        "UPDATE orders SET status = 'cancelled', forward_status = 'cancelled' "
        "WHERE forward_status = 'test'"
    )
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint(op.f("ck_orders_bling_order_known"), type_="check")
        batch.drop_constraint(op.f("ck_orders_forward_status_known"), type_="check")
        batch.create_check_constraint(op.f("ck_orders_forward_status_known"), _OLD_FORWARD)
        batch.drop_column("bling_order")


def _queue_forward_of_unpaid_orders() -> None:
    bind = op.get_bind()
    orders = sa.table(
        "orders",
        sa.column("shop", sa.String()),
        sa.column("order_id", sa.BigInteger()),
        sa.column("forward_status", sa.String()),
    )
    jobs = sa.table(
        "outbox_jobs",
        sa.column("kind", sa.String()),
        sa.column("key", sa.String()),
        sa.column("payload", sa.Text()),
        sa.column("status", sa.String()),
        sa.column("attempts", sa.Integer()),
        sa.column("due_at", sa.DateTime(timezone=True)),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":  # stored as naive UTC there (db/metadata.py, UTCDateTime)
        now = now.replace(tzinfo=None)
    unpaid = bind.execute(
        sa.select(orders.c.shop, orders.c.order_id).where(
            orders.c.forward_status == "awaiting_payment"
        )
    ).all()
    for shop, order_id in unpaid:
        key = f"{shop}:{order_id}"
        queued = bind.execute(
            sa.select(jobs.c.key).where(jobs.c.kind == "bling.forward_order", jobs.c.key == key)
        ).first()
        if queued is None:
            payload = json.dumps(
                {"order_id": order_id, "shop": shop}, sort_keys=True, separators=(",", ":")
            )
            bind.execute(
                jobs.insert().values(
                    kind="bling.forward_order",
                    key=key,
                    payload=payload,
                    status="pending",
                    attempts=0,
                    due_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
