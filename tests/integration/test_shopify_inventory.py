"""Shopify's inventory follows the ledger (shopify/inventory_follower.py), against the Shopify
stand-in (a real HTTP server validating every document against the Admin schema), on SQLite and
PostgreSQL: the first mapping aligns with a compare-and-set write; outside changes (a Bling
balance from another channel, a manual PUT) reach Shopify as deltas exactly once under lost
answers, outages and throttling; a Shopify sale whose order webhook has not arrived yet is never
undone; a sale racing an absolute write is never overwritten; a persisting drift is reported and
repaired, a transient one is not; SKUs that cannot be mapped are reported and never written.

Long because each acceptance case of the issue is a scenario through the real routes (REST,
signed webhooks) and the stand-in's own state, sharing this module's fixtures and helpers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from shopify_app import create_app
from shopify_app.migrations_runner import upgrade
from shopify_app.runtime import EXTENSION_KEY, Runtime
from shopify_app.shopify import client as shopify_client
from shopify_app.shopify import inventory_api, inventory_follower
from shopify_app.shopify.inventory_follower import InventoryFollower
from shopify_app.shopify.tables import inventory_batches, inventory_items
from tests.support.app import SHOP, ApiClient, app_environ
from tests.support.bling_app import GatedStandIn, bling_environ, deliver_bling, sync
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.metrics import samples
from tests.support.orders import order_payload
from tests.support.shopify_install import standin
from tests.support.shopify_sender import deliver
from tests.support.shopify_standin import ShopifyStandIn

TOKEN = "shpat_inventory_test"
DRIFT_SECONDS = 900


@pytest.fixture
def stand_in(clock: FakeClock) -> Iterator[ShopifyStandIn]:
    with standin(clock) as server:
        server.add_access_token(SHOP, TOKEN, "read_products,write_inventory,read_locations")
        yield server


@pytest.fixture
def location(stand_in: ShopifyStandIn) -> str:
    stand_in.add_location(SHOP, "Depósito Online", fulfills_online_orders=True)
    return stand_in.add_location(SHOP, "Loja Física", fulfills_online_orders=False)


def make_app(database_url: str, clock: FakeClock, stand_in: ShopifyStandIn, **extra: str) -> Flask:
    settings = {
        "SHOPIFY_ADMIN_URL": stand_in.url,
        "SHOPIFY_ACCESS_TOKEN": TOKEN,
        "METRICS_TOKEN": "metrics-secret-token",
        "SHOPIFY_INVENTORY_SETTLE_SECONDS": "0",
        "SHOPIFY_INVENTORY_DRIFT_SECONDS": str(DRIFT_SECONDS),
    }
    environ = app_environ(database_url, **{**settings, **extra})
    app = create_app(environ, clock=clock)
    runtime: Runtime = app.extensions[EXTENSION_KEY]
    if runtime.engine.dialect.name == "sqlite":
        upgrade(runtime.engine)
    return app


@pytest.fixture
def app(database_url: str, clock: FakeClock, stand_in: ShopifyStandIn) -> Iterator[Flask]:
    app = make_app(database_url, clock, stand_in)
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


@pytest.fixture
def runtime(app: Flask) -> Runtime:
    found: Runtime = app.extensions[EXTENSION_KEY]
    return found


@pytest.fixture
def engine(runtime: Runtime) -> Engine:
    return runtime.engine


@pytest.fixture
def api(app: Flask) -> ApiClient:
    return ApiClient(app.test_client())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def follower(runtime: Runtime) -> InventoryFollower:
    return InventoryFollower(runtime, sleep=lambda seconds: False)


def online_location(stand_in: ShopifyStandIn) -> str:
    found = [
        loc
        for loc in inventory_api.locations(shopify_client.admin_base_url(stand_in.url, SHOP), TOKEN)
        if loc.fulfills_online_orders
    ]
    return found[0].id


def tracked_variant(
    stand_in: ShopifyStandIn, sku: str, location: str, available: int | None, **kw: Any
) -> str:
    """A variant of ``sku`` with its inventory item stocked at ``location``; the item's gid."""
    variant = stand_in.add_variant(SHOP, sku, **kw)
    item = stand_in.inventory_item_of(SHOP, variant)
    if available is not None:
        stand_in.stock(SHOP, item, location, available)
    return item


