"""The forwarding steps (orders/forwarding.py) over in-memory fakes: each branch of forward,
post, acknowledge and reverse, with an ERP that fails, loses answers and refuses on cue. The
same steps run against the Bling stand-in on SQLite and PostgreSQL in
tests/integration/test_bling_forwarding.py, and under killed workers in tests/e2e."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shopify_app.orders import forwarding, services
from shopify_app.orders.forwarding import Deadline, NullGateway
from shopify_app.orders.model import BlingStock, ForwardStatus, Order
from shopify_app.orders.ports import ErpFailure, ErpRefused
from shopify_app.orders.services import Sale
from shopify_app.outbox import PauseKind, PermanentFailure, RetryLater
from shopify_app.outbox.kinds import FORWARD_ORDER, REVERSE_ORDER
from shopify_app.shopify.payloads import LineItem
from tests.support.fakes import FakeErp, FakeUnitOfWork, StockStore

SHOP = "bazico.myshopify.com"


def later() -> Deadline:
    return Deadline(300.0)


@pytest.fixture
def erp() -> FakeErp:
    return FakeErp()


def sell(uow: FakeUnitOfWork, order_id: int, **lines: int) -> None:
    items = [LineItem(n, sku, q) for n, (sku, q) in enumerate(lines.items(), start=1)]
    with uow:
        services.sell(uow, Sale(SHOP, order_id, f"#{order_id}", None, items))
        uow.commit()


def cancel(uow: FakeUnitOfWork, order_id: int) -> None:
    with uow:
        services.cancel(uow, SHOP, order_id, None)
        uow.commit()


def order_of(store: StockStore, order_id: int) -> Order:
    return store.orders[(SHOP, order_id)]


def forward(
    uow: FakeUnitOfWork, erp: FakeErp, order_id: int, deadline: Deadline | None = None
) -> str:
    return forwarding.forward(uow, erp, SHOP, order_id, deadline or later())


def kinds(store: StockStore) -> list[str]:
    return [kind for kind, _, _ in store.jobs]


# --- forward -----------------------------------------------------------------------------------


def test_a_confirmed_order_gets_one_sales_order_its_posting_and_the_acknowledgement(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5, CAP=2)
    sell(uow, 1, TEE=2, CAP=1)
    assert store.figures("TEE")["committed"] == 2

    assert forward(uow, erp, 1) == "forwarded"

    order = order_of(store, 1)
    assert order.forward_status is ForwardStatus.FORWARDED and order.acknowledged
    assert order.bling_stock is BlingStock.POSTED and order.bling_order_id == 9001
    assert erp.writes == [("sales_order", 9001), ("post", 9001)]
    assert store.figures("TEE") == {"on_hand": 3, "reserved": 0, "committed": 0, "available": 3}
    assert erp.acknowledged == [({"TEE": 2, "CAP": 1}, "shopify:1")]


def test_a_repeated_run_of_a_forwarded_order_does_nothing(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 2, TEE=1)
    forward(uow, erp, 2)
    calls = erp.calls
    assert forward(uow, erp, 2) == "already_forwarded"
    assert erp.calls == calls and store.figures("TEE")["on_hand"] == 4


def test_an_unknown_or_empty_order_reaches_no_erp(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    assert forward(uow, erp, 404) == "unknown_order"
    sell(uow, 3, UNTRACKED=1)
    assert order_of(store, 3).lines == []
    assert forward(uow, erp, 3) == "nothing_to_post"
    assert erp.calls == 0


def test_a_sales_order_made_by_a_run_that_died_is_found_not_made_twice(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 4, TEE=1)
    erp.fail("ensure_sales_order", FakeErp.LOST)  # created, but the answer never came
    with pytest.raises(RetryLater):
        forward(uow, erp, 4)
    assert order_of(store, 4).bling_order_id is None

    assert forward(uow, erp, 4) == "forwarded"
    assert [w for w in erp.writes if w[0] == "sales_order"] == [("sales_order", 9001)]


def test_a_refused_sales_order_is_dead_lettered_with_the_reason(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 5, TEE=1)
    erp.fail("ensure_sales_order", ErpRefused("contato inválido"))
    with pytest.raises(PermanentFailure, match="contato inválido"):
        forward(uow, erp, 5)
    assert order_of(store, 5).forward_status is ForwardStatus.PENDING
    assert store.figures("TEE")["committed"] == 1, "the units stay sold here"


def test_a_posting_whose_answer_was_lost_is_read_as_made_when_the_erp_refuses_a_second(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 6, TEE=2)
    erp.fail("post_stock", FakeErp.LOST)
    with pytest.raises(RetryLater):
        forward(uow, erp, 6)
    assert order_of(store, 6).bling_stock is BlingStock.REQUESTED, "recorded before the call"

    assert forward(uow, erp, 6) == "forwarded"  # the ERP refuses the second posting
    assert [w for w in erp.writes if w[0] == "post"] == [("post", 9001)]
    assert store.figures("TEE")["on_hand"] == 3


def test_a_posting_refused_outright_is_dead_lettered_and_recorded_as_not_posted(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 7, TEE=1)
    erp.fail("post_stock", ErpRefused("depósito inválido"))
    with pytest.raises(PermanentFailure, match="stock posting"):
        forward(uow, erp, 7)
    assert order_of(store, 7).bling_stock is BlingStock.NONE


@pytest.mark.parametrize(
    ("nothing_done", "after"), [(True, BlingStock.NONE), (False, BlingStock.REQUESTED)]
)
def test_a_failed_posting_is_recorded_as_not_posted_only_when_certainly_not(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp, nothing_done: bool, after: BlingStock
) -> None:
    store.stock(TEE=5)
    sell(uow, 8, TEE=1)
    outcome = RetryLater("429", delay=2.0)
    erp.fail("post_stock", ErpFailure(outcome, nothing_done=nothing_done))
    with pytest.raises(RetryLater) as raised:
        forward(uow, erp, 8)
    assert raised.value is outcome, "the outbox gets the outcome the gateway chose"
    assert order_of(store, 8).bling_stock is after
    assert store.figures("TEE")["committed"] == 1


def test_an_erp_that_cannot_be_used_pauses_the_kind_and_changes_nothing(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 9, TEE=1)
    pause = PauseKind(datetime(2026, 12, 2, 3, 0, tzinfo=UTC), "not connected")
    erp.fail("session", ErpFailure(pause, nothing_done=True))
    with pytest.raises(PauseKind):
        forward(uow, erp, 9)
    assert erp.writes == [] and order_of(store, 9).forward_status is ForwardStatus.PENDING


def test_a_run_late_in_its_lease_starts_no_write(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 10, TEE=1)
    now = [0.0]
    deadline = Deadline(300.0, monotonic=lambda: now[0])
    now[0] = 101.0  # past a third of the lease
    with pytest.raises(RetryLater, match="too late"):
        forward(uow, erp, 10, deadline)
    assert erp.writes == []


# --- cancellations around a forward ------------------------------------------------------------


def test_an_order_cancelled_before_its_forward_never_reaches_the_erp(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 11, TEE=1)
    cancel(uow, 11)
    assert forward(uow, erp, 11) == "cancelled"
    assert erp.calls == 0 and store.figures("TEE")["committed"] == 0


def test_a_cancelled_order_whose_posting_was_asked_for_gets_its_reversal_queued(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 12, TEE=1)
    erp.fail("post_stock", FakeErp.LOST)
    with pytest.raises(RetryLater):
        forward(uow, erp, 12)
    cancel(uow, 12)  # units back here; Bling may have the posting
    assert forward(uow, erp, 12) == "reversal_queued"
    assert order_of(store, 12).needs_reversal
    assert kinds(store) == [FORWARD_ORDER, REVERSE_ORDER]


def test_a_cancellation_during_the_forward_queues_the_reversal_instead_of_acknowledging(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 13, TEE=2)

    erp.after_post = lambda: cancel(uow, 13)  # orders/cancelled lands while Bling posts
    assert forward(uow, erp, 13) == "cancelled_meanwhile"
    order = order_of(store, 13)
    assert order.needs_reversal and order.bling_stock is BlingStock.POSTED
    assert not order.acknowledged and erp.acknowledged == []
    assert store.figures("TEE") == {"on_hand": 5, "reserved": 0, "committed": 0, "available": 5}
    assert kinds(store) == [FORWARD_ORDER, REVERSE_ORDER]


def test_an_order_erased_during_the_forward_is_left_alone(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 14, TEE=1)

    erp.after_post = lambda: store.orders.pop((SHOP, 14))  # shop/redact
    assert forward(uow, erp, 14) == "erased"


# --- reverse -----------------------------------------------------------------------------------


def test_reversing_an_acknowledged_order_undoes_the_posting_and_restocks(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 15, TEE=2)
    forward(uow, erp, 15)
    cancel(uow, 15)
    assert order_of(store, 15).needs_reversal and store.figures("TEE")["on_hand"] == 3

    assert forwarding.reverse(uow, erp, SHOP, 15) == "reversed"
    order = order_of(store, 15)
    assert order.forward_status is ForwardStatus.REVERSED
    assert order.bling_stock is BlingStock.REVERSED
    assert erp.posted == set() and store.figures("TEE")["on_hand"] == 5
    assert forwarding.reverse(uow, erp, SHOP, 15) == "nothing_to_reverse"
    assert store.figures("TEE")["on_hand"] == 5, "restocked once"


def test_a_reversal_whose_answer_was_lost_is_done_when_the_erp_finds_nothing_to_reverse(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 16, TEE=1)
    forward(uow, erp, 16)
    cancel(uow, 16)
    erp.fail("reverse_stock", FakeErp.LOST)
    with pytest.raises(RetryLater):
        forwarding.reverse(uow, erp, SHOP, 16)
    assert order_of(store, 16).bling_stock is BlingStock.REVERSING
    assert store.figures("TEE")["on_hand"] == 4, "nothing restocked before the reversal is done"

    assert forwarding.reverse(uow, erp, SHOP, 16) == "reversed"
    assert [w for w in erp.writes if w[0] == "reverse"] == [("reverse", 9001)]
    assert store.figures("TEE")["on_hand"] == 5


def test_reversing_an_order_never_acknowledged_restocks_nothing(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 17, TEE=1)

    erp.after_post = lambda: cancel(uow, 17)
    forward(uow, erp, 17)
    assert forwarding.reverse(uow, erp, SHOP, 17) == "reversed"
    assert store.figures("TEE")["on_hand"] == 5, "the cancellation gave the units back already"
    assert erp.posted == set()


def test_an_order_not_awaiting_a_reversal_is_not_reversed(
    uow: FakeUnitOfWork, store: StockStore, erp: FakeErp
) -> None:
    store.stock(TEE=5)
    sell(uow, 18, TEE=1)
    assert forwarding.reverse(uow, erp, SHOP, 18) == "nothing_to_reverse"
    assert forwarding.reverse(uow, erp, SHOP, 404) == "nothing_to_reverse"
    assert erp.calls == 0


# --- a store without an ERP, and the job payload -------------------------------------------------


def test_without_an_erp_a_confirmed_order_is_acknowledged_at_once(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=5)
    sell(uow, 19, TEE=2)
    assert forwarding.forward(uow, NullGateway(), SHOP, 19, later()) == "forwarded"
    assert store.figures("TEE") == {"on_hand": 3, "reserved": 0, "committed": 0, "available": 3}
    cancel(uow, 19)
    assert forwarding.reverse(uow, NullGateway(), SHOP, 19) == "reversed"
    assert store.figures("TEE")["on_hand"] == 5


def test_a_job_payload_that_names_no_order_is_dead_lettered() -> None:
    assert forwarding.order_key({"shop": SHOP, "order_id": "20"}) == (SHOP, 20)
    for payload in ({}, {"shop": SHOP}, {"shop": SHOP, "order_id": "x"}):
        with pytest.raises(PermanentFailure):
            forwarding.order_key(payload)


def test_the_deadline_allows_writes_in_the_first_third_of_the_lease() -> None:
    now = [0.0]
    deadline = Deadline(timedelta(minutes=5).total_seconds(), monotonic=lambda: now[0])
    now[0] = 99.0
    deadline.check("post")  # no error
