"""Stock in from Bling: the full sync against the loopback stand-in, on SQLite and PostgreSQL.

The race test interleaves for real: the stand-in answers the balance request only after the order
forwarder has acknowledged a sale, so the balance the sync applies was read before that posting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from shopify_app.erp import connection
from shopify_app.erp.stock_sync import (
    reconcile,
    sellable_units,
)
from shopify_app.erp.stock_tables import bling_acks, bling_products
from shopify_app.runtime import Runtime
from shopify_app.stock.tables import stock_movements
from shopify_app.worker import run_worker
from tests.support.app import ApiClient
from tests.support.bling_app import (
    GatedStandIn,
    acknowledge,
    bling_environ,
    deliver_bling,
    make_app,
    runtime_of,
    sell,
    sync,
)
from tests.support.bling_standin import BlingStandIn
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures

# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def standin() -> Iterator[GatedStandIn]:
    with GatedStandIn(rate_limit=None) as server:
        yield server


@pytest.fixture
def bling_app(database_url: str, clock: FakeClock, standin: BlingStandIn) -> Iterator[Flask]:
    app = make_app(database_url, clock, **bling_environ(standin))
    yield app
    runtime_of(app).engine.dispose()


# --- the acceptance test -------------------------------------------------------------------


def test_bling_sync_over_several_pages_fills_on_hand_for_every_sku(
    database_url: str, clock: FakeClock
) -> None:
    # Bling's real limit (3 requests/s) is on, and the app's own shared limiter must respect it.
    stock = {f"BZ-{n:03d}": float(n % 7) for n in range(130)}  # two pages of 100, zeros included
    stock["BZ-FRACTION"] = 2.75
    with BlingStandIn(products=list(stock.items())) as standin:
        app = make_app(database_url, clock, **bling_environ(standin))
        try:
            connection.connect(runtime_of(app), standin.authorize())
            result = app.test_cli_runner().invoke(args=["bling", "sync"])
            assert result.exit_code == 0, result.output
            assert f"products: {len(stock)}, SKUs updated: " in result.output
            assert f"created: {len(stock)}" in result.output
            engine = runtime_of(app).engine
            for sku, balance in stock.items():
                assert figures(engine, sku)["on_hand"] == sellable_units(balance), sku
            assert figures(engine, "BZ-FRACTION")["on_hand"] == 2
            walks: dict[str, list[str]] = {}
            for call in standin.calls_to("GET", "/produtos"):
                walks.setdefault(call.query["filtroSaldoEstoque"][0], []).append(
                    call.query["pagina"][0]
                )
            # Positive balances: the third, empty page ends the walk; then the 19 at zero; no
            # product is negative.
            assert walks == {"1": ["1", "2", "3"], "0": ["1", "2"], "2": ["1"]}
            assert standin.rate_violations == 0
            assert_ledger_balanced(engine)

            again = app.test_cli_runner().invoke(args=["bling", "sync"])
            assert again.exit_code == 0, again.output
            assert "SKUs updated: 0, unchanged: 131, created: 0" in again.output
        finally:
            runtime_of(app).engine.dispose()


def test_bling_sync_without_a_connection_says_so(database_url: str, clock: FakeClock) -> None:
    app = make_app(database_url, clock)  # Bling off
    try:
        result = app.test_cli_runner().invoke(args=["bling", "sync"])
        assert result.exit_code != 0
        assert "Bling is off" in result.output
        assert reconcile(runtime_of(app)) is None  # the worker's job stays quiet
    finally:
        runtime_of(app).engine.dispose()


# --- what a sync does to the ledger --------------------------------------------------------


def test_sync_sets_on_hand_and_leaves_holds_and_unknown_skus_alone(
    bling_app: Flask, standin: GatedStandIn
) -> None:
    api = bling_app.test_client()
    auth = {"Authorization": "Bearer test-stock-token"}
    for sku, on_hand in (("HELD", 3), ("LOCAL-ONLY", 9)):
        assert api.put(f"/stock/{sku}", json={"on_hand": on_hand}, headers=auth).status_code == 200
    assert api.post("/stock/HELD/reserve", json={"quantity": 2}, headers=auth).status_code == 200
    standin.add_product("HELD", 10)
    standin.add_product("NEG", -4)
    standin.add_product("FRAC", 0.9999999999)  # a float for 1, not less than 1

    report = sync(bling_app, standin)

    engine = runtime_of(bling_app).engine
    assert figures(engine, "HELD") == {"on_hand": 10, "reserved": 2, "committed": 0, "available": 8}
    assert figures(engine, "NEG")["on_hand"] == 0
    assert figures(engine, "FRAC")["on_hand"] == 1
    assert figures(engine, "LOCAL-ONLY")["on_hand"] == 9  # Bling does not list it: left alone
    assert (report.products, report.updated, report.unchanged, report.created) == (3, 2, 1, 2)
    assert_ledger_balanced(engine)


def test_a_product_whose_sku_changed_in_bling_is_mapped_to_the_new_sku(
    bling_app: Flask, standin: GatedStandIn
) -> None:
    product = standin.add_product("OLD-SKU", 4)
    sync(bling_app, standin)
    standin.products[product].codigo = "NEW-SKU"
    sync(bling_app, standin)
    with runtime_of(bling_app).engine.connect() as conn:
        mapped = conn.execute(select(bling_products.c.sku, bling_products.c.product_id)).all()
    assert mapped == [("NEW-SKU", product)]
    assert figures(runtime_of(bling_app).engine, "NEW-SKU")["on_hand"] == 4


# --- sold out in Bling ---------------------------------------------------------------------
# Bling lists only positive balances unless asked (filtroSaldoEstoque defaults to 1), and the
# stand-in speaks that default: these tests fail against a catalog walk that passes nothing.


def test_a_sku_at_zero_on_the_first_sync_is_known_with_on_hand_zero(
    bling_app: Flask, standin: GatedStandIn, clock: FakeClock
) -> None:
    engine = runtime_of(bling_app).engine
    ids = {
        "BORN-SOLD-OUT": standin.add_product("BORN-SOLD-OUT", 0),
        "BELOW-ZERO": standin.add_product("BELOW-ZERO", -3),
        "IN-STOCK": standin.add_product("IN-STOCK", 4),
    }

    report = sync(bling_app, standin)

    assert (report.products, report.created) == (3, 3)
    assert figures(engine, "BORN-SOLD-OUT") == {
        "on_hand": 0,
        "reserved": 0,
        "committed": 0,
        "available": 0,
    }
    assert figures(engine, "BELOW-ZERO")["on_hand"] == 0
    assert figures(engine, "IN-STOCK")["on_hand"] == 4
    with engine.connect() as conn:
        mapped = dict(conn.execute(select(bling_products.c.sku, bling_products.c.product_id)).all())
    assert mapped == ids  # known: its orders find their Bling product, its webhooks their SKU

    # Restocked in Bling: the stock event names a product the service now knows.
    standin.set_stock(ids["BORN-SOLD-OUT"], 6)
    raw = standin.stock_event(ids["BORN-SOLD-OUT"], date=clock() + timedelta(seconds=10))
    assert deliver_bling(bling_app, standin, raw).get_json() == {"status": "applied"}
    assert figures(engine, "BORN-SOLD-OUT")["on_hand"] == 6
    assert_ledger_balanced(engine)


def test_skus_that_sell_out_in_bling_are_unsellable_after_the_next_sync(
    bling_app: Flask, standin: GatedStandIn, clock: FakeClock
) -> None:
    engine = runtime_of(bling_app).engine
    api = ApiClient(bling_app.test_client())
    skus = [f"ELSEWHERE-{n:02d}" for n in range(11)]
    ids = {sku: standin.add_product(sku, 5 + n) for n, sku in enumerate(skus)}
    sync(bling_app, standin)
    assert [figures(engine, sku)["available"] for sku in skus] == [5 + n for n in range(11)]

    # Another channel (the shop's counter, a marketplace) sells them all in Bling; one goes
    # below zero. No webhook reaches the service: the reconciliation is the safety net.
    for sku in skus[:10]:
        standin.set_stock(ids[sku], 0)
    standin.set_stock(ids[skus[10]], -2)
    clock.advance(900)

    report = sync(bling_app, standin)

    assert (report.products, report.updated) == (11, 11)
    for sku in skus:
        assert figures(engine, sku) == {
            "on_hand": 0,
            "reserved": 0,
            "committed": 0,
            "available": 0,
        }, sku
        refused = api.post(f"/stock/{sku}/reserve", json={"quantity": 1})
        assert refused.status_code == 409, sku
        assert refused.get_json()["error"] == "out_of_stock"
    assert_ledger_balanced(engine)


# --- race-free application -----------------------------------------------------------------


def test_a_balance_read_before_an_acknowledged_order_never_resurrects_the_unit(
    bling_app: Flask, standin: GatedStandIn, clock: FakeClock
) -> None:
    runtime, engine = runtime_of(bling_app), runtime_of(bling_app).engine
    product = standin.add_product("RACE", 5)
    sync(bling_app, standin)
    sell(bling_app.test_client(), 1001, "RACE")
    assert figures(engine, "RACE") == {"on_hand": 5, "reserved": 0, "committed": 1, "available": 4}

    standin.gate_armed = True
    reports: list[Any] = []
    syncing = threading.Thread(target=lambda: reports.append(sync(bling_app, standin)))
    syncing.start()
    try:
        # Bling has read RACE at 5 (T); its answer is on the way, slowly.
        assert standin.balance_read.wait(10)
        clock.advance(1)
        standin.set_stock(product, 4)  # the forwarder's lancar-estoque posts the sale in Bling
        acknowledge(runtime, 1001, "RACE")  # …and the ledger takes it off on_hand
        assert figures(engine, "RACE")["on_hand"] == 4
    finally:
        standin.release.set()
        syncing.join(10)
    assert reports, "the sync failed; see the thread's traceback above"

    # The stale 5 minus the acknowledgement made after T: the sold unit stays sold.
    assert figures(engine, "RACE") == {"on_hand": 4, "reserved": 0, "committed": 0, "available": 4}
    assert reports[0].unchanged == 1
    assert_ledger_balanced(engine)

    clock.advance(1)
    assert sync(bling_app, standin).unchanged == 1  # a fresh read agrees: 4, nothing after it
    assert figures(engine, "RACE")["on_hand"] == 4
    assert_ledger_balanced(engine)


def test_acknowledgements_before_the_read_are_not_subtracted_again(
    bling_app: Flask, standin: GatedStandIn, clock: FakeClock
) -> None:
    runtime, engine = runtime_of(bling_app), runtime_of(bling_app).engine
    product = standin.add_product("CALM", 5)
    sync(bling_app, standin)
    sell(bling_app.test_client(), 1002, "CALM")
    standin.set_stock(product, 4)
    acknowledge(runtime, 1002, "CALM")
    clock.advance(1)
    standin.set_stock(product, 7)  # a delivery arrived in Bling's warehouse
    sync(bling_app, standin)
    assert figures(engine, "CALM")["on_hand"] == 7
    with engine.connect() as conn:
        acks = conn.execute(select(bling_acks.c.sku, bling_acks.c.quantity)).all()
        reasons = conn.execute(
            select(stock_movements.c.reason).where(stock_movements.c.sku == "CALM")
        ).scalars()
        assert acks == [("CALM", 1)]
        assert list(reasons) == ["sync", "commit", "acknowledge", "sync"]
    assert_ledger_balanced(engine)


def test_the_worker_reconciles_once_bling_is_connected(
    bling_app: Flask, standin: GatedStandIn
) -> None:
    runtime = runtime_of(bling_app)
    settings = replace(runtime.settings, worker_bling_sync_seconds=0.05)
    fast = Runtime(settings, runtime.engine, runtime.clock)
    standin.add_product("WORKER", 6)
    assert reconcile(fast) is None  # configured, not connected yet: quietly nothing
    connection.connect(runtime, standin.authorize())

    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(fast, stop))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _has_sku(runtime, "WORKER"):
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(5)
    assert figures(runtime.engine, "WORKER")["on_hand"] == 6
    assert_ledger_balanced(runtime.engine)


def _has_sku(runtime: Runtime, sku: str) -> bool:
    with runtime.uow(read_only=True) as uow:
        return bool(uow.stock.levels(sku))
