"""The Shopify webhook use cases (shopify/carts.py, shopify/handlers.py) over in-memory fakes:
keeping a cart's holds in step (the storefront hold rule), selling an order, cancelling one. The
same handlers run against SQLite and PostgreSQL through signed HTTP deliveries in
tests/integration."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from shopify_app.orders.model import ForwardStatus
from shopify_app.outbox.kinds import FORWARD_ORDER, REVERSE_ORDER
from shopify_app.shopify.handlers import HANDLERS, Delivery, Policy
from shopify_app.stock import services
from shopify_app.stock.domain import Hold, HoldSource, HoldStatus, Line
from tests.support.clock import FakeClock
from tests.support.fakes import FakeUnitOfWork, StockStore

SHOP = "bazico.myshopify.com"
GRACE = timedelta(seconds=120)
POLICY = Policy(cart_ttl=timedelta(minutes=15), checkout_ttl=timedelta(minutes=30))
_ids = itertools.count(1)


def deliver(uow: FakeUnitOfWork, topic: str, payload: dict[str, Any]) -> str:
    """As shopify/webhooks.py runs a delivery: one unit of work, the handler, one commit."""
    with uow:
        outcome = HANDLERS[topic](uow, Delivery(SHOP, topic, f"w{next(_ids)}", payload), POLICY)
        uow.commit()
    return outcome


def storefront_hold(uow: FakeUnitOfWork, sku: str, cart: str, quantity: int = 1) -> Hold:
    (hold,) = services.reserve(
        uow, [Line(sku, quantity)], holder=cart, source=HoldSource.PROXY, ttl=GRACE
    )
    return hold


def cart(token: str, clock: FakeClock, *lines: tuple[str, int, Hold | None], ago: int = 0) -> dict:
    return {
        "token": token,
        "updated_at": (clock.now - timedelta(seconds=ago)).isoformat(),
        "line_items": [
            {
                "id": n,
                "sku": sku,
                "quantity": quantity,
                "variant_id": 100 + n,
                "properties": {"_bazico_hold": str(hold.line_id)} if hold else None,
            }
            for n, (sku, quantity, hold) in enumerate(lines, start=1)
        ],
    }


def order(order_id: int, token: str | None, *lines: tuple[str, int, Hold | None]) -> dict:
    return {
        "id": order_id,
        "name": f"#{order_id}",
        "cart_token": token,
        "line_items": [
            {
                "id": n,
                "sku": sku,
                "quantity": quantity,
                "properties": [{"name": "_bazico_hold", "value": str(hold.line_id)}]
                if hold
                else [],
            }
            for n, (sku, quantity, hold) in enumerate(lines, start=1)
        ],
    }


# --- the cart rule --------------------------------------------------------------------------


def test_a_webhook_of_the_cart_before_the_add_leaves_the_pending_hold(
    uow: FakeUnitOfWork, store: StockStore, clock: FakeClock
) -> None:
    store.stock(LAST=1, OTHER=5)
    hold = storefront_hold(uow, "LAST", "a")
    assert deliver(uow, "carts/update", cart("a", clock, ("OTHER", 1, None), ago=2)) == "applied"
    assert store.holds[hold.id].status is HoldStatus.ACTIVE and store.holds[hold.id].pending
    clock.advance(3)
    deliver(uow, "carts/update", cart("a", clock, ("OTHER", 1, None), ("LAST", 1, hold)))
    listed = store.holds[hold.id]
    assert not listed.pending and listed.expires_at == clock.now + POLICY.cart_ttl
    assert store.figures("LAST")["reserved"] == 1
    assert store.variants[(SHOP, 102)] == "LAST", "the variant's SKU is learnt"


def test_fewer_units_shrink_the_listed_hold_and_a_removed_line_releases_it(
    uow: FakeUnitOfWork, store: StockStore, clock: FakeClock
) -> None:
    store.stock(TEE=5)
    hold = storefront_hold(uow, "TEE", "a", 3)
    deliver(uow, "carts/update", cart("a", clock, ("TEE", 3, hold)))
    clock.advance(1)
    deliver(uow, "carts/update", cart("a", clock, ("TEE", 1, hold)))
    assert (store.holds[hold.id].quantity, store.figures("TEE")["available"]) == (1, 4)
    clock.advance(1)
    deliver(uow, "carts/update", cart("a", clock))
    assert store.holds[hold.id].status is HoldStatus.RELEASED


def test_units_a_pending_hold_covers_are_never_held_twice_and_more_come_from_stock(
    uow: FakeUnitOfWork, store: StockStore, clock: FakeClock
) -> None:
    store.stock(TEE=5)
    storefront_hold(uow, "TEE", "a", 2)
    deliver(uow, "carts/update", cart("a", clock, ("TEE", 3, None)))  # one more than asked
    assert store.figures("TEE")["reserved"] == 3


def test_a_stale_or_repeated_webhook_changes_nothing(
    uow: FakeUnitOfWork, store: StockStore, clock: FakeClock
) -> None:
    store.stock(TEE=5)
    deliver(uow, "carts/update", cart("a", clock, ("TEE", 2, None)))
    rows = dict(store.rows)
    assert deliver(uow, "carts/update", cart("a", clock, ("TEE", 4, None), ago=1)) == "stale"
    assert deliver(uow, "carts/update", cart("a", clock, ("TEE", 4, None))) == "stale"
    assert store.rows == rows


# --- selling --------------------------------------------------------------------------------


def test_an_order_sells_from_the_holds_its_lines_name_and_queues_bling(
    uow: FakeUnitOfWork, store: StockStore, clock: FakeClock
) -> None:
    store.stock(TEE=3, CAP=1)
    tee = storefront_hold(uow, "TEE", "a", 2)
    cap = storefront_hold(uow, "CAP", "a")
    assert deliver(uow, "orders/create", order(501, "a", ("TEE", 2, tee))) == "confirmed"
    assert store.holds[tee.id].status is HoldStatus.CONFIRMED
    assert store.holds[cap.id].status is HoldStatus.RELEASED, "the cart is done"
    assert store.figures("TEE") == {"on_hand": 3, "reserved": 0, "committed": 2, "available": 1}
    assert store.jobs == [(FORWARD_ORDER, f"{SHOP}:501", {"shop": SHOP, "order_id": 501})]
    sold = store.orders[(SHOP, 501)]
    assert [(line.from_holds, line.from_available, line.oversold) for line in sold.lines] == [
        (2, 0, 0)
    ]
    assert deliver(uow, "orders/create", order(501, "a", ("TEE", 2, tee))) == "duplicate_order"
    assert len(store.jobs) == 1


def test_uncovered_units_come_from_available_and_the_rest_is_an_oversell(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(LAST=1)
    deliver(uow, "orders/create", order(502, None, ("LAST", 3, None)))
    sold = store.orders[(SHOP, 502)]
    assert [(line.from_available, line.oversold) for line in sold.lines] == [(3, 2)]
    assert sold.oversold
    assert [e.action for e in uow.committed_events].count("order.oversold") == 1


def test_a_named_hold_of_another_cart_is_never_consumed(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(LAST=2)
    theirs = storefront_hold(uow, "LAST", "b")
    deliver(uow, "orders/create", order(503, "a", ("LAST", 1, theirs)))
    assert store.holds[theirs.id].status is HoldStatus.ACTIVE
    assert store.orders[(SHOP, 503)].lines[0].from_holds == 0


# --- cancelling -----------------------------------------------------------------------------


def test_cancelling_an_order_bling_never_had_gives_its_units_back(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=3)
    deliver(uow, "orders/create", order(601, None, ("TEE", 2, None)))
    assert deliver(uow, "orders/cancelled", {"id": 601}) == "cancelled"
    assert store.figures("TEE")["committed"] == 0
    assert store.orders[(SHOP, 601)].forward_status is ForwardStatus.CANCELLED
    assert deliver(uow, "orders/cancelled", {"id": 601}) == "already_cancelled"
    assert [kind for kind, _, _ in store.jobs] == [FORWARD_ORDER]


def test_cancelling_an_order_bling_has_queues_its_reversal(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=3)
    deliver(uow, "orders/create", order(602, None, ("TEE", 1, None)))
    store.orders[(SHOP, 602)].forward_status = ForwardStatus.FORWARDED  # the worker's doing
    deliver(uow, "orders/cancelled", {"id": 602})
    assert store.orders[(SHOP, 602)].needs_reversal
    assert [kind for kind, _, _ in store.jobs] == [FORWARD_ORDER, REVERSE_ORDER]
    assert store.figures("TEE")["committed"] == 1, "the reversal in Bling gives them back"


def test_a_cancellation_before_the_order_makes_its_creation_sell_nothing(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=3)
    assert deliver(uow, "orders/cancelled", {"id": 603, "name": "#603"}) == "unknown_order"
    assert deliver(uow, "orders/create", order(603, None, ("TEE", 1, None))) == "duplicate_order"
    assert store.figures("TEE")["committed"] == 0 and store.jobs == []


# --- payment and test orders -------------------------------------------------------------------


def test_an_unpaid_order_waits_for_orders_paid_before_it_is_queued_for_bling(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=3)
    boleto = {**order(701, None, ("TEE", 1, None)), "financial_status": "pending"}
    assert deliver(uow, "orders/create", boleto) == "awaiting_payment"
    assert store.figures("TEE")["committed"] == 1 and store.jobs == []
    paid = {**boleto, "financial_status": "paid"}
    assert deliver(uow, "orders/paid", paid) == "paid"
    assert [kind for kind, _, _ in store.jobs] == [FORWARD_ORDER]
    assert deliver(uow, "orders/paid", paid) == "duplicate_order"
    assert store.orders[(SHOP, 701)].forward_status is ForwardStatus.PENDING


def test_orders_paid_trusts_its_topic_and_an_authorized_card_is_not_waited_for(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=3)
    # orders/paid first, its payload still saying "pending" (a stale copy): the topic decides.
    late = {**order(702, None, ("TEE", 1, None)), "financial_status": "pending"}
    assert deliver(uow, "orders/paid", late) == "confirmed"
    card = {**order(703, None, ("TEE", 1, None)), "financial_status": "authorized"}
    assert deliver(uow, "orders/create", card) == "confirmed"
    assert [kind for kind, _, _ in store.jobs] == [FORWARD_ORDER, FORWARD_ORDER]


def test_an_unpaid_order_cancelled_gives_its_units_back_and_queues_nothing(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=3)
    boleto = {**order(704, None, ("TEE", 2, None)), "financial_status": "pending"}
    deliver(uow, "orders/create", boleto)
    assert deliver(uow, "orders/cancelled", {"id": 704}) == "cancelled"
    assert store.figures("TEE")["committed"] == 0 and store.jobs == []


def test_a_test_order_releases_its_cart_and_gives_its_units_back(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=3)
    hold = storefront_hold(uow, "TEE", "a", 2)
    trial = {**order(705, "a", ("TEE", 2, hold)), "test": True}
    assert deliver(uow, "orders/create", trial) == "test_order"
    assert store.holds[hold.id].status is HoldStatus.CONFIRMED
    assert store.figures("TEE") == {"on_hand": 3, "reserved": 0, "committed": 0, "available": 3}
    assert deliver(uow, "orders/paid", trial) == "duplicate_order"
    assert store.jobs == []
