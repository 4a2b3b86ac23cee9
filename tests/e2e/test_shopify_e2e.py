"""A shopper's path end to end on PostgreSQL: signed webhooks over HTTP to the Procfile's web."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from tests.support.ledger import assert_ledger_balanced, figures, hold_count
from tests.support.procfile import WebOnPostgres, call
from tests.support.shopify_sender import signed_headers

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
TOKEN = "e2e-token"
SECRET = "e2e-shopify-secret"
SHOP = "bazico-e2e.myshopify.com"


@pytest.fixture
def web(web_on_postgres: WebOnPostgres) -> Iterator[tuple[int, Engine]]:
    env = {
        "STOCK_API_TOKEN": TOKEN,
        "SHOPIFY_API_SECRET": SECRET,
        "SHOPIFY_SHOP_DOMAIN": SHOP,
        "APP_ENV": "test",
        "WEB_CONCURRENCY": "2",
    }
    with web_on_postgres("shopify_e2e", env) as served:
        yield served.port, served.engine


def send(port: int, topic: str, payload: dict[str, Any]) -> str:
    body = json.dumps(payload).encode()
    response = requests.post(
        f"http://127.0.0.1:{port}/webhooks/shopify",
        data=body,
        headers=signed_headers(body, topic, secret=SECRET, shop=SHOP),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def cart(token: str, minute: int, lines: dict[str, int]) -> dict[str, Any]:
    return {
        "id": token,
        "token": token,
        "updated_at": f"2026-11-27T12:{minute:02d}:00Z",
        "line_items": [
            {"id": i, "sku": s, "quantity": q} for i, (s, q) in enumerate(lines.items())
        ],
    }


def test_cart_update_checkout_order_over_http(web: tuple[int, Engine]) -> None:
    port, engine = web
    for sku, on_hand in {"TEE": 5, "CAP": 2, "SOCK": 3}.items():
        assert call(port, "PUT", f"/stock/{sku}", {"on_hand": on_hand}, token=TOKEN)[0] == 200

    assert send(port, "carts/create", cart("cart-e2e", 0, {"TEE": 1})) == "applied"
    assert (
        send(port, "carts/update", cart("cart-e2e", 1, {"TEE": 3, "CAP": 2, "SOCK": 1}))
        == "applied"
    )
    assert send(port, "carts/update", cart("cart-e2e", 2, {"TEE": 2, "CAP": 2})) == "applied"
    assert figures(engine, "SOCK")["reserved"] == 0, "the removed line was released"
    assert send(port, "checkouts/update", {"token": "chk", "cart_token": "cart-e2e"}) == "applied"

    order = {
        "id": 91001,
        "name": "#91001",
        "cart_token": "cart-e2e",
        "line_items": [
            {"id": 1, "sku": "TEE", "quantity": 2},
            {"id": 2, "sku": "CAP", "quantity": 2},
        ],
    }
    assert send(port, "orders/create", order) == "confirmed"
    assert send(port, "orders/paid", order) == "duplicate_order"
    assert hold_count(engine, status="active") == 0
    assert figures(engine, "TEE") == {"on_hand": 5, "reserved": 0, "committed": 2, "available": 3}
    assert figures(engine, "CAP") == {"on_hand": 2, "reserved": 0, "committed": 2, "available": 0}

    # Another shopper's order for a CAP that no longer exists: sold by Shopify, flagged here.
    late = {"id": 91002, "name": "#91002", "line_items": [{"id": 1, "sku": "CAP", "quantity": 1}]}
    assert send(port, "orders/create", late) == "confirmed"
    assert figures(engine, "CAP")["available"] == -1
    assert_ledger_balanced(engine)
