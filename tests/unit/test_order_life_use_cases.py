"""The order's life with the ERP after the sale (orders/services.py, orders/forwarding.py) over
in-memory fakes: unpaid and test orders, the cancellation of a sales order in the ERP (after its
stock reversal, through lost answers, refusals and cancellations that land mid-forward), and a
sales order another integration made under the same number. The same rules run against the
Bling stand-in in tests/integration/test_bling_order_life.py, and under faults and killed
workers in tests/e2e/test_bling_forwarding_chaos.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shopify_app.orders import forwarding, services
from shopify_app.orders.forwarding import Deadline, NullGateway
from shopify_app.orders.model import BlingOrder, BlingStock, ForwardStatus, Order
from shopify_app.orders.ports import ErpFailure, ErpRefused
from shopify_app.orders.services import Sale
from shopify_app.outbox import PauseKind, PermanentFailure, RetryLater
from shopify_app.outbox.kinds import CANCEL_ORDER, FORWARD_ORDER, REVERSE_ORDER
from shopify_app.shopify.payloads import LineItem
from tests.support.fakes import FakeErp, FakeUnitOfWork, StockStore

SHOP = "bazico.myshopify.com"


@pytest.fixture
def erp() -> FakeErp:
    return FakeErp()


def sell(uow: FakeUnitOfWork, order_id: int, *, paid: bool = True, test: bool = False) -> str:
    items = [LineItem(1, "TEE", 2)]
    with uow:
        result = services.sell(
            uow, Sale(SHOP, order_id, f"#{order_id}", None, items, paid=paid, test=test)
        )
        uow.commit()
    return result.outcome


def cancel(uow: FakeUnitOfWork, order_id: int) -> None:
    with uow:
        services.cancel(uow, SHOP, order_id, None)
        uow.commit()


def forward(uow: FakeUnitOfWork, erp: FakeErp, order_id: int) -> str:
    return forwarding.forward(uow, erp, SHOP, order_id, Deadline(300.0))


def cancel_in_erp(uow: FakeUnitOfWork, erp: FakeErp, order_id: int) -> str:
    return forwarding.cancel_sales_order(uow, erp, SHOP, order_id)


def order_of(store: StockStore, order_id: int) -> Order:
    return store.orders[(SHOP, order_id)]


def kinds(store: StockStore) -> list[str]:
    return [kind for kind, _, _ in store.jobs]


def events(uow: FakeUnitOfWork) -> list[str]:
    return [e.action for e in uow.committed_events]


# --- payment (point 5) ---------------------------------------------------------------------------


def test_an_unpaid_order_keeps_its_units_and_reaches_the_erp_only_once_paid(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    assert sell(uow, 1, paid=False) == "awaiting_payment"
    assert store.figures("TEE")["committed"] == 2, "the boleto's units stay sold"
    assert order_of(store, 1).forward_status is ForwardStatus.AWAITING_PAYMENT
    assert store.jobs == [], "nothing goes to the ERP before the payment"
    assert forward(uow, erp, 1) == "awaiting_payment" and erp.calls == 0

    assert sell(uow, 1) == "paid"  # orders/paid: the same order, paid now
    assert kinds(store) == [FORWARD_ORDER] and "order.paid" in events(uow)
    assert sell(uow, 1) == "duplicate_order", "paid twice: queued once"
    assert forward(uow, erp, 1) == "forwarded"
    assert store.figures("TEE") == {"on_hand": 3, "reserved": 0, "committed": 0, "available": 3}


def test_an_unpaid_order_cancelled_gives_its_units_back_and_never_reaches_the_erp(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 2, paid=False)
    cancel(uow, 2)  # the boleto expired
    assert store.figures("TEE")["committed"] == 0
    assert order_of(store, 2).forward_status is ForwardStatus.CANCELLED
    assert sell(uow, 2) == "duplicate_order", "a late orders/paid sends nothing"
    assert store.jobs == [] and erp.calls == 0


def test_an_order_paid_before_its_creation_arrived_is_forwarded_once(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=5)
    assert sell(uow, 3) == "confirmed"  # orders/paid first
    assert sell(uow, 3, paid=False) == "duplicate_order"  # the late orders/create
    assert kinds(store) == [FORWARD_ORDER]
    assert order_of(store, 3).forward_status is ForwardStatus.PENDING


def test_a_test_order_gives_its_units_back_and_never_reaches_the_erp(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    assert sell(uow, 4, test=True) == "test_order"
    assert store.figures("TEE") == {"on_hand": 5, "reserved": 0, "committed": 0, "available": 5}
    assert order_of(store, 4).forward_status is ForwardStatus.TEST
    assert sell(uow, 4, test=True) == "duplicate_order"  # its orders/paid
    cancel(uow, 4)
    assert store.figures("TEE")["committed"] == 0, "nothing given back twice"
    assert store.jobs == [] and forward(uow, erp, 4) == "test_order" and erp.calls == 0
    assert "order.test" in events(uow) and "order.confirmed" not in events(uow)


def test_a_test_order_found_forwarded_by_an_old_job_is_left_alone(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 5, test=True)
    assert forward(uow, erp, 5) == "test_order" and erp.calls == 0


# --- the sales order cancelled in the ERP (point 4) ----------------------------------------------


def test_a_forwarded_order_cancelled_is_reversed_then_its_sales_order_cancelled(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 10)
    forward(uow, erp, 10)
    cancel(uow, 10)
    assert kinds(store) == [FORWARD_ORDER, REVERSE_ORDER], "the reversal first"

    assert forwarding.reverse(uow, erp, SHOP, 10) == "reversed"
    assert kinds(store) == [FORWARD_ORDER, REVERSE_ORDER, CANCEL_ORDER]
    assert cancel_in_erp(uow, erp, 10) == "cancelled"
    order = order_of(store, 10)
    assert order.bling_order is BlingOrder.CANCELLED
    assert erp.writes == [
        ("sales_order", 9001),
        ("post", 9001),
        ("reverse", 9001),
        ("cancel", 9001),
    ]
    assert cancel_in_erp(uow, erp, 10) == "nothing_to_cancel", "a repeated run does nothing"
    assert store.figures("TEE")["on_hand"] == 5


def test_the_cancellation_waits_while_a_posting_is_still_to_reverse(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 11)
    forward(uow, erp, 11)
    cancel(uow, 11)
    with pytest.raises(RetryLater, match="reversal comes first"):
        cancel_in_erp(uow, erp, 11)
    assert erp.cancelled == set()


def test_an_order_whose_sales_order_exists_unposted_has_it_cancelled_directly(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 12)
    erp.fail("post_stock", ErpRefused("depósito inválido"))
    with pytest.raises(PermanentFailure):
        forward(uow, erp, 12)  # the sales order exists, its stock was never posted
    cancel(uow, 12)
    assert kinds(store) == [FORWARD_ORDER, CANCEL_ORDER]
    assert cancel_in_erp(uow, erp, 12) == "cancelled"
    assert erp.cancelled == {9001} and erp.posted == set()


def test_a_lost_answer_to_the_cancellation_asks_again_and_changes_nothing_more(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 13)
    forward(uow, erp, 13)
    cancel(uow, 13)
    forwarding.reverse(uow, erp, SHOP, 13)
    erp.fail("cancel_sales_order", FakeErp.LOST)
    with pytest.raises(RetryLater):
        cancel_in_erp(uow, erp, 13)
    assert order_of(store, 13).bling_order is BlingOrder.CREATED
    assert cancel_in_erp(uow, erp, 13) == "cancelled"
    assert [w for w in erp.writes if w[0] == "cancel"] == [("cancel", 9001)]


def test_a_refused_cancellation_is_recorded_alerted_and_dead_lettered(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 14)
    forward(uow, erp, 14)
    cancel(uow, 14)
    forwarding.reverse(uow, erp, SHOP, 14)
    erp.fail("cancel_sales_order", ErpRefused("pedido já faturado"))
    with pytest.raises(PermanentFailure, match="pedido já faturado"):
        cancel_in_erp(uow, erp, 14)
    assert order_of(store, 14).bling_order is BlingOrder.CANCEL_REFUSED
    # `outbox retry` once someone looked: asked again.
    assert cancel_in_erp(uow, erp, 14) == "cancelled"
    assert order_of(store, 14).bling_order is BlingOrder.CANCELLED


def test_an_erp_that_cannot_be_used_pauses_the_cancellation_and_records_nothing(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 15)
    forward(uow, erp, 15)
    cancel(uow, 15)
    forwarding.reverse(uow, erp, SHOP, 15)
    pause = PauseKind(datetime(2026, 12, 2, 3, 0, tzinfo=UTC), "no Cancelado situation")
    erp.fail("cancel_sales_order", ErpFailure(pause, nothing_done=True))
    with pytest.raises(PauseKind):
        cancel_in_erp(uow, erp, 15)
    assert order_of(store, 15).bling_order is BlingOrder.CREATED


def test_a_cancellation_landing_while_the_sales_order_is_made_stops_the_posting(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=5)
    sell(uow, 16)

    class CancelDuringCreate(FakeErp):
        def ensure_sales_order(self, order: Order, before_write) -> int | None:  # type: ignore[no-untyped-def]
            found = super().ensure_sales_order(order, before_write)
            cancel(uow, 16)  # orders/cancelled lands while Bling answers the create
            return found

    midway = CancelDuringCreate()
    assert forward(uow, midway, 16) == "cancelled_meanwhile"
    order = order_of(store, 16)
    assert order.bling_order is BlingOrder.CREATED and order.bling_order_id == 9001
    assert midway.posted == set(), "no posting for a cancelled order"
    assert kinds(store) == [FORWARD_ORDER, CANCEL_ORDER]
    assert cancel_in_erp(uow, midway, 16) == "cancelled"


def test_a_cancellation_before_the_create_is_sent_makes_no_sales_order(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=5)
    sell(uow, 17)

    class CancelBeforeCreate(FakeErp):
        def ensure_sales_order(self, order: Order, before_write) -> int | None:  # type: ignore[no-untyped-def]
            cancel(uow, 17)  # lands after the run read the order, before it creates
            return super().ensure_sales_order(order, before_write)

    early = CancelBeforeCreate()
    assert forward(uow, early, 17) == "cancelled"
    assert early.sales_orders == {} and order_of(store, 17).bling_order is BlingOrder.NONE
    assert kinds(store) == [FORWARD_ORDER]


@pytest.mark.parametrize("landed", [True, False])
def test_a_cancelled_order_whose_create_lost_its_answer_has_it_looked_up(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp, landed: bool
) -> None:
    store.stock(TEE=5)
    sell(uow, 18)
    erp.fail("ensure_sales_order", FakeErp.LOST)  # created (or not), the answer never came
    with pytest.raises(RetryLater):
        forward(uow, erp, 18)
    if not landed:
        erp.sales_orders.clear()
    assert order_of(store, 18).bling_order is BlingOrder.REQUESTED
    cancel(uow, 18)
    assert kinds(store) == [FORWARD_ORDER], "the id is unknown: the forward looks it up"

    if landed:
        assert forward(uow, erp, 18) == "cancellation_queued"
        assert order_of(store, 18).bling_order_id == 9001
        assert kinds(store) == [FORWARD_ORDER, CANCEL_ORDER]
        assert cancel_in_erp(uow, erp, 18) == "cancelled" and erp.cancelled == {9001}
    else:
        assert forward(uow, erp, 18) == "cancelled"
        assert order_of(store, 18).bling_order is BlingOrder.NONE
        assert kinds(store) == [FORWARD_ORDER]


def test_a_cancellation_whose_late_posting_is_reversed_cancels_the_sales_order_after(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 19)
    erp.fail("post_stock", FakeErp.LOST)
    with pytest.raises(RetryLater):
        forward(uow, erp, 19)
    cancel(uow, 19)
    assert forward(uow, erp, 19) == "reversal_queued"
    forwarding.reverse(uow, erp, SHOP, 19)
    assert kinds(store) == [FORWARD_ORDER, REVERSE_ORDER, CANCEL_ORDER]
    assert cancel_in_erp(uow, erp, 19) == "cancelled"
    assert erp.writes[-2:] == [("reverse", 9001), ("cancel", 9001)]


def test_without_an_erp_a_cancellation_queues_nothing_to_cancel(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=5)
    sell(uow, 20)
    forwarding.forward(uow, NullGateway(), SHOP, 20, Deadline(300.0))
    cancel(uow, 20)
    forwarding.reverse(uow, NullGateway(), SHOP, 20)
    assert order_of(store, 20).bling_order is BlingOrder.NONE
    assert kinds(store) == [FORWARD_ORDER, REVERSE_ORDER]
    assert forwarding.cancel_sales_order(uow, NullGateway(), SHOP, 20) == "nothing_to_cancel"


# --- a sales order another integration made (point 10) -------------------------------------------


def test_a_sales_order_we_did_not_make_is_not_adopted_and_nothing_is_posted(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 30)
    erp.import_foreign("#30")  # Bling's own Shopify import got there first
    with pytest.raises(PermanentFailure, match="did not create"):
        forward(uow, erp, 30)
    order = order_of(store, 30)
    assert order.bling_order is BlingOrder.FOREIGN and order.bling_order_id is None
    assert order.forward_status is ForwardStatus.PENDING
    assert erp.writes == [] and erp.posted == set()
    assert store.figures("TEE")["committed"] == 2, "the safe side: still sold here"

    cancel(uow, 30)  # cancelled in Shopify: its units come back; Bling's order is not ours
    assert store.figures("TEE")["committed"] == 0
    assert kinds(store) == [FORWARD_ORDER]


def test_once_the_foreign_sales_order_is_gone_a_retry_forwards_ours(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 31)
    erp.import_foreign("#31")
    with pytest.raises(PermanentFailure):
        forward(uow, erp, 31)
    del erp.foreign["#31"]  # the merchant cancelled or deleted it in Bling, then `outbox retry`
    assert forward(uow, erp, 31) == "forwarded"
    assert order_of(store, 31).bling_order is BlingOrder.CREATED
    assert erp.writes == [("sales_order", 9001), ("post", 9001)]


def test_the_refusal_is_an_alerting_event(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp, monkeypatch: pytest.MonkeyPatch
) -> None:
    emitted: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(
        forwarding, "emit", lambda action, **fields: emitted.append((action, fields))
    )
    store.stock(TEE=5)
    sell(uow, 32)
    erp.import_foreign("#32")
    with pytest.raises(PermanentFailure):
        forward(uow, erp, 32)
    ((action, fields),) = emitted
    assert action == "bling.foreign_sales_order"
    assert fields["bling_orders"] == [8000] and fields["name"] == "#32"
    assert order_of(store, 32).bling_stock is BlingStock.NONE
