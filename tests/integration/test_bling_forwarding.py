"""Orders out: confirmed Shopify orders reach the Bling stand-in exactly once, on SQLite and PG.

The relay runs in this process (``outbox.run_due``) on a FakeClock, which the tests move past
each backoff; Bling is the loopback stand-in, told to lose answers or refuse as each test needs.

Long because each fault Bling can show (lost answers, refusals, 429s, outages, cancellations
mid-forward) is one test on the same forwarding app fixture.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from bling.errors import BLING_TZ
from shopify_app import outbox
from shopify_app.erp import connection, forwarding
from shopify_app.erp.stock_tables import bling_acks
from shopify_app.outbox.kinds import CANCEL_ORDER, FORWARD_ORDER, REVERSE_ORDER
from shopify_app.outbox.tables import outbox_jobs, outbox_pauses
from shopify_app.stock import services
from tests.support.app import TOKEN
from tests.support.bling_app import deliver_bling, drain, make_app, runtime_of, sync
from tests.support.bling_standin import PAYMENT_METHOD_ID, BlingStandIn
from tests.support.clock import FakeClock
from tests.support.forwarding import deliver, forwarding_environ, job, order_row
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.orders import shopify_order


@pytest.fixture
def standin(clock: FakeClock) -> Iterator[BlingStandIn]:
    # Bling's clock is the app's: its webhooks are dated on the same time line as our acks.
    products = [("BZ-TEE", 10), ("BZ-CAP", 4)]
    with BlingStandIn(products=products, rate_limit=None, clock=clock) as server:
        yield server


@pytest.fixture
def forwarding_app(database_url: str, clock: FakeClock, standin: BlingStandIn) -> Iterator[Flask]:
    app = make_app(database_url, clock, **forwarding_environ(standin))
    connection.connect(runtime_of(app), standin.authorize())
    sync(app, standin)
    yield app
    runtime_of(app).engine.dispose()


def test_a_confirmed_order_becomes_one_sales_order_with_its_stock_posted(
    forwarding_app: Flask,
    standin: BlingStandIn,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    payload = shopify_order(
        5001,
        [("BZ-TEE", 2, "89.90"), ("BZ-CAP", 1, "49.90"), ("NOT-IN-BLING-LEDGER", 1, "5.00")],
        email="maria@example.com",
        customer={"first_name": "Maria", "last_name": "Silva", "email": "maria@example.com"},
        total_discounts="10.00",
        total_shipping_price_set={"shop_money": {"amount": "15.00", "currency_code": "BRL"}},
    )
    assert deliver(client, payload, "orders/create")["status"] == "confirmed"
    assert figures(runtime.engine, "BZ-TEE") == {
        "on_hand": 10,
        "reserved": 0,
        "committed": 2,
        "available": 8,
    }

    drain(runtime, clock)

    (sales_order,) = standin.orders_with_store_number("#5001")
    assert sales_order["data"] == "2026-11-27"
    assert {(i["codigo"], i["quantidade"], i["valor"]) for i in sales_order["itens"]} == {
        ("BZ-TEE", 2.0, 89.9),
        ("BZ-CAP", 1.0, 49.9),
    }
    assert {i["produto"]["id"] for i in sales_order["itens"]} == {
        standin.product_id("BZ-TEE"),
        standin.product_id("BZ-CAP"),
    }
    # 2 × 89.90 + 49.90 + 15.00 shipping − 10.00 discount, in one installment
    assert sales_order["total"] == pytest.approx(234.70)
    assert sales_order["parcelas"][0]["valor"] == pytest.approx(234.70)
    assert sales_order["parcelas"][0]["formaPagamento"]["id"] == PAYMENT_METHOD_ID
    contact = standin.contacts[sales_order["contato"]["id"]]
    assert (contact["nome"], contact["email"]) == ("Maria Silva", "maria@example.com")
    assert standin.postings[sales_order["id"]] == 1
    # Bling's own stock moved by the posting…
    assert standin.balance(standin.product_id("BZ-TEE"))[0] == 8
    # …and here the commitment became a smaller on_hand, remembered for later balances.
    assert figures(runtime.engine, "BZ-TEE") == {
        "on_hand": 8,
        "reserved": 0,
        "committed": 0,
        "available": 8,
    }
    assert figures(runtime.engine, "BZ-CAP")["committed"] == 0
    row = order_row(runtime, 5001)
    assert (row.forward_status, row.bling_stock) == ("forwarded", "posted")
    assert row.bling_order_id == sales_order["id"]
    with runtime.engine.connect() as conn:
        acks = {(r.sku, r.quantity) for r in conn.execute(select(bling_acks))}
    assert acks == {("BZ-TEE", 2), ("BZ-CAP", 1)}
    assert job(runtime, FORWARD_ORDER).status == "done"
    assert_ledger_balanced(runtime.engine)

    # The customer's e-mail went to Bling, and to no log line; nor did Bling's tokens.
    logged = capsys.readouterr().out + caplog.text
    assert "maria@example.com" not in logged
    for token in [*standin._access, *standin._refresh_tokens]:
        assert token not in logged

    # Shopify repeats the webhook: nothing new is queued, nothing reaches Bling again.
    calls = len(standin.calls)
    assert deliver(client, payload, "orders/create")["status"] in ("duplicate", "duplicate_order")
    drain(runtime, clock)
    assert len(standin.calls) == calls


def test_an_anonymous_order_goes_to_consumidor_final(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    deliver(
        forwarding_app.test_client(), shopify_order(5002, [("BZ-CAP", 1, "49.90")]), "orders/create"
    )
    drain(runtime, clock)
    (sales_order,) = standin.orders_with_store_number("#5002")
    assert sales_order["contato"]["id"] == 1  # the stand-in's built-in Consumidor Final
    assert len(standin.contacts) == 1  # no contact was created


def test_an_order_for_a_sku_at_zero_on_its_first_sync_is_forwarded(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    """Bling lists only positive balances unless asked: a SKU sold out in Bling when the service
    first synced must still be in the catalog map, or its orders wait for a SKU "not in Bling's
    catalog" until they are dead-lettered."""
    runtime = runtime_of(forwarding_app)
    product = standin.add_product("BZ-LAST-SEASON", 0)
    sync(forwarding_app, standin)
    assert figures(runtime.engine, "BZ-LAST-SEASON")["on_hand"] == 0
    # Shopify sold one anyway (its own count was stale): the order must still reach Bling.
    payload = shopify_order(5010, [("BZ-LAST-SEASON", 1, "59.90")])
    assert deliver(forwarding_app.test_client(), payload, "orders/create")["status"] == "confirmed"

    drain(runtime, clock)

    (sales_order,) = standin.orders_with_store_number("#5010")
    assert [i["produto"]["id"] for i in sales_order["itens"]] == [product]
    assert standin.postings[sales_order["id"]] == 1
    assert order_row(runtime, 5010).forward_status == "forwarded"
    assert job(runtime, FORWARD_ORDER).status == "done"
    assert_ledger_balanced(runtime.engine)


