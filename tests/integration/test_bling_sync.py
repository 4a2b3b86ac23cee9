"""Stock in from Bling: the full sync against the loopback stand-in, on SQLite and PostgreSQL.

The race test interleaves for real: the stand-in answers the balance request only after the order
forwarder has acknowledged a sale, so the balance the sync applies was read before that posting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bling.client import BlingClient, LocalRateLimiter, NullRateLimiter
from bling.oauth import InMemoryTokenStore, OAuthClient, TokenManager
from shopify_app import create_app
from shopify_app.erp import connection
from shopify_app.erp.stock_sync import (
    full_sync,
    reconcile,
    record_acknowledgement,
    sellable_units,
)
from shopify_app.erp.stock_tables import bling_acks, bling_products
from shopify_app.migrations_runner import upgrade
from shopify_app.runtime import EXTENSION_KEY, Runtime
from shopify_app.stock.tables import stock_movements
from shopify_app.worker import run_worker
from tests.support.app import SHOP, SHOPIFY_SECRET, app_environ
from tests.support.bling_standin import DEFAULT_DEPOSIT_ID, BlingStandIn, Reply
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.shopify_sender import body_of, signed_headers

pytestmark = pytest.mark.integration


# --- helpers shared with test_bling_webhooks.py ------------------------------------------------


def bling_environ(standin: BlingStandIn) -> dict[str, str]:
    return {
        "BLING_API_BASE_URL": standin.base_url,
        "BLING_CLIENT_ID": standin.client_id,
        "BLING_CLIENT_SECRET": standin.client_secret,
        "BLING_DEPOSIT_ID": str(DEFAULT_DEPOSIT_ID),
    }


def make_app(database_url: str, clock: FakeClock, **env: str) -> Flask:
    app = create_app(app_environ(database_url, **env), clock=clock)
    engine = runtime_of(app).engine
    if engine.dialect.name == "sqlite":
        upgrade(engine)
    return app


def runtime_of(app: Flask) -> Runtime:
    return app.extensions[EXTENSION_KEY]


def direct_client(standin: BlingStandIn, *, limited: bool = False) -> BlingClient:
    """A client with tokens the stand-in issued, as after the OAuth dance (no database)."""
    manager = TokenManager(
        OAuthClient(standin.client_id, standin.client_secret, standin.base_url),
        InMemoryTokenStore(),
    )
    manager.connect(standin.authorize())
    limiter = LocalRateLimiter() if limited else NullRateLimiter()
    return BlingClient(standin.base_url, manager, limiter, timeout=(1.0, 5.0), max_retries=1)


def sync(app: Flask, standin: BlingStandIn) -> Any:
    with direct_client(standin) as client:
        return full_sync(runtime_of(app), client, deposit_id=DEFAULT_DEPOSIT_ID)


def sell(client: FlaskClient, order_id: int, sku: str, quantity: int = 1) -> None:
    """A Shopify order with no cart holds: the line is committed from ``available``."""
    order = {
        "id": order_id,
        "name": f"#{order_id}",
        "cart_token": None,
        "checkout_token": None,
        "cancelled_at": None,
        "note_attributes": [],
        "line_items": [{"id": 1, "sku": sku, "quantity": quantity}],
    }
    raw = body_of(order)
    headers = signed_headers(raw, "orders/create", secret=SHOPIFY_SECRET, shop=SHOP)
    response = client.post("/webhooks/shopify", data=raw, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)


def acknowledge(runtime: Runtime, order_id: int, sku: str, quantity: int = 1) -> None:
    """What the order forwarder does once Bling posted the order's stock, in one transaction."""
    reference = f"shopify:{order_id}"
    with runtime.uow() as uow:
        order = uow.shopify.order(SHOP, order_id, lock=True)
        assert order is not None
        uow.stock.lock([sku])[sku].acknowledge(quantity, reference)
        record_acknowledgement(uow, sku, quantity, reference)
        order.forward_status = "forwarded"
        uow.shopify.save_order(order)
        uow.commit()


class GatedStandIn(BlingStandIn):
    """Answers a balance request only when told to, *after* reading the balance: the answer is
    then one that was current when the request arrived, delivered late (a slow Bling)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.gate_armed = False
        self.balance_read = threading.Event()
        self.release = threading.Event()

    def route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Reply:
        reply = super().route(method, path, query, raw)  # reads under the stand-in's lock
        if self.gate_armed and path.startswith("/estoques/saldos"):
            self.gate_armed = False
            self.balance_read.set()
            assert self.release.wait(10), "the test never released the balance answer"
        return reply


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
            pages = {c.query["pagina"][0] for c in standin.calls_to("GET", "/produtos")}
            assert pages == {"1", "2", "3"}  # the third, empty page ends the walk
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
