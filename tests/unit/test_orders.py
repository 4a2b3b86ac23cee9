"""The Order aggregate's transitions (orders/model.py), without a database."""

from __future__ import annotations

import pytest

from shopify_app.orders.model import BlingStock, ForwardStatus, Order, OrderLine, OrderStatus


def order(**fields: object) -> Order:
    lines = [OrderLine(1, "TEE", 2, 2, 0, 0), OrderLine(2, "CAP", 1, 0, 1, 0)]
    return Order("shop.myshopify.com", 1001, "#1001", "cart", lines=lines, **fields)  # type: ignore[arg-type]


def test_cancelling_an_order_bling_never_had_gives_its_units_back() -> None:
    placed = order()
    assert placed.awaiting_bling
    back = placed.cancel()
    assert [(line.sku, line.quantity) for line in back] == [("TEE", 2), ("CAP", 1)]
    assert (placed.status, placed.forward_status) == (
        OrderStatus.CANCELLED,
        ForwardStatus.CANCELLED,
    )
    assert not placed.needs_reversal and not placed.awaiting_bling
    assert placed.cancel() == [], "a second cancellation changes nothing"


def test_cancelling_an_order_bling_has_asks_for_a_reversal_there() -> None:
    forwarded = order(forward_status="forwarded", bling_stock="posted")
    assert forwarded.cancel() == []
    assert forwarded.needs_reversal and forwarded.cancelled
    assert forwarded.stock_maybe_posted


def test_a_tombstone_is_cancelled_before_it_was_ever_sold() -> None:
    tomb = Order.tombstone("shop.myshopify.com", 7, "#7")
    assert tomb.cancelled and tomb.forward_status is ForwardStatus.CANCELLED and tomb.lines == []


def test_statuses_read_from_rows_become_enums_and_unknown_ones_are_refused() -> None:
    row = order(status="confirmed", forward_status="reversal_pending", bling_stock="requested")
    assert row.forward_status is ForwardStatus.REVERSAL_PENDING
    assert row.bling_stock is BlingStock.REQUESTED and row.stock_maybe_posted
    assert order(bling_stock="none").stock_maybe_posted is False
    with pytest.raises(ValueError):
        order(forward_status="lost")


def test_an_order_is_oversold_when_one_of_its_lines_is() -> None:
    assert not order().oversold
    short = Order("s", 1, None, None, lines=[OrderLine(1, "TEE", 2, 0, 2, 1)])
    assert short.oversold
