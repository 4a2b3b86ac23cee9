"""The order's life with Bling past the sale, against the Bling stand-in on SQLite and PG: a
cancelled order's sales order moves to "Cancelado" (situations discovered per account, after the
stock reversal, once, through lost answers and refusals), unpaid and test orders, and a sales
order Bling's own Shopify integration imported under the same number.

The relay runs in this process on a FakeClock (tests/support/forwarding.py); the same steps run
over fakes in tests/unit/test_order_life_use_cases.py and under faults and killed workers in
tests/e2e/test_bling_forwarding_chaos.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from bling import orders as bling_orders
from bling.situations import CANCELLED, SituationNotFound, sales_order_situation
from shopify_app import outbox
from shopify_app.erp import connection
from shopify_app.erp import forwarding as bling_forwarding
from shopify_app.outbox.kinds import CANCEL_ORDER, FORWARD_ORDER, REVERSE_ORDER
from tests.support.bling_app import direct_client, drain, make_app, runtime_of, sync
from tests.support.bling_standin import CANCELLED_SITUATION, PAYMENT_METHOD_ID, BlingStandIn
from tests.support.clock import FakeClock
from tests.support.forwarding import deliver, forwarding_environ, job, jobs, order_row
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.orders import shopify_order

CANCELLED_AT = "2026-11-27T10:00:00-03:00"
#: The channel Bling's own Shopify integration imports into (the stand-in's import_order).
BLING_SHOPIFY_CHANNEL = 204_000_001


@pytest.fixture
def standin() -> Iterator[BlingStandIn]:
    with BlingStandIn(products=[("BZ-TEE", 10), ("BZ-CAP", 4)], rate_limit=None) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_situations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's stand-in is another Bling account (a port may come back with other ids)."""
    monkeypatch.setattr(bling_forwarding, "_situations", {})


def forwarding_app_of(
    database_url: str, clock: FakeClock, standin: BlingStandIn, **env: str
) -> Flask:
    app = make_app(database_url, clock, **forwarding_environ(standin, **env))
    connection.connect(runtime_of(app), standin.authorize())
    sync(app, standin)
    return app


@pytest.fixture
def forwarding_app(database_url: str, clock: FakeClock, standin: BlingStandIn) -> Iterator[Flask]:
    app = forwarding_app_of(database_url, clock, standin)
    yield app
    runtime_of(app).engine.dispose()


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def outbox_show(app: Flask) -> str:
    shown = app.test_cli_runner().invoke(args=["outbox", "show"])
    assert shown.exit_code == 0, shown.output
    return shown.output


# --- situations and "ours", in bling/ ------------------------------------------------------------


def test_the_cancelled_situation_is_discovered_in_each_account(standin: BlingStandIn) -> None:
    with direct_client(standin) as client:
        assert sales_order_situation(client, CANCELLED).id == CANCELLED_SITUATION, (
            "the standard one, not the account's own 'Cancelado' derived from it"
        )
        standin.sales_situations[2]["id"] = 448  # another account numbers it otherwise
        assert sales_order_situation(client, "cancelado").id == 448
        standin.sales_situations = [s for s in standin.sales_situations if s["idHerdado"] == 0]
        standin.sales_situations[2]["nome"] = "Anulado"
        with pytest.raises(SituationNotFound, match="Cancelado"):
            sales_order_situation(client, CANCELLED)
    assert [c.path for c in standin.calls[:2]] == ["/situacoes/modulos", "/situacoes/modulos/98310"]


