"""/metrics in one process: the token, and counters that follow what the service did."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from shopify_app import create_app
from shopify_app.migrations_runner import upgrade
from shopify_app.runtime import EXTENSION_KEY
from tests.support.app import SHOP, SHOPIFY_SECRET, TOKEN, app_environ
from tests.support.metrics import samples
from tests.support.shopify_sender import body_of, signed_headers


@pytest.fixture
def metered_app(sqlite_url: str, request: pytest.FixtureRequest) -> Iterator[Flask]:
    log_level = getattr(request, "param", "INFO")
    app = create_app(
        app_environ(sqlite_url, METRICS_TOKEN="metrics-secret-token", LOG_LEVEL=log_level)
    )
    upgrade(app.extensions[EXTENSION_KEY].engine)
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


def test_metrics_asks_for_its_token_when_one_is_set(metered_app: Flask) -> None:
    client = metered_app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    body = client.get("/metrics", headers={"Authorization": "Bearer metrics-secret-token"})
    assert "metrics-secret-token" not in body.get_data(as_text=True)


# Below LOG_LEVEL the events are not logged, and the hot path leaves out the fields only the
# log reads (stock/repository.hold_events): the counters count the same.
@pytest.mark.parametrize("metered_app", ["INFO", "WARNING"], indirect=True)
def test_counters_follow_reservations_webhooks_and_oversells(metered_app: Flask) -> None:
    before = samples(metered_app)
    client = metered_app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    client.put("/stock/BZ-CNT", json={"on_hand": 1}, headers=auth)
    assert client.post("/stock/BZ-CNT/reserve", json={}, headers=auth).status_code == 200
    assert client.post("/stock/BZ-CNT/reserve", json={}, headers=auth).status_code == 409
    assert client.post("/stock/NOPE/reserve", json={}, headers=auth).status_code == 404
    order = {
        "id": 9001,
        "name": "#9001",
        "line_items": [{"id": 1, "sku": "BZ-CNT", "quantity": 2, "price": "10.00"}],
    }
    raw = body_of(order)
    headers = signed_headers(raw, "orders/create", secret=SHOPIFY_SECRET, shop=SHOP)
    assert client.post("/webhooks/shopify", data=raw, headers=headers).status_code == 200
    assert client.post("/webhooks/shopify", data=raw, headers=headers).status_code == 200
    forged = signed_headers(raw, "orders/create", secret="wrong", shop=SHOP)
    assert client.post("/webhooks/shopify", data=raw, headers=forged).status_code == 401
    after = samples(metered_app)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    reservations = "bazico_reservations_total"
    assert delta(reservations, channel="api", outcome="granted") == 1
    assert delta(reservations, channel="api", outcome="sold_out") == 1
    assert delta(reservations, channel="api", outcome="unknown_sku") == 1
    webhooks = "bazico_webhooks_total"
    assert delta(webhooks, source="shopify", topic="orders/create", outcome="confirmed") == 1
    assert delta(webhooks, source="shopify", topic="orders/create", outcome="duplicate") == 1
    assert delta(webhooks, source="shopify", topic="orders/create", outcome="unauthorized") == 1
    assert delta("bazico_confirmations_total", channel="shopify", outcome="confirmed") == 1
    # 2 sold, 1 was on hand and it was held by someone else: both units were oversold
    assert delta("bazico_oversold_units_total") == 2
    latency = "bazico_http_request_duration_seconds_count"
    assert delta(latency, route="/stock/<sku>/reserve", method="POST", status="409") == 1
    assert after[("bazico_stock_available", (("sku", "BZ-CNT"),))] == -2