def put(api: ApiClient, sku: str, on_hand: int) -> None:
    response = api.put(f"/stock/{sku}", json={"on_hand": on_hand})
    assert response.status_code == 200, response.get_json()


def bling_balance(runtime: Runtime, sku: str, balance: int) -> None:
    """Bling's balance for ``sku`` as the stock sync applies it (another channel sold)."""
    with runtime.uow() as uow:
        level = uow.stock.lock([sku])[sku]
        level.apply_balance(balance, 0, f"bling:test:{balance}")
        uow.commit()


def sell_in_shopify(
    client: FlaskClient, stand_in: ShopifyStandIn, item: str, location: str, order_id: int
) -> Any:
    """Shopify sells one unit of TEE: its count drops now; the order's webhook payload is
    returned for the test to deliver when it chooses."""
    stand_in.sell(SHOP, item, location, 1)
    return order_payload(order_id, None, {"TEE": 1})


def adjustments(stand_in: ShopifyStandIn, kind: str | None = None) -> list[Any]:
    return [c for c in stand_in.inventory_changes(SHOP) if kind is None or c.kind == kind]


def rows(engine: Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        return {r.sku: r for r in connection.execute(select(inventory_items))}


def batches(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(inventory_batches)))


@pytest.fixture
def aligned(
    api: ApiClient, stand_in: ShopifyStandIn, location: str, follower: InventoryFollower
) -> str:
    """TEE: 5 in the ledger and in Shopify, aligned; the inventory item's gid."""
    online = online_location(stand_in)
    item = tracked_variant(stand_in, "TEE", online, 5)
    put(api, "TEE", 5)
    report = follower.run_round()
    assert report.stopped_by is None, report
    assert stand_in.available(SHOP, item, online) == 5
    assert adjustments(stand_in) == []  # the same figure on both sides: aligned, nothing sent
    return item


# --- the first mapping ----------------------------------------------------------------------


def test_the_first_mapping_sets_shopify_to_the_ledger_with_compare_and_set(
    api: ApiClient,
    stand_in: ShopifyStandIn,
    location: str,
    follower: InventoryFollower,
    engine: Engine,
) -> None:
    online = online_location(stand_in)
    item = tracked_variant(stand_in, "TEE", online, 9)
    put(api, "TEE", 6)
    api.post("/stock/TEE/reserve", json={"quantity": 2})  # holds are not taken off Shopify
    report = follower.run_round()
    assert report.stopped_by is None and report.aligned == 1
    assert stand_in.available(SHOP, item, online) == 6
    [change] = adjustments(stand_in, "set")
    assert (change.delta, change.quantity_after) == (-3, 6)
    row = rows(engine)["TEE"]
    assert row.state == "mapped" and row.aligned_at is not None and row.batch_key is None
    assert batches(engine) == []
    # Nothing changed since: the next round writes nothing.
    follower.run_round()
    assert len(adjustments(stand_in)) == 1
    # The one online location was chosen, never the shop counter's.
    assert online != location


# --- outside changes ------------------------------------------------------------------------


def test_a_manual_put_and_a_bling_balance_reach_shopify_as_deltas_once(
    api: ApiClient,
    runtime: Runtime,
    stand_in: ShopifyStandIn,
    follower: InventoryFollower,
    aligned: str,
    engine: Engine,
) -> None:
    online = online_location(stand_in)
    put(api, "TEE", 8)  # counted in the warehouse
    follower.run_round()
    assert stand_in.available(SHOP, aligned, online) == 8
    bling_balance(runtime, "TEE", 6)  # the shop counter sold 2, Bling says 6
    bling_balance(runtime, "TEE", 4)  # and 2 more before the follower ran: one delta
    follower.run_round()
    assert stand_in.available(SHOP, aligned, online) == 4
    deltas = [c.delta for c in adjustments(stand_in, "adjust")]
    assert deltas == [3, -4]
    keys = [c.key for c in adjustments(stand_in, "adjust")]
    assert len(set(keys)) == 2
    follower.run_round()
    assert len(adjustments(stand_in, "adjust")) == 2
    assert rows(engine)["TEE"].sent_external == figures_external(engine, "TEE")
    assert_ledger_balanced(engine)


