"""Refunds and order edits (orders/adjustments.py, issue 13 point 6) over in-memory fakes: each
applied once, the ledger moved by what was restocked, removed or added, and the ERP told the
difference exactly where its sales order may already hold the old lines. The same rules run
against the Bling stand-in in tests/integration/test_bling_adjustments.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopify_app.orders import adjustments, forwarding, services
from shopify_app.orders.model import (
    Adjustment,
    EntryState,
    ForwardStatus,
    LineChange,
)
from shopify_app.orders.ports import ErpFailure
from shopify_app.outbox import PermanentFailure, RetryLater
from shopify_app.shopify.payloads import (
    PayloadError,
    edit_adjustment,
    refund_adjustment,
)
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

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shopify"


# --- refunds before the order reached the ERP ----------------------------------------------------


def test_a_refund_before_the_forward_uncommits_and_the_sales_order_gets_only_what_remains(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    assert adjust(uow, refund("refund:7", (11, 2))) == "adjusted"
    assert store.figures("TEE")["committed"] == 1, "the refunded units are sellable again"
    assert order_of(store).lines[0].removed == 2
    assert store.jobs and entry_jobs(store) == [], "no entry: Bling has no sales order yet"

    assert forward(uow, erp) == "forwarded"
    (made,) = erp.lines.values()
    assert made == {"TEE": 1, "CAP": 1}, "Bling's sales order has the corrected lines"
    assert store.figures("TEE") == {"on_hand": 9, "reserved": 0, "committed": 0, "available": 9}
    assert erp.entries == []


def test_a_refund_id_applies_once_even_under_another_delivery(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    assert adjust(uow, refund("refund:7", (11, 1))) == "adjusted"
    assert adjust(uow, refund("refund:7", (11, 1))) == "duplicate_adjustment"
    assert store.figures("TEE")["committed"] == 2
    assert order_of(store).adjustments == ["refund:7"]


def test_a_refund_never_removes_more_than_the_line_has_left(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    adjust(uow, refund("refund:1", (11, 2)))
    adjust(uow, refund("refund:2", (11, 5)))
    assert order_of(store).lines[0].removed == 3
    assert store.figures("TEE")["committed"] == 0


def test_no_restock_and_unknown_lines_change_nothing(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    payload = {
        "id": 9,
        "order_id": 1,
        "refund_line_items": [
            {"line_item_id": 11, "quantity": 1, "restock_type": "no_restock"},
            {"line_item_id": 99, "quantity": 1, "restock_type": "return"},
        ],
    }
    assert adjust(uow, refund_adjustment(SHOP, payload)) == "nothing_to_adjust"
    assert store.figures("TEE")["committed"] == 3
    assert order_of(store).adjustments == ["refund:9"], "recorded: a redelivery is a no-op"


def test_a_refund_of_a_cancelled_order_is_recorded_and_moves_nothing(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    with uow:
        services.cancel(uow, SHOP, 1, None)
        uow.commit()
    assert adjust(uow, refund("refund:3", (11, 3))) == "order_closed"
    assert store.figures("TEE")["committed"] == 0
    assert order_of(store).lines[0].removed == 0


def test_a_cancellation_after_a_refund_gives_back_only_what_was_left(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    adjust(uow, refund("refund:3", (11, 2)))
    with uow:
        services.cancel(uow, SHOP, 1, None)
        uow.commit()
    assert store.figures("TEE")["committed"] == 0
    assert store.figures("TEE")["available"] == 10


# --- refunds after the ERP has the order -------------------------------------------------------


def test_a_refund_after_the_forward_restocks_here_and_enters_bling_stock_once(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    forward(uow, erp)
    assert store.figures("TEE")["on_hand"] == 7
    assert adjust(uow, refund("refund:7", (11, 2))) == "adjusted"
    assert store.figures("TEE")["on_hand"] == 9, "the returned units are on hand again"
    assert entry_jobs(store) == [f"{SHOP}:1:refund:7"]
    assert order_of(store).stock_entries[0].state is EntryState.PENDING

    assert enter(uow, erp, "refund:7") == "entered"
    assert [(sku, q) for sku, q, _ in erp.entries] == [("TEE", 2)]
    assert order_of(store).stock_entries[0].state is EntryState.POSTED
    assert enter(uow, erp, "refund:7") == "nothing_to_enter", "a repeated job sends nothing"
    assert len(erp.entries) == 1


def test_an_entry_whose_answer_was_lost_is_never_sent_again(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    forward(uow, erp)
    adjust(uow, refund("refund:7", (11, 1)))
    erp.fail("enter_stock", FakeErp.LOST)
    with pytest.raises(RetryLater):
        enter(uow, erp, "refund:7")
    assert order_of(store).stock_entries[0].state is EntryState.REQUESTED
    with pytest.raises(PermanentFailure, match="never sent twice"):
        enter(uow, erp, "refund:7")
    assert len(erp.entries) == 1


def test_an_entry_refused_before_anything_was_done_is_sent_on_the_retry(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    forward(uow, erp)
    adjust(uow, refund("refund:7", (11, 1)))
    erp.fail("enter_stock", ErpFailure(RetryLater("429"), nothing_done=True))
    with pytest.raises(RetryLater):
        enter(uow, erp, "refund:7")
    assert order_of(store).stock_entries[0].state is EntryState.PENDING
    assert enter(uow, erp, "refund:7") == "entered"


def test_a_refund_after_the_sales_order_but_before_the_posting_waits_for_the_acknowledgement(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    """The sales order was made with 3 tees; the refund of 2 lands before Bling posts: the
    posting takes 3 out in Bling, so the entry puts 2 back once the order is acknowledged."""
    store.stock(TEE=10, CAP=5)
    sell(uow)

    def refund_now() -> None:
        adjust(uow, refund("refund:7", (11, 2)))

    erp.after_post = refund_now
    assert forward(uow, erp) == "forwarded"
    assert store.figures("TEE") == {"on_hand": 9, "reserved": 0, "committed": 0, "available": 9}
    assert entry_jobs(store) == [f"{SHOP}:1:refund:7"], "queued by the acknowledgement"
    assert enter(uow, erp, "refund:7") == "entered"
    assert [(sku, q) for sku, q, _ in erp.entries] == [("TEE", 2)]


def test_an_entry_of_an_order_cancelled_before_its_acknowledgement_is_void(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    order = order_of(store)
    order.bling_order = order.bling_order.CREATED  # Bling has the sales order, unposted
    adjust(uow, refund("refund:7", (11, 1)))
    with uow:
        services.cancel(uow, SHOP, 1, None)
        uow.commit()
    assert enter(uow, erp, "refund:7") == "void"
    assert erp.entries == []


# --- order edits -------------------------------------------------------------------------------


def test_an_edit_before_the_forward_moves_the_ledger_and_the_sales_order_lines(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=10, CAP=1)
    sell(uow)
    change = Adjustment(
        SHOP,
        1,
        "edit:5",
        removed=(LineChange(11, 1),),
        added=(LineChange(12, 2), LineChange(13, 1, "MUG")),
    )
    store.stock(MUG=4)
    assert adjust(uow, change) == "adjusted"
    assert store.figures("TEE")["committed"] == 2
    assert store.figures("CAP")["committed"] == 3
    assert store.figures("MUG")["committed"] == 1
    lines = {line.line_id: line for line in order_of(store).lines}
    assert lines[12].quantity == 3 and lines[12].oversold == 2, "CAP had 0 available left"
    assert lines[13].sku == "MUG"
    assert "order.oversold" in [e.action for e in uow.committed_events]
    assert forward(uow, erp) == "forwarded"
    (made,) = erp.lines.values()
    assert made == {"TEE": 2, "CAP": 3, "MUG": 1}


def test_an_edit_after_the_forward_posts_the_difference_in_bling(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    forward(uow, erp)
    change = Adjustment(SHOP, 1, "edit:5", removed=(LineChange(11, 1),), added=(LineChange(12, 2),))
    assert adjust(uow, change) == "adjusted"
    assert store.figures("TEE")["on_hand"] == 8
    assert store.figures("CAP") == {"on_hand": 2, "reserved": 0, "committed": 0, "available": 2}
    assert enter(uow, erp, "edit:5") == "entered"
    assert sorted((sku, q) for sku, q, _ in erp.entries) == [("CAP", -2), ("TEE", 1)]


def test_an_added_line_without_a_sku_is_reported_not_guessed(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    with uow:
        result = adjustments.adjust(uow, Adjustment(SHOP, 1, "edit:5", added=(LineChange(77, 1),)))
        uow.commit()
    assert result.unknown_lines == [77]
    assert store.figures("TEE")["committed"] == 3


def test_an_unpaid_order_refunded_stays_waiting_with_fewer_units(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow, paid=False)
    adjust(uow, refund("refund:1", (11, 3), (12, 1)))
    assert order_of(store).forward_status is ForwardStatus.AWAITING_PAYMENT
    assert store.figures("TEE")["committed"] == 0


# --- the payloads, in Shopify's documented shapes ----------------------------------------------


def test_the_refund_fixture_restocks_only_its_returned_line() -> None:
    payload = json.loads((FIXTURES / "refunds_create.json").read_text())
    change = refund_adjustment(SHOP, payload)
    assert change.key == "refund:890088186047892319"
    assert change.order_id == 820982911946154508
    assert [(c.line_id, c.quantity, c.sku) for c in change.removed] == [
        (976318377106520349, 1, "SKU2006-020")
    ], "the no_restock line stays sold"


def test_the_edit_fixture_reads_additions_and_removals() -> None:
    payload = json.loads((FIXTURES / "orders_edited.json").read_text())
    change = edit_adjustment(SHOP, payload)
    assert change.key == "edit:78912328"
    assert [(c.line_id, c.quantity) for c in change.added] == [(315789986012684393, 2)]
    assert [(c.line_id, c.quantity) for c in change.removed] == [(890123456789012345, 1)]


@pytest.mark.parametrize(
    "payload",
    [{}, {"id": 1}, {"id": "x", "order_id": 1}, {"order_id": 1, "id": True}],
)
def test_a_refund_without_ids_is_refused(payload: dict[str, object]) -> None:
    with pytest.raises(PayloadError):
        refund_adjustment(SHOP, payload)


@pytest.mark.parametrize("payload", [{}, {"order_edit": 5}, {"order_edit": {"id": 1}}])
def test_an_edit_without_ids_is_refused(payload: dict[str, object]) -> None:
    with pytest.raises(PayloadError):
        edit_adjustment(SHOP, payload)


# --- a cancellation after the ERP was told of a refund or an edit ------------------------------


def test_a_reversal_undoes_the_entries_bling_was_told_and_voids_the_rest(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    """Bling's reversal puts back what the posting took (3 tees, 1 cap), not the refund's entry
    since: the 2 tees entered for the refund are taken out again, the cap's unsent entry is
    void, and the ledger gets back only what was still sold."""
    store.stock(TEE=10, CAP=5)
    sell(uow)
    forward(uow, erp)
    adjust(uow, refund("refund:7", (11, 2)))
    assert enter(uow, erp, "refund:7") == "entered"
    adjust(uow, refund("refund:8", (12, 1)))
    with uow:
        services.cancel(uow, SHOP, 1, None)
        uow.commit()
    assert forwarding.reverse(uow, erp, SHOP, 1) == "reversed"
    assert store.figures("TEE")["on_hand"] == 10 and store.figures("CAP")["on_hand"] == 5
    states = {(e.adjustment, e.sku): e.state for e in order_of(store).stock_entries}
    assert states[("refund:8", "CAP")] is EntryState.VOID
    assert states[("undo:refund:7", "TEE")] is EntryState.PENDING
    assert f"{SHOP}:1:undo:refund:7" in entry_jobs(store)
    assert enter(uow, erp, "refund:8") == "nothing_to_enter"
    assert enter(uow, erp, "undo:refund:7") == "entered"
    assert [(sku, q) for sku, q, _ in erp.entries] == [("TEE", 2), ("TEE", -2)]


def test_units_taken_out_by_an_entry_are_noted_like_a_posting(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=10, CAP=5)
    sell(uow)
    forward(uow, erp)
    adjust(uow, Adjustment(SHOP, 1, "edit:5", added=(LineChange(12, 2),)))
    enter(uow, erp, "edit:5")
    assert erp.acknowledged[-1] == ({"CAP": 2}, "shopify:1:edit:5")


def test_entries_recorded_while_a_create_never_landed_are_void(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    """A refund lands while the create is requested; the create is refused (nothing made in
    Bling): the entry is void, and a later sales order is made from the corrected lines."""
    from shopify_app.orders.ports import ErpRefused

    store.stock(TEE=10, CAP=5)
    sell(uow)
    order = order_of(store)
    order.bling_order = order.bling_order.REQUESTED  # a create sent, its answer unknown
    adjust(uow, refund("refund:7", (11, 1)))
    assert order_of(store).stock_entries[0].state is EntryState.PENDING
    erp.fail("ensure_sales_order", ErpRefused("invalid"))
    with pytest.raises(PermanentFailure):
        forward(uow, erp)
    assert order_of(store).stock_entries[0].state is EntryState.VOID
    assert forward(uow, erp) == "forwarded"
    (made,) = erp.lines.values()
    assert made == {"TEE": 2, "CAP": 1}
    assert entry_jobs(store) == [], "nothing left to enter"