def test_only_an_order_carrying_our_marker_is_ours_whatever_its_channel(
    standin: BlingStandIn,
) -> None:
    product = standin.product_id("BZ-TEE")
    line = bling_orders.OrderLine(product, 1, Decimal("10.00"), "Camiseta", sku="BZ-TEE")
    ours = bling_orders.SalesOrderInput(
        "#7001",
        bling_orders.date(2026, 11, 27),
        1,
        [line],
        PAYMENT_METHOD_ID,
        store_id=BLING_SHOPIFY_CHANNEL,
        internal_notes="Shopify order 7001 (shop) — conferido",
    )
    imported = standin.import_order("#7002", [("BZ-TEE", 1)])
    with direct_client(standin) as client:
        made = bling_orders.create_sales_order(client, ours).id
        found = bling_orders.find_own_sales_order(client, "#7001", "Shopify order 7001 (shop)")
        assert found is not None and found.id == made
        with pytest.raises(bling_orders.NotOurSalesOrder) as refused:
            bling_orders.find_own_sales_order(client, "#7002", "Shopify order 7002 (shop)")
        assert refused.value.ids == (imported,)
        assert bling_orders.find_own_sales_order(client, "#7003", "Shopify order 7003") is None
        # Another store of the same integration (its own marker) may have a "#7001" too.
        theirs = replace(
            ours, store_id=None, internal_notes="Shopify order 42 (other.myshopify.com)"
        )
        bling_orders.create_sales_order(client, replace(theirs, store_number="#7004"))
        kin = bling_forwarding.KIN
        assert (
            bling_orders.find_own_sales_order(client, "#7004", "Shopify order 7004 (shop)", kin=kin)
            is None
        )
        with pytest.raises(bling_orders.NotOurSalesOrder):
            bling_orders.find_own_sales_order(client, "#7004", "Shopify order 7004 (shop)")


# --- cancellation (point 4) ----------------------------------------------------------------------


