"""The worker's order reconciliation (shopify/reconcile.py) against the Shopify stand-in: orders
and cancellations no webhook brought are applied through the webhook's own path, once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from shopify_app.outbox.kinds import FORWARD_ORDER
from shopify_app.runtime import EXTENSION_KEY, Runtime
from shopify_app.shopify import reconcile
from shopify_app.stock import services
from tests.support.clock import FakeClock
from tests.support.ledger import figures
from tests.support.orders import shopify_order
from tests.support.shopify_install import API_SECRET, SHOP, make_app, standin
from tests.support.shopify_sender import deliver
from tests.support.shopify_standin import ShopifyStandIn

TOKEN = "shpat_reconcile"


@pytest.fixture
def stand_in(clock: FakeClock) -> Iterator[ShopifyStandIn]:
    with standin(clock) as server:
        server.add_access_token(SHOP, TOKEN)
        yield server


@pytest.fixture
def app(database_url: str, clock: FakeClock, stand_in: ShopifyStandIn) -> Iterator[Flask]:
    app = make_app(database_url, clock, stand_in.url, SHOPIFY_ACCESS_TOKEN=TOKEN)
    runtime: Runtime = app.extensions[EXTENSION_KEY]
    services.set_on_hand(runtime.uow(), "TEE", 5, reference="test")
    yield app
    runtime.engine.dispose()


def send(app: Flask, body: dict, topic: str) -> object:
    """A signed delivery from the stand-in's shop."""
    return deliver(app.test_client(), body, topic, secret=API_SECRET, shop=SHOP)


def reconciled(topic: str, outcome: str) -> float:
    labels = {"topic": topic, "outcome": outcome}
    return REGISTRY.get_sample_value("bazico_shopify_orders_reconciled_total", labels) or 0.0


def jobs(runtime: Runtime) -> list[str]:
    from sqlalchemy import select

    from shopify_app.outbox.tables import outbox_jobs

    with runtime.engine.connect() as connection:
        return list(connection.execute(select(outbox_jobs.c.kind)).scalars())


def test_an_order_no_webhook_brought_is_sold_once_and_its_late_webhook_changes_nothing(
    app: Flask, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    runtime: Runtime = app.extensions[EXTENSION_KEY]
    stand_in.add_order(SHOP, 7001, [("TEE", 2)], updated_at=clock.now - timedelta(minutes=3))
    before = reconciled("orders/paid", "confirmed")

    assert reconcile.reconcile_orders(runtime) == {SHOP: 1}
    assert figures(runtime.engine, "TEE")["committed"] == 2
    assert jobs(runtime) == [FORWARD_ORDER], "it goes to Bling like any confirmed order"
    assert reconciled("orders/paid", "confirmed") == before + 1

    assert reconcile.reconcile_orders(runtime) == {SHOP: 0}, "known: nothing to apply"
    late = send(app, shopify_order(7001, [("TEE", 2, "89.90")]), "orders/create")
    assert late.status_code == 200 and late.get_json()["status"] == "duplicate_order"
    assert figures(runtime.engine, "TEE")["committed"] == 2


def test_a_cancellation_only_shopify_knows_gives_the_units_back(
    app: Flask, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    runtime: Runtime = app.extensions[EXTENSION_KEY]
    send(app, shopify_order(7002, [("TEE", 1, "89.90")]), "orders/create")
    assert figures(runtime.engine, "TEE")["committed"] == 1
    clock.advance(60)
    stand_in.add_order(
        SHOP, 7002, [("TEE", 1)], updated_at=clock.now, cancelled_at=clock.now
    )  # orders/cancelled never arrived

    assert reconcile.reconcile_orders(runtime) == {SHOP: 1}
    assert figures(runtime.engine, "TEE")["committed"] == 0
    assert reconcile.reconcile_orders(runtime) == {SHOP: 0}


def test_a_payment_only_shopify_knows_sends_the_waiting_order_on_to_bling(
    app: Flask, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    runtime: Runtime = app.extensions[EXTENSION_KEY]
    unpaid = shopify_order(7003, [("TEE", 1, "89.90")], financial_status="pending")
    send(app, unpaid, "orders/create")
    assert jobs(runtime) == [], "unpaid: it waits, units committed"
    clock.advance(60)
    stand_in.add_order(SHOP, 7003, [("TEE", 1)], updated_at=clock.now)  # paid; no orders/paid

    assert reconcile.reconcile_orders(runtime) == {SHOP: 1}
    assert jobs(runtime) == [FORWARD_ORDER]
    assert figures(runtime.engine, "TEE")["committed"] == 1
    assert reconcile.reconcile_orders(runtime) == {SHOP: 0}


def test_each_run_asks_from_where_the_last_one_got_and_pages_through(
    app: Flask, stand_in: ShopifyStandIn, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime: Runtime = app.extensions[EXTENSION_KEY]
    for n in range(12):
        stand_in.add_order(SHOP, 7100 + n, [], updated_at=clock.now - timedelta(minutes=30 - n))
    stand_in.throttle(SHOP, calls=1)  # the first page is refused once, then paid for
    monkeypatch.setattr(reconcile, "ORDERS_PAGE", 5)
    assert reconcile.reconcile_orders(runtime) == {SHOP: 12}
    listings = [c for c in stand_in.calls_of("graphql") if c.operation == "orders"]
    assert listings[0].throttled, "the refused page was asked again"
    assert len([c for c in listings if not c.throttled]) == 3  # 12 orders in pages of 5
    reads = [c for c in stand_in.calls_of("graphql") if c.operation == "order"]
    assert len(reads) == 12, "each order to apply is read whole once"
    first_query = (listings[0].variables or {})["query"]
    assert first_query.startswith("updated_at:>=")

    clock.advance(600)
    reconcile.reconcile_orders(runtime)
    last = [c for c in stand_in.calls_of("graphql") if c.operation == "orders"][-1]
    newest = clock.now - timedelta(seconds=600) - timedelta(minutes=30 - 11)
    expected = (newest - reconcile.OVERLAP).isoformat()
    assert (last.variables or {})["query"] == f"updated_at:>='{expected}'"


def test_without_shopify_configured_nothing_is_asked(
    database_url: str, clock: FakeClock, stand_in: ShopifyStandIn
) -> None:
    app = make_app(database_url, clock, stand_in.url, SHOPIFY_API_KEY="")
    try:
        assert reconcile.reconcile_orders(app.extensions[EXTENSION_KEY]) == {}
        assert stand_in.calls == []
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()