def figures_external(engine: Engine, sku: str) -> int:
    from shopify_app.stock.tables import skus

    with engine.connect() as connection:
        return int(
            connection.execute(
                select(skus.c.external_on_hand).where(skus.c.sku == sku)
            ).scalar_one()
        )


def test_a_lost_answer_is_sent_again_under_its_key_and_applied_once(
    api: ApiClient,
    stand_in: ShopifyStandIn,
    follower: InventoryFollower,
    aligned: str,
    engine: Engine,
) -> None:
    online = online_location(stand_in)
    put(api, "TEE", 8)
    stand_in.lose_answers(1, root="inventoryAdjustQuantities")
    report = follower.run_round()
    assert report.stopped_by == "unavailable"
    assert stand_in.available(SHOP, aligned, online) == 8  # Shopify applied it
    [stored] = batches(engine)
    assert stored.attempts == 1
    put(api, "TEE", 10)  # a change while the answer is unknown waits for the next batch
    report = follower.run_round()
    assert report.stopped_by is None
    assert stand_in.available(SHOP, aligned, online) == 10
    applied = adjustments(stand_in, "adjust")
    assert [c.delta for c in applied] == [3, 2]
    assert applied[0].key == str(stored.key)
    assert batches(engine) == []


def test_an_outage_and_throttling_delay_the_writes_and_lose_none(
    api: ApiClient,
    stand_in: ShopifyStandIn,
    follower: InventoryFollower,
    aligned: str,
) -> None:
    online = online_location(stand_in)
    put(api, "TEE", 7)
    stand_in.outage()
    assert follower.run_round().stopped_by == "unavailable"
    put(api, "TEE", 9)
    stand_in.restore()
    stand_in.throttle(SHOP, calls=1)  # the write is answered THROTTLED: the round pauses
    assert follower.run_round().stopped_by == "throttled"
    assert stand_in.available(SHOP, aligned, online) == 5
    assert follower.run_round().stopped_by is None
    assert stand_in.available(SHOP, aligned, online) == 9
    # The batch stored before the outage went as it was (+2), the later change after it.
    assert [c.delta for c in adjustments(stand_in, "adjust")] == [2, 2]


