"""With PostgreSQL unreachable every route that needs it answers a fast 503 in JSON, not a 500.

The fast path (``stock/fast_path.py``) checks connections out of the pool itself, where a failed
connect surfaces as the driver's own error; these requests go through it. The full outage, under
load and with a restart, is tests/e2e/test_database_outage.py.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from shopify_app import create_app
from tests.support.app import SHOP, SHOPIFY_SECRET, TOKEN, app_environ, engine_of
from tests.support.shopify_sender import signed_headers

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def down_client() -> Iterator[FlaskClient]:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(app_environ(f"postgresql://nobody@127.0.0.1:{port}/none"))
    yield app.test_client()
    engine_of(app).dispose()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/stock/SKU-1", None),
        ("POST", "/stock/SKU-1/reserve", {"quantity": 1}),
        ("POST", "/stock/reserve", {"lines": [{"sku": "SKU-1"}, {"sku": "SKU-2"}]}),
        ("POST", "/stock/confirm", {"reservation_id": "6f1c1d2e-8f55-4a86-9d57-1c8a3a5c2b10"}),
        ("DELETE", "/stock/reservations/6f1c1d2e-8f55-4a86-9d57-1c8a3a5c2b10", None),
        ("PUT", "/stock/SKU-1", {"on_hand": 3}),
    ],
)
def test_stock_routes_answer_503_json_when_the_database_is_down(
    down_client: FlaskClient, method: str, path: str, body: object
) -> None:
    started = time.monotonic()
    response = down_client.open(path, method=method, json=body, headers=AUTH)
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"] == "unavailable"
    assert response.get_json()["message"]
    assert response.headers["Retry-After"] == "1"
    assert time.monotonic() - started < 5


def test_a_webhook_gets_503_when_the_database_is_down(down_client: FlaskClient) -> None:
    """Shopify retries a delivery that did not get a 2xx: the order is not lost."""
    raw = json.dumps({"id": 1, "name": "#1", "line_items": []}).encode()
    headers = signed_headers(raw, "orders/create", secret=SHOPIFY_SECRET, shop=SHOP)
    response = down_client.post("/webhooks/shopify", data=raw, headers=headers)
    assert response.status_code == 503
    assert response.get_json()["error"] == "unavailable"
