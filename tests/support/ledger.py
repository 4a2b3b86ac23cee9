"""Assertions about the ledger as a whole, read straight from the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, or_, select

from shopify_app.orders.tables import order_lines, orders
from shopify_app.schema import metadata
from shopify_app.stock.tables import holds, skus, stock_movements


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: compare two to prove nothing changed.

    Request-rate counters are left out: counting a refused request is the point of them."""
    with engine.connect() as conn:
        return {
            table.name: sorted(
                (tuple(row) for row in conn.execute(select(table))), key=lambda r: repr(r)
            )
            for table in metadata.sorted_tables
            if table.name != "rate_limit_counters"
        }


def figures(engine: Engine, sku: str) -> dict[str, int]:
    with engine.connect() as conn:
        row = conn.execute(select(skus).where(skus.c.sku == sku)).one()
    return {
        "on_hand": row.on_hand,
        "reserved": row.reserved,
        "committed": row.committed,
        "available": row.on_hand - row.reserved - row.committed,
    }


def hold_count(engine: Engine, sku: str | None = None, status: str | None = None) -> int:
    stmt = select(func.count()).select_from(holds)
    if sku is not None:
        stmt = stmt.where(holds.c.sku == sku)
    if status is not None:
        stmt = stmt.where(holds.c.status == status)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def held_by(engine: Engine, holder: str) -> dict[str, int]:
    with engine.connect() as conn:
        result = conn.execute(
            select(holds.c.sku, holds.c.quantity).where(
                holds.c.holder == holder, holds.c.status == "active"
            )
        )
        held: dict[str, int] = {}
        for r in result:
            held[r.sku] = held.get(r.sku, 0) + r.quantity
        return held


def assert_ledger_balanced(engine: Engine) -> None:
    """Counters equal the movement ledger's sums and the holds' statuses, for every SKU."""
    with engine.connect() as conn:
        rows = {r.sku: (r.on_hand, r.reserved, r.committed) for r in conn.execute(select(skus))}
        sums = {
            r[0]: (int(r[1]), int(r[2]), int(r[3]))
            for r in conn.execute(
                select(
                    stock_movements.c.sku,
                    func.sum(stock_movements.c.on_hand_delta),
                    func.sum(stock_movements.c.reserved_delta),
                    func.sum(stock_movements.c.committed_delta),
                ).group_by(stock_movements.c.sku)
            )
        }
        by_status: dict[tuple[str, str], int] = {
            (r[0], r[1]): int(r[2])
            for r in conn.execute(
                select(holds.c.sku, holds.c.status, func.sum(holds.c.quantity)).group_by(
                    holds.c.sku, holds.c.status
                )
            )
        }
        # Sold and not yet acknowledged by Bling: holds confirmed through the REST API, plus the
        # lines of Shopify orders still waiting to be forwarded.
        # A hold confirmed through the API for a Shopify order (order_ref = its id or name) is
        # counted by that order's lines once the order arrives.
        adopted = {
            (r.cart_token, ref)
            for r in conn.execute(select(orders.c.cart_token, orders.c.order_id, orders.c.name))
            for ref in (str(r.order_id), r.name)
            if r.cart_token
        }
        sold: dict[str, int] = {}
        for r in conn.execute(
            select(holds.c.sku, holds.c.quantity, holds.c.holder, holds.c.order_ref).where(
                holds.c.status == "confirmed",
                or_(holds.c.order_ref.is_(None), ~holds.c.order_ref.startswith("shopify:")),
            )
        ):
            if (r.holder, r.order_ref) not in adopted:
                sold[r.sku] = sold.get(r.sku, 0) + r.quantity
        for r in conn.execute(
            select(order_lines.c.sku, func.sum(order_lines.c.quantity))
            .join(
                orders,
                (orders.c.shop == order_lines.c.shop)
                & (orders.c.order_id == order_lines.c.order_id),
            )
            .where(orders.c.forward_status == "pending")
            .group_by(order_lines.c.sku)
        ):
            sold[r[0]] = sold.get(r[0], 0) + int(r[1])
    for sku, (on_hand, reserved, committed) in rows.items():
        assert sums.get(sku, (0, 0, 0)) == (on_hand, reserved, committed), (
            f"{sku}: row {(on_hand, reserved, committed)} != ledger {sums.get(sku)}"
        )
        assert reserved == by_status.get((sku, "active"), 0), f"{sku}: reserved != active holds"
        assert committed == sold.get(sku, 0), (
            f"{sku}: committed {committed} != sold {sold.get(sku)}"
        )
        assert min(on_hand, reserved, committed) >= 0, f"{sku}: negative figure"