def test_a_bling_webhook_from_another_channel_reaches_shopify_once(
    database_url: str, clock: FakeClock, stand_in: ShopifyStandIn, location: str
) -> None:
    """The real path: Bling's stand-in, its signed ``stock.updated`` webhook (delivered twice),
    the ledger, then the follower through a lost answer."""
    with GatedStandIn(rate_limit=None) as bling:
        app = make_app(database_url, clock, stand_in, **bling_environ(bling))
        try:
            runtime: Runtime = app.extensions[EXTENSION_KEY]
            follower = InventoryFollower(runtime, sleep=lambda seconds: False)
            online = online_location(stand_in)
            item = tracked_variant(stand_in, "TEE", online, 5)
            product = bling.add_product("TEE", 5)
            sync(app, bling)
            follower.run_round()
            assert adjustments(stand_in) == []  # 5 on both sides: aligned without a write
            bling.set_stock(product, 2)  # the shop counter sold 3
            body = json.loads(bling.stock_event(product, None))
            body["date"] = (clock.now + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
            raw = json.dumps(body).encode()
            for _ in range(2):  # Bling may deliver an event more than once
                assert deliver_bling(app, bling, raw).status_code == 200
            assert figures(runtime.engine, "TEE")["on_hand"] == 2
            stand_in.lose_answers(1, root="inventoryAdjustQuantities")
            assert follower.run_round().stopped_by == "unavailable"
            assert follower.run_round().stopped_by is None
            assert stand_in.available(SHOP, item, online) == 2
            assert [c.delta for c in adjustments(stand_in)] == [-3]
        finally:
            runtime.engine.dispose()


# --- Shopify's own sales ------------------------------------------------------------------


def test_a_shopify_sale_whose_order_has_not_arrived_is_never_undone(
    client: FlaskClient,
    runtime: Runtime,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    follower: InventoryFollower,
    aligned: str,
    engine: Engine,
) -> None:
    online = online_location(stand_in)
    order = sell_in_shopify(client, stand_in, aligned, online, 7001)  # Shopify: 4
    bling_balance(runtime, "TEE", 3)  # meanwhile the shop counter sold 2
    follower.run_round()
    assert stand_in.available(SHOP, aligned, online) == 2  # 4 − 2: the sale kept
    assert deliver(client, order, "orders/create").status_code == 200
    follower.run_round()
    assert figures(engine, "TEE")["on_hand"] - figures(engine, "TEE")["committed"] == 2
    assert stand_in.available(SHOP, aligned, online) == 2
    for _ in range(2):  # two drift checks: nothing differs, nothing is written
        clock.advance(DRIFT_SECONDS)
        follower.run_round()
    assert [c.kind for c in adjustments(stand_in)] == ["sale", "adjust"]


def test_a_sale_racing_an_absolute_write_is_never_overwritten(
    api: ApiClient,
    client: FlaskClient,
    stand_in: ShopifyStandIn,
    location: str,
    follower: InventoryFollower,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    online = online_location(stand_in)
    item = tracked_variant(stand_in, "TEE", online, 9)
    put(api, "TEE", 5)
    real_write = inventory_api.write
    sold: list[Any] = []

    def sale_between_read_and_write(*args: Any) -> Any:
        if not sold:  # Shopify sells after the follower read 9, before its write lands
            sold.append(sell_in_shopify(client, stand_in, item, online, 7002))
        return real_write(*args)

    monkeypatch.setattr(inventory_follower.inventory_api, "write", sale_between_read_and_write)
    follower.run_round()
    assert stand_in.available(SHOP, item, online) == 8  # refused as stale: the sale stands
    assert adjustments(stand_in, "set") == []
    assert deliver(client, sold[0], "orders/create").status_code == 200
    follower.run_round()  # read again (8), the ledger now 5 − 1
    assert stand_in.available(SHOP, item, online) == 4
    [change] = adjustments(stand_in, "set")
    assert change.delta == -4


# --- drift ------------------------------------------------------------------------------------


def test_a_persisting_drift_is_reported_and_repaired(
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    follower: InventoryFollower,
    aligned: str,
    app: Flask,
) -> None:
    online = online_location(stand_in)
    stand_in.stock(SHOP, aligned, online, 11)  # edited by hand in Shopify's admin
    clock.advance(DRIFT_SECONDS)
    first = follower.run_round()
    assert (first.drift_noted, first.drift_persisting) == (1, 0)
    assert stand_in.available(SHOP, aligned, online) == 11  # noted only
    clock.advance(DRIFT_SECONDS)
    second = follower.run_round()
    assert (second.drift_persisting, second.repaired) == (1, 1)
    assert stand_in.available(SHOP, aligned, online) == 5
    [change] = adjustments(stand_in, "set")
    assert change.delta == -6
    found = samples(app)
    assert found[("bazico_shopify_inventory_drift_total", (("outcome", "persisting"),))] >= 1


def test_a_transient_drift_from_an_order_in_flight_is_not_repaired(
    client: FlaskClient,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    follower: InventoryFollower,
    aligned: str,
) -> None:
    online = online_location(stand_in)
    order = sell_in_shopify(client, stand_in, aligned, online, 7003)
    clock.advance(DRIFT_SECONDS)
    assert follower.run_round().drift_noted == 1  # Shopify 4, the ledger still 5
    assert deliver(client, order, "orders/create").status_code == 200
    clock.advance(DRIFT_SECONDS)
    report = follower.run_round()
    assert (report.drift_noted, report.drift_persisting, report.repaired) == (0, 0, 0)
    assert stand_in.available(SHOP, aligned, online) == 4
    assert adjustments(stand_in, "set") == []


# --- the map ----------------------------------------------------------------------------------


def test_skus_that_cannot_be_mapped_are_reported_and_never_written(
    app: Flask,
    api: ApiClient,
    stand_in: ShopifyStandIn,
    location: str,
    follower: InventoryFollower,
    engine: Engine,
) -> None:
    online = online_location(stand_in)
    tracked_variant(stand_in, "DUP", online, 3, title="P")
    tracked_variant(stand_in, "DUP", online, 3, title="M")
    tracked_variant(stand_in, "UNT", online, 3, tracked=False)
    tracked_variant(stand_in, "NOST", online, None)
    stand_in.add_variant(SHOP, None, title="Sem SKU")
    for sku in ("DUP", "UNT", "NOST", "GONE"):
        put(api, sku, 2)
    report = follower.run_round()
    assert report.stopped_by is None
    found = {sku: row.state for sku, row in rows(engine).items()}
    assert found == {
        "DUP": "duplicate",
        "UNT": "untracked",
        "NOST": "not_stocked",
        "GONE": "missing",
    }
    put(api, "DUP", 9)
    follower.run_round()
    assert adjustments(stand_in) == []
    result = app.test_cli_runner().invoke(args=["shopify", "inventory", "--shop", SHOP])
    assert result.exit_code == 0, result.output
    assert "1 duplicate" in result.output and "1 variant(s) without a SKU" in result.output
    assert "DUP: duplicate (2 variants carry this SKU)" in result.output


def test_a_sku_the_ledger_gains_later_is_looked_up_by_sku(
    api: ApiClient,
    stand_in: ShopifyStandIn,
    follower: InventoryFollower,
    aligned: str,
) -> None:
    online = online_location(stand_in)
    item = tracked_variant(stand_in, "NEW", online, 0)
    put(api, "NEW", 4)
    follower.run_round()
    assert stand_in.available(SHOP, item, online) == 4
    lookups = [
        c
        for c in stand_in.calls_of("graphql")
        if c.operation == "productVariants" and (c.variables or {}).get("query") == 'sku:"NEW"'
    ]
    assert len(lookups) == 1


def test_an_absolute_write_waits_until_shopifys_count_has_settled(
    database_url: str,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    location: str,
) -> None:
    app = make_app(database_url, clock, stand_in, SHOPIFY_INVENTORY_SETTLE_SECONDS="120")
    try:
        runtime: Runtime = app.extensions[EXTENSION_KEY]
        follower = InventoryFollower(runtime, sleep=lambda seconds: False)
        online = online_location(stand_in)
        item = tracked_variant(stand_in, "TEE", online, 9)  # moved just now
        put(ApiClient(app.test_client()), "TEE", 5)
        follower.run_round()
        assert stand_in.available(SHOP, item, online) == 9
        clock.advance(121)
        follower.run_round()
        assert stand_in.available(SHOP, item, online) == 5
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()


def test_the_location_must_be_clear(
    database_url: str, clock: FakeClock, stand_in: ShopifyStandIn
) -> None:
    first = stand_in.add_location(SHOP, "Depósito A", fulfills_online_orders=True)
    stand_in.add_location(SHOP, "Depósito B", fulfills_online_orders=True)
    app = make_app(database_url, clock, stand_in)
    try:
        runtime: Runtime = app.extensions[EXTENSION_KEY]
        report = InventoryFollower(runtime, sleep=lambda s: False).run_round()
        assert report.stopped_by == "no_location"
        result = app.test_cli_runner().invoke(args=["shopify", "inventory", "--shop", SHOP])
        assert "SHOPIFY_LOCATION_ID" in result.output
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()
    number = first.rsplit("/", 1)[1]
    app = make_app(database_url, clock, stand_in, SHOPIFY_LOCATION_ID=number)
    try:
        runtime = app.extensions[EXTENSION_KEY]
        item = tracked_variant(stand_in, "TEE", first, 1)
        put(ApiClient(app.test_client()), "TEE", 3)
        assert InventoryFollower(runtime, sleep=lambda s: False).run_round().stopped_by is None
        assert stand_in.available(SHOP, item, first) == 3
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()
