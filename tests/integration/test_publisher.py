"""The stock publisher against the Shopify stand-in, on SQLite and PostgreSQL: every ledger change
marks its SKU (the repository and the fast path alike), a round writes what the checkout function
reads, and throttling, an outage, a change during the publish, the 200-entry bound, an untracked
variant and a variant Shopify deleted all end with the metafield right and no mark lost.

Long because each rule is shown through the real routes (REST, App Proxy, signed webhooks) and
the stand-in's own state, and the cases share the fixtures and helpers of this module.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine, delete, select, text

from shopify_app import create_app
from shopify_app.migrations_runner import upgrade
from shopify_app.runtime import EXTENSION_KEY, Runtime
from shopify_app.shopify.publisher import StockPublisher
from shopify_app.shopify.tables import stock_metafields, variants
from shopify_app.stock import services
from shopify_app.stock.combiner import combiner_for
from shopify_app.stock.dirty import Cleared
from shopify_app.stock.domain import Hold, HoldSource, HoldStatus, new_hold_id
from shopify_app.stock.fast_path import reserve_batch, reserve_one
from shopify_app.stock.tables import dirty_skus, holds
from tests.support.app import SHOP, ApiClient, app_environ
from tests.support.clock import FakeClock
from tests.support.metrics import samples
from tests.support.shopify_install import standin
from tests.support.shopify_sender import deliver
from tests.support.shopify_standin import ShopifyStandIn

TOKEN = "shpat_publisher_test"
TTL = 900
TTL_DELTA = timedelta(seconds=TTL)


@pytest.fixture
def stand_in() -> Iterator[ShopifyStandIn]:
    with standin() as server:
        server.add_access_token(SHOP, TOKEN, "write_products")
        yield server


@pytest.fixture
def app(database_url: str, clock: FakeClock, stand_in: ShopifyStandIn) -> Iterator[Flask]:
    environ = app_environ(
        database_url,
        SHOPIFY_ADMIN_URL=stand_in.url,
        SHOPIFY_ACCESS_TOKEN=TOKEN,
        METRICS_TOKEN="metrics-secret-token",
    )
    app = create_app(environ, clock=clock)
    runtime: Runtime = app.extensions[EXTENSION_KEY]
    if runtime.engine.dialect.name == "sqlite":
        upgrade(runtime.engine)
    yield app
    runtime.engine.dispose()


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
def publisher(runtime: Runtime) -> StockPublisher:
    return StockPublisher(runtime)


def gid(variant_id: int) -> str:
    return f"gid://shopify/ProductVariant/{variant_id}"


def published(stand_in: ShopifyStandIn, variant_id: int) -> dict[str, Any] | None:
    stored = stand_in.metafield(SHOP, gid(variant_id))
    return None if stored is None else dict(json.loads(stored.value))


def cart(client: FlaskClient, token: str, minute: int, *lines: tuple[int, str, int]) -> None:
    """A carts/update webhook: (variant id, SKU, quantity) lines."""
    payload = {
        "id": token,
        "token": token,
        "updated_at": f"2026-11-27T12:{minute:02d}:00Z",
        "line_items": [
            {"id": v, "variant_id": v, "sku": sku, "quantity": qty, "key": f"{v}:k"}
            for v, sku, qty in lines
        ],
    }
    response = deliver(client, payload, "carts/update")
    assert response.status_code == 200, response.get_json()


def marks(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {row.sku: row for row in conn.execute(select(dirty_skus))}


def due_marks(engine: Engine, clock: FakeClock) -> set[str]:
    """The marks waiting to be published now (not the follow-ups left for a hold's expiry)."""
    return {
        sku
        for sku, row in marks(engine).items()
        if row.not_before is None or row.not_before <= clock()
    }


def stock(api: ApiClient, **levels: int) -> None:
    for sku, on_hand in levels.items():
        assert api.put(f"/stock/{sku}", json={"on_hand": on_hand}).status_code == 200


def cart_hold_id(engine: Engine, sku: str) -> str:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT id FROM holds WHERE sku = :sku AND status = 'active'"), {"sku": sku}
        ).scalar_one()
    return str(uuid.UUID(str(found)))  # SQLite keeps UUIDs as bare hex


