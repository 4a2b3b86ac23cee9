"""A refund or an edit after the ERP's sales order was made, before its stock was posted
(orders/forwarding.py, the correction step), over in-memory fakes: the sales order is rewritten
from the corrected lines and the adjustment's entries are void, a lost answer only rewrites it
again, and a refusal leaves the entries to be sent after the posting. Against the Bling
stand-in: tests/integration/test_bling_order_edits.py."""

from __future__ import annotations

import pytest

from shopify_app.orders.model import EntryState
from shopify_app.orders.ports import ErpRefused
from shopify_app.outbox import PermanentFailure, RetryLater
from tests.support.fakes import FakeErp, FakeUnitOfWork, StockStore
from tests.support.order_adjustments import (
    SHOP,
    adjust,
    enter,
    entry_jobs,
    erp,
    forward,
    order_of,
    refund,
    sell,
)

__all__ = ["erp"]  # the fixture, shared


def made_not_posted(uow: FakeUnitOfWork, store: StockStore, erp: FakeErp) -> int:
    """Sold, its sales order made in the ERP (3 tees, 1 cap), its posting refused for now."""
    store.stock(TEE=10, CAP=5)
    sell(uow)
    erp.fail("post_stock", ErpRefused("not now"))
    with pytest.raises(PermanentFailure):
        forward(uow, erp)
    order = order_of(store)
    assert order.bling_stock == "none" and not erp.posted
    assert order.bling_order_id is not None
    return order.bling_order_id


def test_a_refund_before_the_posting_rewrites_the_sales_order_even_when_its_answer_is_lost(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    erp_id = made_not_posted(uow, store, erp)
    assert adjust(uow, refund("refund:7", (11, 2))) == "adjusted"
    erp.fail("update_sales_order", FakeErp.LOST)
    with pytest.raises(RetryLater):
        forward(uow, erp)
    assert [e.state for e in order_of(store).stock_entries] == [EntryState.PENDING]
    assert forward(uow, erp) == "forwarded"
    assert erp.lines[erp_id] == {"TEE": 1, "CAP": 1}
    assert [w for w in erp.writes if w[0] == "update"] == [("update", erp_id)] * 2
    assert [e.state for e in order_of(store).stock_entries] == [EntryState.VOID]
    assert entry_jobs(store) == [], "the posting carries the refund"
    assert store.figures("TEE") == {"on_hand": 9, "reserved": 0, "committed": 0, "available": 9}


def test_a_sales_order_the_erp_will_not_rewrite_gets_the_entry_after_its_posting(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    erp_id = made_not_posted(uow, store, erp)
    adjust(uow, refund("refund:7", (11, 2)))
    erp.fail("update_sales_order", ErpRefused("invoiced"))
    assert forward(uow, erp) == "forwarded"
    assert erp.lines[erp_id] == {"TEE": 3, "CAP": 1}
    assert entry_jobs(store) == [f"{SHOP}:1:refund:7"]
    assert enter(uow, erp, "refund:7") == "entered"
    assert [(sku, q) for sku, q, _ in erp.entries] == [("TEE", 2)]


def test_a_create_that_never_landed_is_made_with_the_edit_and_sends_no_entry_besides(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    """A create was requested and never landed (its answer lost, nothing made); a refund lands
    meanwhile, recorded as an entry since the sales order may exist. The next run makes it
    from the corrected lines: the entry is then void, not sent on top."""
    store.stock(TEE=10, CAP=5)
    sell(uow)
    order = order_of(store)
    order.bling_order = order.bling_order.REQUESTED
    adjust(uow, refund("refund:7", (11, 2)))
    assert [e.state for e in order_of(store).stock_entries] == [EntryState.PENDING]
    assert forward(uow, erp) == "forwarded"
    (made,) = erp.lines.values()
    assert made == {"TEE": 1, "CAP": 1}
    assert [e.state for e in order_of(store).stock_entries] == [EntryState.VOID]
    assert entry_jobs(store) == [] and erp.entries == []
    assert store.figures("TEE")["on_hand"] == 9