def test_bling_s_event_for_the_posting_itself_does_not_count_the_order_twice(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    """Bling's real timing: its stock event for our lancar-estoque is stamped when Bling posts,
    in whole seconds, and our acknowledgement comes after the 204 is back; its balance already
    excludes the order's units, which must not be subtracted from it again."""
    runtime, engine = runtime_of(forwarding_app), runtime_of(forwarding_app).engine
    tee = standin.product_id("BZ-TEE")
    clock.advance(60.7)  # a minute after the first sync, mid-second
    # Meanwhile Bling emitted an event of its own (10 units), delivered late: it predates the
    # posting by more than the allowance, so the order's units are still taken off it.
    other_change = standin.stock_event(tee, date=clock() - timedelta(seconds=10))
    standin.after_posting = lambda: clock.advance(1.5)  # the answer's way back, our transaction
    payload = shopify_order(5020, [("BZ-TEE", 2, "89.90")])
    assert deliver(forwarding_app.test_client(), payload, "orders/create")["status"] == "confirmed"

    drain(runtime, clock)

    assert figures(engine, "BZ-TEE") == {
        "on_hand": 8,
        "reserved": 0,
        "committed": 0,
        "available": 8,
    }
    (own_event,) = standin.take_webhooks()
    with engine.connect() as conn:
        (acknowledged_at,) = conn.execute(select(bling_acks.c.acknowledged_at)).one()
    dated = datetime.fromisoformat(json.loads(own_event)["date"])
    assert dated < acknowledged_at, "Bling dates its event before we acknowledge"
    assert json.loads(own_event)["data"]["deposito"]["saldoVirtual"] == 8

    assert deliver_bling(forwarding_app, standin, other_change).get_json() == {"status": "applied"}
    assert figures(engine, "BZ-TEE")["on_hand"] == 8  # 10, minus the order posted after it
    assert deliver_bling(forwarding_app, standin, own_event).get_json() == {"status": "applied"}
    assert figures(engine, "BZ-TEE") == {
        "on_hand": 8,  # Bling's 8: the order is not taken off a second time (6, "Esgotado" soon)
        "reserved": 0,
        "committed": 0,
        "available": 8,
    }
    clock.advance(60)
    sync(forwarding_app, standin)  # and the next reconciliation agrees
    assert figures(engine, "BZ-TEE")["on_hand"] == 8
    assert_ledger_balanced(engine)

    # A cancellation reverses the posting: Bling's event for the reversal agrees with the
    # restock (the reversal is no acknowledgement: nothing to allow for).
    clock.advance(60)
    cancelled = {**payload, "cancelled_at": "2026-11-27T12:10:00-03:00"}
    deliver(forwarding_app.test_client(), cancelled, "orders/cancelled")
    drain(runtime, clock)
    assert figures(engine, "BZ-TEE")["on_hand"] == 10
    (reversal_event,) = standin.take_webhooks()
    assert deliver_bling(forwarding_app, standin, reversal_event).get_json() == {
        "status": "applied"
    }
    assert figures(engine, "BZ-TEE")["on_hand"] == 10
    assert_ledger_balanced(engine)


def test_a_lost_answer_to_the_create_is_found_by_the_search_and_not_created_twice(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    deliver(
        forwarding_app.test_client(), shopify_order(5003, [("BZ-TEE", 1, "89.90")]), "orders/create"
    )
    standin.lose_answers_rate = 1.0  # the create is applied, its answer never arrives
    outbox.run_due(runtime)
    assert len(standin.orders_with_store_number("#5003")) == 1
    row = order_row(runtime, 5003)
    assert row.bling_order_id is None and row.forward_status == "pending"
    assert job(runtime, FORWARD_ORDER).status == "pending"

    standin.lose_answers_rate = 0.0
    drain(runtime, clock)
    (sales_order,) = standin.orders_with_store_number("#5003")
    assert standin.postings[sales_order["id"]] == 1
    assert order_row(runtime, 5003).forward_status == "forwarded"
    assert figures(runtime.engine, "BZ-TEE")["committed"] == 0


def test_a_lost_answer_to_the_stock_posting_is_not_posted_twice(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    deliver(
        forwarding_app.test_client(), shopify_order(5004, [("BZ-TEE", 3, "89.90")]), "orders/create"
    )

    original = standin.post_stock

    def post_then_lose(*args: Any, **kw: Any) -> Any:
        standin.lose_answers_rate = 1.0  # the posting is applied, its answer lost
        return original(*args, **kw)

    standin.post_stock = post_then_lose  # type: ignore[method-assign]
    outbox.run_due(runtime)
    standin.post_stock = original  # type: ignore[method-assign]
    standin.lose_answers_rate = 0.0
    (sales_order,) = standin.orders_with_store_number("#5004")
    assert standin.postings[sales_order["id"]] == 1
    assert order_row(runtime, 5004).bling_stock == "requested"
    assert figures(runtime.engine, "BZ-TEE")["committed"] == 3  # not acknowledged yet

    drain(runtime, clock)  # Bling refuses the second posting: it was the first one that counted
    assert standin.postings[sales_order["id"]] == 1
    row = order_row(runtime, 5004)
    assert (row.forward_status, row.bling_stock) == ("forwarded", "posted")
    assert figures(runtime.engine, "BZ-TEE") == {
        "on_hand": 7,
        "reserved": 0,
        "committed": 0,
        "available": 7,
    }
    assert_ledger_balanced(runtime.engine)


def test_an_order_cancelled_before_forwarding_never_reaches_bling(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    payload = shopify_order(5005, [("BZ-TEE", 1, "89.90")])
    deliver(client, payload, "orders/create")
    deliver(client, {**payload, "cancelled_at": "2026-11-27T10:00:00-03:00"}, "orders/cancelled")
    drain(runtime, clock)
    assert standin.orders_with_store_number("#5005") == []
    assert figures(runtime.engine, "BZ-TEE") == {
        "on_hand": 10,
        "reserved": 0,
        "committed": 0,
        "available": 10,
    }
    assert job(runtime, FORWARD_ORDER).status == "done"


def test_an_order_cancelled_after_forwarding_is_reversed_in_bling_and_restocked(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    payload = shopify_order(5006, [("BZ-TEE", 2, "89.90")])
    deliver(client, payload, "orders/create")
    drain(runtime, clock)
    assert figures(runtime.engine, "BZ-TEE")["on_hand"] == 8

    deliver(client, {**payload, "cancelled_at": "2026-11-27T10:00:00-03:00"}, "orders/cancelled")
    assert order_row(runtime, 5006).forward_status == "reversal_pending"
    standin.lose_answers_rate = 1.0  # the reversal is applied, its answer lost: retried safely
    outbox.run_due(runtime)
    standin.lose_answers_rate = 0.0
    drain(runtime, clock)

    (sales_order,) = standin.orders_with_store_number("#5006")
    assert standin.reversals[sales_order["id"]] == 1
    assert standin.balance(standin.product_id("BZ-TEE"))[0] == 10
    row = order_row(runtime, 5006)
    assert (row.forward_status, row.bling_stock) == ("reversed", "reversed")
    assert job(runtime, REVERSE_ORDER).status == "done"
    # …and the warehouse cannot ship it: the sales order is cancelled in Bling, after the
    # reversal, once.
    assert standin.situation_of(sales_order["id"]) == "Cancelado"
    assert row.bling_order == "cancelled" and job(runtime, CANCEL_ORDER).status == "done"
    assert [c[0] for c in standin.situation_changes] == [sales_order["id"]]
    assert figures(runtime.engine, "BZ-TEE") == {
        "on_hand": 10,
        "reserved": 0,
        "committed": 0,
        "available": 10,
    }
    assert_ledger_balanced(runtime.engine)


def test_a_balance_read_while_a_reversal_is_under_way_is_not_restocked_twice(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    """Bling reversed the posting but its answer was lost: until the retry hears it and
    restocks, Bling's balance already has the units back and ``on_hand`` does not. A
    reconciliation or a stock event in that window takes them off the balance, or the restock
    would count them a second time (a unit Bling does not have, for sale)."""
    runtime, engine = runtime_of(forwarding_app), runtime_of(forwarding_app).engine
    client = forwarding_app.test_client()
    payload = shopify_order(5030, [("BZ-TEE", 2, "89.90")])
    deliver(client, payload, "orders/create")
    drain(runtime, clock)
    standin.take_webhooks()  # the posting's event: applied or not, it shows 8
    deliver(client, {**payload, "cancelled_at": "2026-11-27T10:00:00-03:00"}, "orders/cancelled")
    standin.lose_answers_rate = 1.0
    outbox.run_due(runtime)
    standin.lose_answers_rate = 0.0
    assert standin.balance(standin.product_id("BZ-TEE"))[0] == 10
    assert order_row(runtime, 5030).bling_stock == "reversing"
    assert figures(engine, "BZ-TEE")["on_hand"] == 8

    (reversal_event,) = standin.take_webhooks()
    assert json.loads(reversal_event)["data"]["deposito"]["saldoVirtual"] == 10
    assert deliver_bling(forwarding_app, standin, reversal_event).get_json() == {
        "status": "applied"
    }
    assert figures(engine, "BZ-TEE")["on_hand"] == 8, "Bling's 10, minus the 2 being reversed"
    clock.advance(60)
    sync(forwarding_app, standin)  # the worker's reconciliation, inside the window
    assert figures(engine, "BZ-TEE")["on_hand"] == 8

    drain(runtime, clock)  # the retry: Bling says nothing is left to reverse; the restock
    assert order_row(runtime, 5030).forward_status == "reversed"
    assert standin.reversals[standin.orders_with_store_number("#5030")[0]["id"]] == 1
    assert figures(engine, "BZ-TEE") == {
        "on_hand": 10,  # not 12
        "reserved": 0,
        "committed": 0,
        "available": 10,
    }
    clock.advance(60)
    sync(forwarding_app, standin)
    assert figures(engine, "BZ-TEE")["on_hand"] == 10
    assert_ledger_balanced(engine)


def test_a_cancellation_during_the_forward_reverses_what_the_forward_posted(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    payload = shopify_order(5007, [("BZ-CAP", 1, "49.90")])
    deliver(client, payload, "orders/create")

    original = standin.post_stock

    def cancel_meanwhile(*args: Any, **kw: Any) -> Any:
        # Shopify's cancellation lands while the worker is inside Bling (outside the stand-in's
        # lock, from another thread, as the web process would).
        import threading

        done = threading.Event()

        def cancel() -> None:
            deliver(
                client, {**payload, "cancelled_at": "2026-11-27T10:00:00-03:00"}, "orders/cancelled"
            )
            done.set()

        threading.Thread(target=cancel).start()
        standin._lock.release()
        try:
            assert done.wait(10)
        finally:
            standin._lock.acquire()
        return original(*args, **kw)

    standin.post_stock = cancel_meanwhile  # type: ignore[method-assign]
    outbox.run_due(runtime)
    standin.post_stock = original  # type: ignore[method-assign]
    drain(runtime, clock)

    (sales_order,) = standin.orders_with_store_number("#5007")
    assert standin.postings[sales_order["id"]] == 1
    assert standin.reversals[sales_order["id"]] == 1
    assert standin.situation_of(sales_order["id"]) == "Cancelado"
    assert standin.balance(standin.product_id("BZ-CAP"))[0] == 4
    assert order_row(runtime, 5007).forward_status == "reversed"
    # cancelled before any acknowledgement: the units came back once, through the cancellation
    assert figures(runtime.engine, "BZ-CAP") == {
        "on_hand": 4,
        "reserved": 0,
        "committed": 0,
        "available": 4,
    }
    assert_ledger_balanced(runtime.engine)


def test_the_daily_limit_pauses_forwarding_without_spending_attempts(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    deliver(
        forwarding_app.test_client(), shopify_order(5008, [("BZ-TEE", 1, "89.90")]), "orders/create"
    )
    standin.daily_limit = standin.used_today  # today's budget is spent
    outbox.run_due(runtime)
    pending = job(runtime, FORWARD_ORDER)
    assert (pending.status, pending.attempts) == ("pending", 0)
    with runtime.engine.connect() as conn:
        pause = conn.execute(select(outbox_pauses)).one()
    assert pause.kind == FORWARD_ORDER and "daily" in pause.reason
    assert standin.orders_with_store_number("#5008") == []

    standin.daily_limit = None  # a new day in Bling: the pause lasts until its midnight
    assert pause.until.astimezone(BLING_TZ).time() == time(0)
    clock.now = pause.until + timedelta(seconds=1)
    drain(runtime, clock)
    assert len(standin.orders_with_store_number("#5008")) == 1
    assert order_row(runtime, 5008).forward_status == "forwarded"


def test_a_long_outage_spends_no_attempts_and_the_backlog_is_due_when_bling_returns(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    """Three hours of Bling down (first refusing connections, then answering 503): the kind
    waits (probing every WAIT_FOR_BLING), the jobs keep their place and attempts, and the first
    relay after Bling is back forwards the whole backlog, instead of each job waiting out a
    backoff that grew during the outage."""
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    standin.refuse_connections()
    for order_id in range(6001, 6004):
        deliver(client, shopify_order(order_id, [("BZ-TEE", 1, "89.90")]), "orders/create")
    reasons = []
    for down in ("refused", "503"):  # each look costs the client's own retries, so only two
        if down == "503":
            standin.accept_connections()
            standin.answer_unavailable()
        assert outbox.run_due(runtime, batch=50) == 1, "one job tries, the others wait"
        with runtime.engine.connect() as conn:
            reasons.append(conn.execute(select(outbox_pauses.c.reason)).scalar_one())
        clock.advance(5400)
    with runtime.engine.connect() as conn:
        jobs = conn.execute(select(outbox_jobs).where(outbox_jobs.c.kind == FORWARD_ORDER)).all()
    assert [(j.status, j.attempts) for j in jobs] == [("pending", 0)] * 3
    assert "cannot connect" in reasons[0] and "503" in reasons[1], reasons
    assert all(r.startswith("Bling is down") for r in reasons)

    standin.answer_unavailable(False)
    clock.advance(forwarding.WAIT_FOR_BLING.total_seconds())
    outbox.run_due(runtime, batch=50)
    for order_id in range(6001, 6004):
        assert len(standin.orders_with_store_number(f"#{order_id}")) == 1
        assert order_row(runtime, order_id).forward_status == "forwarded"


def test_forwarding_waits_for_a_payment_method_and_for_the_catalog(
    database_url: str, clock: FakeClock, standin: BlingStandIn
) -> None:
    environ = forwarding_environ(standin)
    del environ["BLING_PAYMENT_METHOD_ID"]
    app = make_app(database_url, clock, **environ)
    runtime = runtime_of(app)
    try:
        connection.connect(runtime, standin.authorize())  # reads the account's company id
        sent = len(standin.calls)
        services.set_on_hand(runtime.uow(), "BZ-TEE", 10, reference="count")  # no sync yet
        deliver(app.test_client(), shopify_order(5009, [("BZ-TEE", 1, "89.90")]), "orders/create")
        # No payment method: the kind waits, no attempt spent, nothing sent to Bling.
        outbox.run_due(runtime)
        assert job(runtime, FORWARD_ORDER).attempts == 0
        with runtime.engine.connect() as conn:
            assert (
                "BLING_PAYMENT_METHOD_ID" in conn.execute(select(outbox_pauses.c.reason)).scalar()
            )
        assert standin.calls[sent:] == []
    finally:
        runtime.engine.dispose()

    app = make_app(database_url, clock, **forwarding_environ(standin))
    runtime = runtime_of(app)
    try:
        clock.advance(3600)
        outbox.run_due(runtime)  # the SKU is not mapped to a Bling product yet (no sync)
        waiting = job(runtime, FORWARD_ORDER)
        assert waiting.status == "pending" and "bling sync" in waiting.last_error
        sync(app, standin)
        drain(runtime, clock)
        assert len(standin.orders_with_store_number("#5009")) == 1
    finally:
        runtime.engine.dispose()


def test_holds_confirmed_through_the_api_are_sold_once_when_the_order_arrives(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    """A storefront that confirms with POST /stock/confirm (order_id = Shopify's id) and then
    Shopify's orders/create for the same cart: one sale, forwarded once, not two."""
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    hold = client.post(
        "/stock/BZ-TEE/reserve", json={"quantity": 2, "holder": "cart-early"}, headers=auth
    )
    assert hold.status_code == 200
    confirmed = client.post(
        "/stock/confirm",
        json={"reservation_id": hold.get_json()["reservation_id"], "order_id": "5010"},
        headers=auth,
    )
    assert confirmed.status_code == 200
    assert figures(runtime.engine, "BZ-TEE")["committed"] == 2

    payload = shopify_order(5010, [("BZ-TEE", 3, "89.90")], cart_token="cart-early")
    deliver(client, payload, "orders/create")
    assert figures(runtime.engine, "BZ-TEE") == {
        "on_hand": 10,
        "reserved": 0,
        "committed": 3,  # the 2 confirmed early, and 1 more from available: not 5
        "available": 7,
    }
    drain(runtime, clock)
    (sales_order,) = standin.orders_with_store_number("#5010")
    assert sales_order["itens"][0]["quantidade"] == 3.0
    assert figures(runtime.engine, "BZ-TEE") == {
        "on_hand": 7,
        "reserved": 0,
        "committed": 0,
        "available": 7,
    }
    assert_ledger_balanced(runtime.engine)
