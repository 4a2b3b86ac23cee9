"""Denial-of-inventory limits: per-cart caps in the ledger, request rates per address and cart.

Runs on SQLite and on PostgreSQL (``database_url``). Every refusal is checked to change nothing
but the rate counters (``snapshot`` leaves those out: counting refusals is their job).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, func, select

from shopify_app import create_app
from shopify_app.migrations_runner import upgrade
from shopify_app.ratelimit import rate_limit_counters
from shopify_app.runtime import EXTENSION_KEY
from shopify_app.shopify.tables import carts
from shopify_app.stock.tables import holds
from tests.support.app import ApiClient, app_environ
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures, held_by, snapshot
from tests.support.metrics import samples
from tests.support.orders import cart_payload
from tests.support.shopify_sender import deliver, signed_query

CAPS = {"HOLD_MAX_UNITS_PER_SKU": "3", "HOLD_MAX_ACTIVE_HOLDS": "4"}
NO_RATES = {"RATE_LIMIT_PER_IP": "off", "RATE_LIMIT_PER_CART": "off"}


def make(database_url: str, clock: FakeClock, **env: str) -> Flask:
    app = create_app(
        app_environ(database_url, METRICS_TOKEN="metrics-secret-token", **env), clock=clock
    )
    engine = app.extensions[EXTENSION_KEY].engine
    if engine.dialect.name == "sqlite":
        upgrade(engine)
    return app


@pytest.fixture
def capped(database_url: str, clock: FakeClock) -> Iterator[Flask]:
    app = make(database_url, clock, **CAPS, **NO_RATES)
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


def engine_of(app: Flask) -> Engine:
    return app.extensions[EXTENSION_KEY].engine


def reserve(api: ApiClient, sku: str, **body: Any) -> Any:
    return api.post(f"/stock/{sku}/reserve", json=body)


def stock(api: ApiClient, **levels: int) -> None:
    for sku, on_hand in levels.items():
        assert api.put(f"/stock/{sku}", json={"on_hand": on_hand}).status_code == 200


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["error"] == code and body["message"], body
    return body


# --- per-cart caps -----------------------------------------------------------------------------


def test_a_cart_holds_at_most_the_cap_of_one_sku(capped: Flask, clock: FakeClock) -> None:
    api, engine = ApiClient(capped.test_client()), engine_of(capped)
    stock(api, HOT=100)
    before_metrics = samples(capped)
    assert reserve(api, "HOT", quantity=2, holder="bot").status_code == 200
    assert reserve(api, "HOT", quantity=1, holder="bot").status_code == 200
    before = snapshot(engine)
    response = reserve(api, "HOT", quantity=1, holder="bot")
    body = refused(response, 429, "hold_limit_exceeded")
    assert body["limit"] == "units_per_sku" and body["maximum"] == 3 and body["held"] == 3
    assert body["message"].startswith("Limite de 3 unidades")
    assert body["message"].endswith("Tente de novo em 900 s."), "the wait, in Portuguese"
    # The soonest of its holds runs out in one TTL (900 s): then one unit fits again.
    assert response.headers["Retry-After"] == "900" == str(body["retry_after"])
    assert snapshot(engine) == before, "a refused hold changes nothing"
    # Other carts, and requests without a holder, are not affected.
    assert reserve(api, "HOT", quantity=3, holder="honest").status_code == 200
    assert reserve(api, "HOT", quantity=10).status_code == 200
    # Once the bot's holds run out, it may hold again (up to the cap).
    clock.advance(901)
    assert reserve(api, "HOT", quantity=3, holder="bot").status_code == 200
    after = samples(capped)
    key = ("bazico_limit_refusals_total", (("channel", "api"), ("limit", "units_per_sku")))
    assert after[key] - before_metrics.get(key, 0.0) == 1
    # Every earlier hold has run out: buyers see only the bot's new three units held.
    assert api.get("/stock/HOT").get_json()["reserved"] == 3
    assert_ledger_balanced(engine)


def test_retry_after_waits_for_enough_of_the_carts_units(capped: Flask, clock: FakeClock) -> None:
    api = ApiClient(capped.test_client())
    stock(api, HOT=100)
    assert reserve(api, "HOT", quantity=1, holder="c", ttl_seconds=60).status_code == 200
    assert reserve(api, "HOT", quantity=2, holder="c", ttl_seconds=600).status_code == 200
    # Two more units need both holds gone: the later one, in 600 s.
    response = reserve(api, "HOT", quantity=2, holder="c")
    assert refused(response, 429, "hold_limit_exceeded")["retry_after"] == 600
    # One more unit needs only the first: 60 s.
    assert refused(reserve(api, "HOT", holder="c"), 429, "hold_limit_exceeded")["retry_after"] == 60


def test_more_than_the_cap_at_once_is_422(capped: Flask) -> None:
    api, engine = ApiClient(capped.test_client()), engine_of(capped)
    stock(api, HOT=100)
    before = snapshot(engine)
    response = reserve(api, "HOT", quantity=4, holder="c")
    body = refused(response, 422, "hold_limit_exceeded")
    assert "Retry-After" not in response.headers and "retry_after" not in body
    assert snapshot(engine) == before


def test_a_cart_holds_at_most_the_cap_of_active_holds(capped: Flask) -> None:
    api, engine = ApiClient(capped.test_client()), engine_of(capped)
    stock(api, A=9, B=9, C=9, D=9, E=9)
    ids = [reserve(api, sku, holder="bot").get_json()["reservation_id"] for sku in "ABC"]
    before = snapshot(engine)
    # Two new holds at once would make five: all or nothing.
    lines = {"lines": [{"sku": "D"}, {"sku": "E"}], "holder": "bot"}
    body = refused(api.post("/stock/reserve", json=lines), 429, "hold_limit_exceeded")
    assert body["limit"] == "active_holds" and body["maximum"] == 4 and body["held"] == 3
    assert snapshot(engine) == before
    assert reserve(api, "D", holder="bot").status_code == 200
    refused(reserve(api, "E", holder="bot"), 429, "hold_limit_exceeded")
    # A released hold frees its place at once.
    assert api.delete(f"/stock/reservations/{ids[0]}").status_code == 204
    assert reserve(api, "E", holder="bot").status_code == 200
    assert held_by(engine, "bot") == {"B": 1, "C": 1, "D": 1, "E": 1}
    assert_ledger_balanced(engine)


def test_the_cap_holds_under_concurrent_requests_of_one_cart(capped: Flask) -> None:
    """Twenty threads of one cart race on one SKU and on eight: never over either cap."""
    api, engine = ApiClient(capped.test_client()), engine_of(capped)
    skus = [f"S{i}" for i in range(8)]
    stock(api, HOT=100, **{sku: 10 for sku in skus})

    def one(i: int) -> int:
        client = ApiClient(capped.test_client())
        sku = "HOT" if i % 2 else skus[i % len(skus)]
        return int(reserve(client, sku, holder="racer").status_code)

    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(one, range(40)))
    assert set(codes) <= {200, 429}, codes
    held = held_by(engine, "racer")
    assert held.get("HOT", 0) <= 3
    with engine.connect() as conn:
        active = conn.execute(
            select(func.count()).where(holds.c.holder == "racer", holds.c.status == "active")
        ).scalar()
    assert active == codes.count(200) <= 4
    assert_ledger_balanced(engine)


def test_the_cart_webhook_holds_no_more_than_the_caps(capped: Flask) -> None:
    client, engine = capped.test_client(), engine_of(capped)
    api = ApiClient(client)
    stock(api, HOT=100, A=9, B=9, C=9, D=9)
    before = samples(capped)
    # A bot can put 50 units of a hot SKU in a Shopify cart; the webhook holds three of them.
    lines = {"HOT": 50, "A": 1, "B": 1, "C": 1}
    deliver(client, cart_payload("bot", "2026-11-27T12:00:00Z", lines), "carts/create")
    assert held_by(engine, "bot") == {"HOT": 3, "A": 1, "B": 1, "C": 1}
    assert figures(engine, "HOT")["reserved"] == 3
    # A fifth SKU finds no place left: not held, and what is held stays.
    lines = {"HOT": 50, "A": 1, "B": 1, "C": 1, "D": 1}
    deliver(client, cart_payload("bot", "2026-11-27T12:00:01Z", lines), "carts/update")
    assert held_by(engine, "bot") == {"HOT": 3, "A": 1, "B": 1, "C": 1}
    with engine.connect() as conn:
        shortfalls = conn.execute(select(carts.c.shortfalls).where(carts.c.token == "bot")).scalar()
    assert json.loads(shortfalls) == {"HOT": 47, "D": 1}
    after = samples(capped)
    for limit, count in (("units_per_sku", 2), ("active_holds", 1)):
        key = ("bazico_limit_refusals_total", (("channel", "cart"), ("limit", limit)))
        assert after[key] - before.get(key, 0.0) == count, limit
    # Dropping a SKU and lowering another frees places and units before anything new is held.
    lines = {"HOT": 1, "B": 1, "C": 1, "D": 1}
    deliver(client, cart_payload("bot", "2026-11-27T12:00:02Z", lines), "carts/update")
    assert held_by(engine, "bot") == {"HOT": 1, "B": 1, "C": 1, "D": 1}
    assert_ledger_balanced(engine)


# --- request rates -----------------------------------------------------------------------------


def test_a_cart_over_its_rate_gets_429_with_retry_after(
    database_url: str, clock: FakeClock
) -> None:
    app = make(database_url, clock, RATE_LIMIT_PER_CART="3/minute", RATE_LIMIT_PER_IP="off")
    api, engine = ApiClient(app.test_client()), engine_of(app)
    stock(api, HOT=100)
    before_metrics = samples(app)
    for _ in range(3):
        assert reserve(api, "HOT", holder="fast-cart").status_code == 200
    before = snapshot(engine)
    response = reserve(api, "HOT", holder="fast-cart")
    body = refused(response, 429, "rate_limited")
    assert body["per"] == "cart" and body["limit"] == "3 per 1 minute"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert body["message"].startswith("Muitas tentativas")
    assert snapshot(engine) == before
    # Another cart from the same address is not held back; a holder-less call has no cart rate.
    assert reserve(api, "HOT", holder="slow-cart").status_code == 200
    assert reserve(api, "HOT").status_code == 200
    after = samples(app)
    for name, labels in (
        ("bazico_limit_refusals_total", (("channel", "api"), ("limit", "cart"))),
        ("bazico_reservations_total", (("channel", "api"), ("outcome", "rate_limited"))),
    ):
        assert after[(name, labels)] - before_metrics.get((name, labels), 0.0) == 1
    engine.dispose()


def test_a_rest_caller_is_counted_by_cart_not_by_its_own_address(
    database_url: str, clock: FakeClock
) -> None:
    """The REST API's caller is a server relaying many shoppers: its address is not a shopper's."""
    app = make(database_url, clock, RATE_LIMIT_PER_IP="2/minute", RATE_LIMIT_PER_CART="3/minute")
    api = ApiClient(app.test_client())
    stock(api, HOT=100)
    assert [reserve(api, "HOT").status_code for _ in range(5)] == [200] * 5
    codes = [reserve(api, "HOT", holder="one-cart").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    engine_of(app).dispose()


def test_the_window_restarts_once_it_has_run_out(database_url: str, clock: FakeClock) -> None:
    app = make(database_url, clock, RATE_LIMIT_PER_CART="2/second", RATE_LIMIT_PER_IP="off")
    api = ApiClient(app.test_client())
    stock(api, HOT=100)
    codes = [reserve(api, "HOT", holder="c").status_code for _ in range(3)]
    if codes != [200, 200, 429]:  # the second's boundary fell between two requests: once more
        time.sleep(1.05)
        codes = [reserve(api, "HOT", holder="c").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    time.sleep(1.05)
    assert reserve(api, "HOT", holder="c").status_code == 200
    engine_of(app).dispose()


def test_the_app_proxy_counts_by_the_shoppers_address_after_the_signature(
    database_url: str, clock: FakeClock
) -> None:
    app = make(database_url, clock, RATE_LIMIT_PER_IP="2/minute", RATE_LIMIT_PER_CART="off")
    client, engine = app.test_client(), engine_of(app)
    stock(ApiClient(client), HOT=100)

    def proxy(ip: str, cart: str, query: str | None = None) -> Any:
        return client.post(
            f"/proxy/stock/HOT/reserve?{query or signed_query(clock)}",
            json={"cart_token": cart},
            headers={"X-Forwarded-For": ip},
        )

    # Forged requests (bad signature) in the victim's name are refused before they count.
    for _ in range(5):
        assert (
            proxy("198.51.100.7", "x", query=signed_query(clock, signature="0" * 64)).status_code
            == 401
        )
    assert [proxy("198.51.100.7", f"cart-{i}").status_code for i in range(3)] == [200, 200, 429]
    # A new cart does not get round the address; another shopper is unaffected.
    body = refused(proxy("198.51.100.7", "fresh"), 429, "rate_limited")
    assert body["per"] == "ip"
    assert proxy("203.0.113.9", "cart-z").status_code == 200
    assert figures(engine, "HOT")["reserved"] == 3
    with engine.connect() as conn:
        keys = conn.execute(select(rate_limit_counters.c.key)).scalars().all()
    assert any("198.51.100.7" in key for key in keys)
    engine.dispose()


def test_the_counters_are_shared_by_every_app_on_the_database(
    database_url: str, clock: FakeClock
) -> None:
    """Two apps (two processes' worth of state) on one database share one count."""
    env = {"RATE_LIMIT_PER_CART": "4/minute", "RATE_LIMIT_PER_IP": "off"}
    first = make(database_url, clock, **env)
    second = create_app(app_environ(database_url, **env), clock=clock)
    stock(ApiClient(first.test_client()), HOT=100)
    clients = [ApiClient(first.test_client()), ApiClient(second.test_client())]
    codes = [reserve(clients[i % 2], "HOT", holder="shared").status_code for i in range(6)]
    assert codes == [200, 200, 200, 200, 429, 429]
    engine_of(second).dispose()
    engine_of(first).dispose()


def test_concurrent_hits_are_counted_exactly(database_url: str, clock: FakeClock) -> None:
    app = make(database_url, clock, RATE_LIMIT_PER_CART="25/minute", RATE_LIMIT_PER_IP="off")
    stock(ApiClient(app.test_client()), HOT=1000)
    start = threading.Barrier(8)

    def worker(_: int) -> list[int]:
        api = ApiClient(app.test_client())
        start.wait()
        return [reserve(api, "HOT", holder="swarm").status_code for _ in range(10)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = [c for batch in pool.map(worker, range(8)) for c in batch]
    assert codes.count(200) == 25 and codes.count(429) == 55
    engine_of(app).dispose()


def test_rate_settings_are_checked_at_start(database_url: str) -> None:
    from shopify_app.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        create_app(
            app_environ(
                database_url,
                RATE_LIMIT_PER_IP="lots",
                RATE_LIMIT_STORAGE_URL="memory://",
                HOLD_MAX_UNITS_PER_SKU="-1",
            )
        )
    text = str(caught.value)
    assert "RATE_LIMIT_PER_IP" in text and "RATE_LIMIT_STORAGE_URL" in text
    assert "HOLD_MAX_UNITS_PER_SKU" in text


def test_client_address_trusts_only_the_configured_proxies(
    database_url: str, clock: FakeClock
) -> None:
    app = make(database_url, clock, TRUSTED_PROXY_HOPS="1")
    rates = app.extensions[EXTENSION_KEY].rate_limits
    chain = "6.6.6.6, 198.51.100.7, 192.0.2.1"  # forged, Shopify's shopper entry, Shopify itself
    with app.test_request_context(headers={"X-Forwarded-For": chain}):
        from flask import request

        assert rates.client_ip(request) == "192.0.2.1"
        assert rates.client_ip(request, via_shopify=True) == "198.51.100.7"
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        from flask import request

        assert rates.client_ip(request) == "10.1.2.3"
    engine_of(app).dispose()


def test_another_limits_storage_counts_the_same_way(sqlite_url: str) -> None:
    """A RATE_LIMIT_STORAGE_URL storage (redis://, memcached://…) goes through limits' own
    strategy; memory:// stands in for one here (the configuration refuses it for a service)."""
    from dataclasses import replace

    from shopify_app.config import load_settings
    from shopify_app.ratelimit import RateLimited, RateLimits

    settings = replace(
        load_settings(app_environ(sqlite_url, RATE_LIMIT_PER_CART="2/minute")),
        rate_limit_storage_url="memory://",
    )
    rates = RateLimits(settings, engine=None)  # type: ignore[arg-type] - no database needed
    rates.check("reserve", ip=None, cart="c")
    rates.check("reserve", ip=None, cart="c")
    with pytest.raises(RateLimited) as caught:
        rates.check("reserve", ip=None, cart="c")
    assert caught.value.key == "cart" and 1 <= caught.value.retry_after <= 60
    rates.check("reserve", ip=None, cart="other")