def test_a_cancellation_that_lands_while_bling_creates_the_order_cancels_it_unposted(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    payload = shopify_order(5101, [("BZ-TEE", 2, "89.90")])
    deliver(client, payload, "orders/create")
    original = standin.create_order

    def cancel_meanwhile(*args: Any, **kw: Any) -> Any:
        done = threading.Event()

        def cancel() -> None:
            deliver(client, {**payload, "cancelled_at": CANCELLED_AT}, "orders/cancelled")
            done.set()

        threading.Thread(target=cancel).start()
        standin._lock.release()  # the web process answers while Bling works on the create
        try:
            assert done.wait(10)
        finally:
            standin._lock.acquire()
        return original(*args, **kw)

    standin.create_order = cancel_meanwhile  # type: ignore[method-assign]
    outbox.run_due(runtime)
    standin.create_order = original  # type: ignore[method-assign]
    drain(runtime, clock)

    (sales_order,) = standin.orders_with_store_number("#5101")
    assert standin.postings[sales_order["id"]] == 0, "no posting for a cancelled order"
    assert standin.situation_of(sales_order["id"]) == "Cancelado"
    row = order_row(runtime, 5101)
    assert (row.forward_status, row.bling_order) == ("cancelled", "cancelled")
    assert jobs(runtime) == [(FORWARD_ORDER, "done"), (CANCEL_ORDER, "done")]
    assert figures(runtime.engine, "BZ-TEE")["committed"] == 0
    assert_ledger_balanced(runtime.engine)


def test_lost_answers_and_500s_move_the_sales_order_once_and_outbox_show_tells(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    payload = shopify_order(5102, [("BZ-CAP", 1, "49.90")])
    deliver(client, payload, "orders/create")
    drain(runtime, clock)
    deliver(client, {**payload, "cancelled_at": CANCELLED_AT}, "orders/cancelled")
    outbox.run_due(runtime, batch=1)  # the reversal, which queues the cancellation
    shown = outbox_show(forwarding_app)
    assert CANCEL_ORDER in shown and "1 cancelled whose Bling sales order" in shown

    standin.lose_answers_rate = 1.0  # Bling moves it; the answers never arrive
    outbox.run_due(runtime)
    standin.lose_answers_rate = 0.0
    assert job(runtime, CANCEL_ORDER).status == "pending"
    standin.fail_next(2)
    drain(runtime, clock)

    (sales_order,) = standin.orders_with_store_number("#5102")
    assert standin.situation_of(sales_order["id"]) == "Cancelado"
    assert [c for c in standin.situation_changes if c[0] == sales_order["id"]] == [
        (sales_order["id"], 6, CANCELLED_SITUATION)
    ]
    assert job(runtime, CANCEL_ORDER).status == "done"
    assert "0 cancelled whose Bling sales order" in outbox_show(forwarding_app)


def test_an_account_whose_cancelling_reverses_stock_is_not_restocked_twice(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    standin.cancelling_reverses_stock = True  # the account's transition "estornar estoque"
    payload = shopify_order(5103, [("BZ-TEE", 3, "89.90")])
    deliver(client, payload, "orders/create")
    drain(runtime, clock)
    assert standin.balance(standin.product_id("BZ-TEE"))[0] == 7
    deliver(client, {**payload, "cancelled_at": CANCELLED_AT}, "orders/cancelled")
    drain(runtime, clock)

    (sales_order,) = standin.orders_with_store_number("#5103")
    assert standin.reversals[sales_order["id"]] == 1, "our reversal came first"
    assert standin.situation_reversals[sales_order["id"]] == 0
    assert standin.balance(standin.product_id("BZ-TEE"))[0] == 10
    assert figures(runtime.engine, "BZ-TEE")["on_hand"] == 10
    assert [kind for kind, _ in jobs(runtime)] == [FORWARD_ORDER, REVERSE_ORDER, CANCEL_ORDER]


def test_a_refused_cancellation_is_recorded_counted_shown_and_can_be_retried(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    payload = shopify_order(5104, [("BZ-TEE", 1, "89.90")])
    deliver(client, payload, "orders/create")
    drain(runtime, clock)
    (sales_order,) = standin.orders_with_store_number("#5104")
    standin.refuse_situation_changes(sales_order["id"])  # invoiced in Bling meanwhile
    refused = counted("bazico_bling_cancellations_total", outcome="refused")

    deliver(client, {**payload, "cancelled_at": CANCELLED_AT}, "orders/cancelled")
    drain(runtime, clock)
    dead = job(runtime, CANCEL_ORDER)
    assert dead.status == "dead" and "refused to cancel" in dead.last_error
    assert order_row(runtime, 5104).bling_order == "cancel_refused"
    assert counted("bazico_bling_cancellations_total", outcome="refused") == refused + 1
    shown = outbox_show(forwarding_app)
    assert "Bling refused to cancel" in shown and f"#5104 bling_order={sales_order['id']}" in shown
    assert standin.situation_of(sales_order["id"]) == "Em aberto"

    standin._frozen_orders.clear()  # someone settled it in Bling
    retried = forwarding_app.test_cli_runner().invoke(args=["outbox", "retry", str(dead.id)])
    assert retried.exit_code == 0, retried.output
    drain(runtime, clock)
    assert standin.situation_of(sales_order["id"]) == "Cancelado"
    assert order_row(runtime, 5104).bling_order == "cancelled"


def test_the_accounts_own_situation_ids_are_used(
    database_url: str, clock: FakeClock, standin: BlingStandIn
) -> None:
    standin.sales_situations[2]["id"] = 448  # "Cancelado" in this account
    app = forwarding_app_of(database_url, clock, standin)
    runtime = runtime_of(app)
    try:
        client = app.test_client()
        payload = shopify_order(5105, [("BZ-CAP", 1, "49.90")])
        deliver(client, payload, "orders/create")
        drain(runtime, clock)
        deliver(client, {**payload, "cancelled_at": CANCELLED_AT}, "orders/cancelled")
        drain(runtime, clock)
        (sales_order,) = standin.orders_with_store_number("#5105")
        assert standin.sales_orders[sales_order["id"]]["situacao"]["id"] == 448
        assert len(standin.calls_to("GET", "/situacoes/modulos")) == 1
    finally:
        runtime.engine.dispose()


# --- payment (point 5) ---------------------------------------------------------------------------


def test_an_unpaid_order_reaches_bling_when_paid_and_not_before(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    boleto = shopify_order(5201, [("BZ-TEE", 2, "89.90")], financial_status="pending")
    assert deliver(client, boleto, "orders/create")["status"] == "awaiting_payment"
    drain(runtime, clock)
    assert standin.orders_with_store_number("#5201") == []
    assert figures(runtime.engine, "BZ-TEE")["committed"] == 2, "still sold here"
    assert order_row(runtime, 5201).forward_status == "awaiting_payment"
    assert "1 awaiting payment" in outbox_show(forwarding_app)

    paid = {**boleto, "financial_status": "paid"}
    assert deliver(client, paid, "orders/paid")["status"] == "paid"
    drain(runtime, clock)
    (sales_order,) = standin.orders_with_store_number("#5201")
    assert standin.postings[sales_order["id"]] == 1
    assert order_row(runtime, 5201).forward_status == "forwarded"
    assert figures(runtime.engine, "BZ-TEE") == {
        "on_hand": 8,
        "reserved": 0,
        "committed": 0,
        "available": 8,
    }
    assert_ledger_balanced(runtime.engine)


def test_an_unpaid_order_cancelled_gives_its_units_back_and_never_reaches_bling(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    pix = shopify_order(5202, [("BZ-CAP", 1, "49.90")], financial_status="pending")
    deliver(client, pix, "orders/create")
    deliver(client, {**pix, "cancelled_at": CANCELLED_AT}, "orders/cancelled")  # expired
    drain(runtime, clock)
    assert figures(runtime.engine, "BZ-CAP")["committed"] == 0
    assert standin.calls_to("POST", "/pedidos/vendas") == [] and jobs(runtime) == []
    assert deliver(client, {**pix, "financial_status": "paid"}, "orders/paid")["status"] == (
        "duplicate_order"
    )
    assert jobs(runtime) == []


def test_a_test_order_never_reaches_bling(
    forwarding_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(forwarding_app)
    client = forwarding_app.test_client()
    trial = shopify_order(5203, [("BZ-TEE", 1, "89.90")], test=True, financial_status="paid")
    assert deliver(client, trial, "orders/create")["status"] == "test_order"
    assert deliver(client, trial, "orders/paid")["status"] == "duplicate_order"
    drain(runtime, clock)
    assert standin.orders_with_store_number("#5203") == [] and jobs(runtime) == []
    assert figures(runtime.engine, "BZ-TEE")["available"] == 10
    assert_ledger_balanced(runtime.engine)


# --- Bling's own Shopify import (point 10) -------------------------------------------------------


@pytest.mark.parametrize("channel", ["unset", "the import's"])
def test_an_order_bling_imported_itself_is_not_adopted_nor_posted_twice(
    database_url: str, clock: FakeClock, standin: BlingStandIn, channel: str
) -> None:
    """Refused whether or not BLING_STORE_ID names the channel Bling's import uses: "ours" is
    the marker in the internal notes, not the channel."""
    env = {"BLING_STORE_ID": str(BLING_SHOPIFY_CHANNEL)} if channel != "unset" else {}
    app = forwarding_app_of(database_url, clock, standin, **env)
    runtime = runtime_of(app)
    try:
        client = app.test_client()
        imported = standin.import_order("#5301", [("BZ-TEE", 1)])  # and posted its stock
        foreign = counted("bazico_bling_foreign_sales_orders_total")
        deliver(client, shopify_order(5301, [("BZ-TEE", 1, "89.90")]), "orders/create")
        drain(runtime, clock)

        dead = job(runtime, FORWARD_ORDER)
        assert dead.status == "dead" and "did not create" in dead.last_error
        assert [o["id"] for o in standin.orders_with_store_number("#5301")] == [imported]
        assert standin.postings[imported] == 1, "Bling's own posting only"
        assert standin.balance(standin.product_id("BZ-TEE"))[0] == 9
        row = order_row(runtime, 5301)
        assert (row.forward_status, row.bling_order, row.bling_order_id) == (
            "pending",
            "foreign",
            None,
        )
        assert figures(runtime.engine, "BZ-TEE")["committed"] == 1, "the safe side"
        assert counted("bazico_bling_foreign_sales_orders_total") == foreign + 1
        shown = outbox_show(app)
        assert "not forwarded: Bling has a sales order" in shown and "#5301" in shown

        # The merchant turns the import off and deletes that order in Bling (its stock back),
        # then re-queues the job: ours is made and posted once.
        standin.reverse_stock({}, b"", imported)
        del standin.sales_orders[imported]
        retried = app.test_cli_runner().invoke(args=["outbox", "retry", str(dead.id)])
        assert retried.exit_code == 0, retried.output
        drain(runtime, clock)
        (ours,) = standin.orders_with_store_number("#5301")
        assert "Shopify order 5301" in ours["observacoesInternas"]
        assert standin.postings[ours["id"]] == 1
        assert order_row(runtime, 5301).bling_order == "created"
        assert figures(runtime.engine, "BZ-TEE") == {
            "on_hand": 9,
            "reserved": 0,
            "committed": 0,
            "available": 9,
        }
    finally:
        runtime.engine.dispose()
