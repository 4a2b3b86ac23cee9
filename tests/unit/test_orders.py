"""The Order aggregate's transitions (orders/model.py), without a database."""

from __future__ import annotations

import pytest

from shopify_app.orders.model import (
    BlingOrder,
    BlingStock,
    ForwardStatus,
    Order,
    OrderLine,
    OrderStatus,
)


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


# --- payment and test orders ---------------------------------------------------------------------


def test_an_unpaid_order_keeps_its_units_and_goes_to_the_erp_when_paid() -> None:
    unpaid = order()
    unpaid.await_payment()
    assert unpaid.awaiting_payment and not unpaid.awaiting_bling
    assert unpaid.pay() and unpaid.awaiting_bling
    assert not unpaid.pay(), "paid twice: nothing more to do"
    with pytest.raises(ValueError):
        order(forward_status="forwarded").await_payment()


def test_an_unpaid_order_cancelled_gives_its_units_back_and_is_never_paid_after() -> None:
    expired = order()
    expired.await_payment()
    assert [line.sku for line in expired.cancel()] == ["TEE", "CAP"]
    assert expired.forward_status is ForwardStatus.CANCELLED and not expired.needs_reversal
    assert not expired.pay() and expired.forward_status is ForwardStatus.CANCELLED


def test_a_test_order_gives_its_units_back_at_once_and_never_again() -> None:
    trial = order()
    assert [line.sku for line in trial.test_only()] == ["TEE", "CAP"]
    assert trial.forward_status is ForwardStatus.TEST and not trial.awaiting_bling
    assert trial.test_only() == [] and not trial.pay()
    assert trial.cancel() == [], "its units went back already"
    assert trial.cancelled and trial.forward_status is ForwardStatus.TEST


# --- the ERP's sales order -----------------------------------------------------------------------


def test_a_sales_order_is_requested_then_known_and_a_cancelled_order_gets_none() -> None:
    placed = order()
    assert placed.request_sales_order() and placed.bling_order is BlingOrder.REQUESTED
    placed.sales_order_known(9001)
    assert (placed.bling_order, placed.bling_order_id) == (BlingOrder.CREATED, 9001)
    late = order()
    late.cancel()
    assert not late.request_sales_order() and late.bling_order is BlingOrder.NONE


def test_a_cancelled_order_cancels_its_sales_order_once_its_stock_is_settled() -> None:
    sold = order(forward_status="forwarded", bling_stock="posted", bling_order_id=9001)
    sold.sales_order_known(9001)
    sold.cancel()
    assert sold.sales_order_maybe_made and not sold.erp_cancellation_due, "reversal first"
    sold.reversed()
    assert sold.erp_cancellation_due
    sold.erp_cancelled()
    assert sold.bling_order is BlingOrder.CANCELLED and not sold.erp_cancellation_due
    sold.sales_order_known(9001)  # a late forward learning the id changes nothing
    assert sold.bling_order is BlingOrder.CANCELLED


def test_a_refused_cancellation_is_recorded_and_still_due() -> None:
    sold = order(bling_order_id=9001, bling_order="created")
    sold.cancel()
    sold.erp_cancel_refused()
    assert sold.bling_order is BlingOrder.CANCEL_REFUSED and sold.erp_cancellation_due


def test_a_create_that_never_landed_leaves_nothing_to_cancel() -> None:
    lost = order()
    lost.request_sales_order()
    lost.cancel()
    lost.no_sales_order()
    assert lost.bling_order is BlingOrder.NONE and not lost.erp_cancellation_due


def test_a_foreign_sales_order_is_never_ours_to_cancel() -> None:
    imported = order()
    imported.refuse_foreign()
    assert imported.bling_order is BlingOrder.FOREIGN
    imported.cancel()
    assert not imported.sales_order_maybe_made and not imported.erp_cancellation_due


def test_once_the_foreign_sales_order_is_gone_a_retry_makes_ours() -> None:
    imported = order()
    imported.refuse_foreign()
    assert imported.request_sales_order() and imported.bling_order is BlingOrder.REQUESTED