def cart_hold_id_of(app: Flask, holder: str) -> str:
    with app.extensions[EXTENSION_KEY].engine.connect() as conn:
        found = conn.execute(
            text("SELECT id FROM holds WHERE holder = :holder AND status = 'active'"),
            {"holder": holder},
        ).scalar_one()
    return str(uuid.UUID(str(found)))


# --- marks ---------------------------------------------------------------------------------


def test_every_ledger_change_marks_its_sku_once_per_publish(
    api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=5)
    first = marks(engine)["TEE"]
    held = api.post("/stock/TEE/reserve", json={"quantity": 2}).get_json()
    api.delete(f"/stock/reservations/{held['reservation_id']}")
    again = api.post("/stock/TEE/reserve", json={"quantity": 1}).get_json()
    api.post("/stock/confirm", json={"reservation_id": again["reservation_id"]})
    [mark] = marks(engine).values()
    assert mark.changes >= 5, "set, reserve, release, reserve, confirm: one row for them all"
    assert mark.change_id != first.change_id, "a new change id per change"
    assert mark.first_changed_at == first.first_changed_at, "the oldest change is kept"


@pytest.mark.postgres
def test_the_fast_paths_mark_in_their_one_statement(postgres_url: str, clock: FakeClock) -> None:
    app = create_app(app_environ(postgres_url), clock=clock)
    engine = app.extensions[EXTENSION_KEY].engine
    try:
        ApiClient(app.test_client()).put("/stock/HOT", json={"on_hand": 100})
        with engine.begin() as conn:
            conn.execute(delete(dirty_skus))
        assert reserve_one(
            engine, "HOT", 1, holder=None, source=HoldSource.API, now=clock(), ttl=TTL_DELTA
        )
        assert marks(engine)["HOT"].changes == 1
        combiner = combiner_for(engine)
        threads = [
            threading.Thread(
                target=combiner.reserve,
                args=("HOT", 1),
                kwargs={"holder": None, "source": HoldSource.API, "ttl": TTL_DELTA, "clock": clock},
            )
            for _ in range(20)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert marks(engine)["HOT"].changes == 21, "one per hold, batched or not"
    finally:
        engine.dispose()


# --- publishing ----------------------------------------------------------------------------


def test_a_hold_is_published_then_its_expiry(
    app: Flask,
    api: ApiClient,
    engine: Engine,
    runtime: Runtime,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    publisher: StockPublisher,
) -> None:
    stock(api, TEE=1)
    cart(app.test_client(), "cart-a", 1, (4401, "TEE", 1))  # maps the variant, holds the unit
    hold = cart_hold_id(engine, "TEE")
    report = publisher.run_round()
    assert (report.written, report.calls) == (1, 1)
    assert published(stand_in, 4401) == {"v": 1, "free": 0, "h": {hold: 1}}
    stored = stand_in.metafield(SHOP, gid(4401))
    assert stored is not None and stored.type == "json" and stored.namespace.endswith("--bazico")
    [call] = [c for c in stand_in.calls_of("graphql") if c.operation == "metafieldsSet"]
    entry = call.variables["metafields"][0]  # type: ignore[index]
    assert (entry["namespace"], entry["key"], entry["type"]) == ("$app:bazico", "stock", "json")

    clock.advance(TTL + 1)
    assert services.expire_due(runtime.uow()) == 1
    publisher.run_round()
    assert published(stand_in, 4401) == {"v": 1, "free": 1, "h": {}}
    with engine.connect() as conn:
        row = conn.execute(select(stock_metafields)).one()
    assert row.sku == "TEE" and row.variant_id == 4401 and json.loads(row.value)["free"] == 1


def test_a_change_during_the_publish_is_not_lost(
    app: Flask,
    api: ApiClient,
    engine: Engine,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    publisher: StockPublisher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stock(api, TEE=3)
    cart(app.test_client(), "cart-a", 1, (4401, "TEE", 1))
    read = publisher.store.snapshot

    def read_then_a_reservation(skus: list[str], now: Any) -> Any:
        found = read(skus, now)
        monkeypatch.setattr(publisher.store, "snapshot", read)
        assert api.post("/stock/TEE/reserve", json={"quantity": 1}).status_code == 200
        return found

    monkeypatch.setattr(publisher.store, "snapshot", read_then_a_reservation)
    report = publisher.run_round()
    assert report.cleared == {Cleared.CHANGED: 1}
    assert published(stand_in, 4401)["free"] == 2  # type: ignore[index]
    assert "TEE" in marks(engine), "the reservation made meanwhile keeps the mark"
    assert publisher.run_round().claimed == 0, "a variant is written at most once a second"
    clock.advance(1)
    assert publisher.run_round().cleared == {Cleared.CLEARED: 1}
    assert published(stand_in, 4401)["free"] == 1  # type: ignore[index]
    assert due_marks(engine, clock) == set()
    follow_up = marks(engine)["TEE"]
    assert follow_up.not_before == clock() + TTL_DELTA - timedelta(seconds=1), (
        "left for the first hold's expiry"
    )


def test_throttling_is_waited_out(
    app: Flask, api: ApiClient, stand_in: ShopifyStandIn, publisher: StockPublisher
) -> None:
    stock(api, TEE=2)
    cart(app.test_client(), "cart-a", 1, (4401, "TEE", 1))
    stand_in.throttle(SHOP, calls=2)
    name, labels = "bazico_stock_publish_failures_total", {"reason": "throttled"}
    before = REGISTRY.get_sample_value(name, labels) or 0
    report = publisher.run_round()
    assert report.failures == {"throttled": 2} and report.written == 1
    assert published(stand_in, 4401)["free"] == 1  # type: ignore[index]
    assert REGISTRY.get_sample_value(name, labels) == before + 2


def test_an_empty_bucket_is_refilled_before_writing(
    app: Flask,
    api: ApiClient,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    publisher: StockPublisher,
) -> None:
    stock(api, TEE=2)
    cart(app.test_client(), "cart-a", 1, (4401, "TEE", 1))
    # A slow restore (10 points a second) so that the bucket is still short when the round's
    # call arrives, however long a loaded machine takes to get there.
    stand_in.set_bucket(SHOP, available=0, restore_rate=10)
    started = time.monotonic()
    report = publisher.run_round()
    assert report.written == 1 and report.failures == {"throttled": 1}
    assert time.monotonic() - started >= 0.5, "it waited (10 points at 10 a second)"
    throttled = [c for c in stand_in.calls_of("graphql") if c.throttled]
    assert len(throttled) == 1


def test_an_outage_delays_and_loses_nothing(
    app: Flask,
    api: ApiClient,
    engine: Engine,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    publisher: StockPublisher,
) -> None:
    stock(api, TEE=2)
    cart(app.test_client(), "cart-a", 1, (4401, "TEE", 1))
    stand_in.outage()
    for _ in range(3):
        report = publisher.run_round()
        assert report.stopped_by == "unavailable" and report.written == 0
        clock.advance(5)
        api.post("/stock/TEE/reserve", json={"quantity": 1})  # the ledger keeps moving
    assert published(stand_in, 4401) is None and "TEE" in marks(engine)
    stand_in.restore()
    report = publisher.run_round()
    assert report.written == 1
    assert report.lags == [pytest.approx(15.0)], "the lag counts from the first change"
    assert published(stand_in, 4401)["free"] == 0  # type: ignore[index]


def test_no_token_for_the_shop_pauses_the_publisher(
    database_url: str, clock: FakeClock, stand_in: ShopifyStandIn
) -> None:
    app = create_app(app_environ(database_url, SHOPIFY_ADMIN_URL=stand_in.url), clock=clock)
    runtime = app.extensions[EXTENSION_KEY]
    if runtime.engine.dialect.name == "sqlite":
        upgrade(runtime.engine)
    try:
        stock(ApiClient(app.test_client()), TEE=1)
        cart(app.test_client(), "cart-a", 1, (4401, "TEE", 1))
        report = StockPublisher(runtime).run_round()
        assert report.stopped_by == "no_token" and "TEE" in marks(runtime.engine)
    finally:
        runtime.engine.dispose()


def test_the_two_hundred_entry_bound(
    app: Flask,
    api: ApiClient,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    publisher: StockPublisher,
) -> None:
    stock(api, HOT=500)
    cart(app.test_client(), "cart-map", 1, (4401, "HOT", 1))
    clock.advance(1)  # the others run out later: the bound ranks this cart's line last
    for _ in range(229):
        assert api.post("/stock/HOT/reserve", json={"quantity": 1}).status_code == 200
    before = REGISTRY.get_sample_value("bazico_stock_publish_holds_left_out_total") or 0
    report = publisher.run_round()
    value = published(stand_in, 4401)
    assert value is not None and len(value["h"]) == 200 and report.left_out == 30
    assert value["free"] == 500 - 230, "the left-out holds' units stay out of free"
    assert REGISTRY.get_sample_value("bazico_stock_publish_holds_left_out_total") == before + 30
    stored = stand_in.metafield(SHOP, gid(4401))
    assert stored is not None and len(stored.value.encode()) < 10_000

    # The cart that reaches checkout ranks first: its line, left out until then, is kept.
    line_id = cart_hold_id_of(app, "cart-map")
    before = publisher.store.snapshot(["HOT"], clock())["HOT"].entries
    assert line_id not in before.units and len(before.units) == 200
    checkout = {"token": "chk-map", "cart_token": "cart-map"}
    assert deliver(app.test_client(), checkout, "checkouts/update").status_code == 200
    after = publisher.store.snapshot(["HOT"], clock())["HOT"].entries
    assert line_id in after.units and len(after.units) == 200 and after.line_count == 230


def test_a_variant_that_stops_being_tracked_loses_its_metafield(
    app: Flask,
    api: ApiClient,
    engine: Engine,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    publisher: StockPublisher,
) -> None:
    stock(api, TEE=2, CAP=1)
    cart(app.test_client(), "cart-a", 1, (4401, "TEE", 1), (4402, "CAP", 1))
    assert publisher.run_round().written == 2
    clock.advance(2)
    # The merchant gave variant 4402 a SKU the ledger does not know.
    cart(app.test_client(), "cart-a", 2, (4401, "TEE", 1), (4402, "CAP-OLD", 1))
    report = publisher.run_round()
    assert report.deleted == 1
    assert published(stand_in, 4402) is None, "a stale metafield would keep refusing checkouts"
    assert published(stand_in, 4401) is not None
    with engine.connect() as conn:
        assert [r.variant_id for r in conn.execute(select(stock_metafields))] == [4401]
        assert [r.variant_id for r in conn.execute(select(variants))] == [4401]
    deletes = [c for c in stand_in.calls_of("graphql") if c.operation == "metafieldsDelete"]
    assert len(deletes) == 1


def test_a_variant_moved_to_another_tracked_sku_follows_it(
    app: Flask,
    api: ApiClient,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    publisher: StockPublisher,
) -> None:
    stock(api, TEE=5, CAP=1)
    cart(app.test_client(), "cart-a", 1, (4401, "TEE", 1))
    publisher.run_round()
    clock.advance(2)
    cart(app.test_client(), "cart-a", 2, (4401, "CAP", 1))
    report = publisher.run_round()
    assert report.deleted == 0
    assert published(stand_in, 4401)["free"] == 0  # type: ignore[index]


def test_many_variants_go_25_a_call(
    app: Flask, api: ApiClient, stand_in: ShopifyStandIn, publisher: StockPublisher
) -> None:
    lines = [(5000 + n, f"SKU{n:02}", 1) for n in range(30)]
    stock(api, **{sku: 2 for _, sku, _ in lines})
    cart(app.test_client(), "cart-a", 1, *lines)
    report = publisher.run_round()
    assert report.written == 30
    sets = [c for c in stand_in.calls_of("graphql") if c.operation == "metafieldsSet"]
    assert [len(c.variables["metafields"]) for c in sets] == [25, 5]  # type: ignore[index]


def test_a_variant_shopify_deleted_is_forgotten(
    app: Flask,
    api: ApiClient,
    engine: Engine,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    publisher: StockPublisher,
) -> None:
    stock(api, TEE=2, CAP=1)
    cart(app.test_client(), "cart-a", 1, (4401, "TEE", 1), (4402, "CAP", 1))
    stand_in.remove_owner(SHOP, gid(4402))
    report = publisher.run_round()
    assert report.written == 1 and published(stand_in, 4401) is not None
    with engine.connect() as conn:
        assert [r.variant_id for r in conn.execute(select(variants))] == [4401]
    assert due_marks(engine, clock) == set()


def test_reconcile_publishes_variants_nothing_was_written_for(
    api: ApiClient,
    engine: Engine,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    publisher: StockPublisher,
) -> None:
    stock(api, TEE=4)
    with engine.begin() as conn:  # a variant known before this release: never marked
        conn.execute(delete(dirty_skus))
        conn.execute(
            variants.insert().values(shop=SHOP, variant_id=4409, sku="TEE", updated_at=clock())
        )
    assert publisher.run_round().claimed == 0
    assert publisher.reconcile() == 1
    publisher.run_round()
    assert published(stand_in, 4409) == {"v": 1, "free": 4, "h": {}}
    assert publisher.reconcile() == 0, "nothing left to reconcile"


def test_metrics_show_the_backlog_and_its_age(
    app: Flask, api: ApiClient, clock: FakeClock, stand_in: ShopifyStandIn
) -> None:
    stock(api, TEE=2, NEW=1)
    cart(app.test_client(), "cart-a", 1, (4401, "TEE", 1))
    clock.advance(7)
    found = samples(app)
    assert found[("bazico_stock_publish_backlog", (("state", "due"),))] == 1
    assert found[("bazico_stock_publish_backlog", (("state", "waiting_for_variant"),))] == 1
    assert found[("bazico_stock_publish_oldest_change_age_seconds", ())] == pytest.approx(7.0)


def test_a_hold_named_on_a_joined_line_is_published_under_the_lines_id(
    app: Flask,
    api: ApiClient,
    engine: Engine,
    clock: FakeClock,
    stand_in: ShopifyStandIn,
    publisher: StockPublisher,
) -> None:
    stock(api, TEE=5)
    cart(app.test_client(), "cart-map", 1, (4401, "TEE", 1))
    first, second = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:  # two holds of one cart line: the second joined the first
        for hold, ref in ((first, None), (second, first)):
            conn.execute(
                holds.insert().values(
                    id=hold,
                    sku="TEE",
                    quantity=1,
                    holder="cart-b",
                    source="proxy",
                    status="active",
                    created_at=clock(),
                    expires_at=clock() + TTL_DELTA,
                    updated_at=clock(),
                    line_ref=ref,
                )
            )
    publisher.run_round()
    value = published(stand_in, 4401)
    assert value is not None and value["h"][str(first)] == 2 and str(second) not in value["h"]


@pytest.mark.postgres
def test_publishing_while_carts_reserve_never_deadlocks(
    postgres_url: str, stand_in: ShopifyStandIn
) -> None:
    """The fast path marks several SKUs in one statement while the publisher clears them: both
    lock marks in SKU order, so neither waits for the other in a cycle (a deadlock answered
    503 to shoppers before the publisher locked its marks in order)."""
    environ = app_environ(
        postgres_url,
        SHOPIFY_ADMIN_URL=stand_in.url,
        SHOPIFY_ACCESS_TOKEN=TOKEN,
        SHOPIFY_PUBLISH_MIN_INTERVAL_SECONDS="0",
    )
    app = create_app(environ)  # the wall clock: rounds follow each other as in the worker
    runtime: Runtime = app.extensions[EXTENSION_KEY]
    skus_ = [f"D{n:02}" for n in range(12)]
    try:
        api = ApiClient(app.test_client())
        stock(api, **dict.fromkeys(skus_, 10**6))
        lines = [(7000 + n, sku, 1) for n, sku in enumerate(skus_)]
        cart(app.test_client(), "cart-map", 1, *lines)
        publisher = StockPublisher(runtime)
        failures: list[BaseException] = []
        stop = threading.Event()

        def reserve_batches(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                chosen = rng.sample(skus_, 6)
                now = runtime.clock()
                until = now + TTL_DELTA
                batch = [
                    Hold(new_hold_id(), sku, 1, None, HoldSource.API, HoldStatus.ACTIVE, now, until)
                    for sku in chosen
                ]
                try:
                    reserve_batch(runtime.engine, batch, runtime.clock())
                except Exception as exc:  # collected, asserted below
                    failures.append(exc)

        threads = [threading.Thread(target=reserve_batches, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        rounds = 0
        deadline = time.monotonic() + 4
        try:
            while time.monotonic() < deadline:
                publisher.run_round()
                rounds += 1
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        assert failures == [], failures[:3]
        assert rounds > 5
    finally:
        runtime.engine.dispose()
