"""The App Proxy routes: signed by Shopify, the holder is the shopper's cart token."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from tests.support.app import SHOP, ApiClient
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, snapshot
from tests.support.shopify_sender import signed_query


def test_signed_reserve_holds_for_the_cart_then_409(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    api.put("/stock/LAST", json={"on_hand": 1})
    query = signed_query(clock)
    body = {"quantity": 1, "cart_token": "c1-shopper?key=abc"}
    response = client.post(f"/proxy/stock/LAST/reserve?{query}", json=body)
    assert response.status_code == 200, response.get_json()
    hold = response.get_json()
    assert hold["sku"] == "LAST" and hold["quantity"] == 1

    refused = client.post(f"/proxy/stock/LAST/reserve?{query}", json={"cart_token": "other"})
    assert refused.status_code == 409
    assert refused.get_json()["error"] == "out_of_stock"
    assert refused.get_json()["message"].startswith("Esgotado")

    shown = client.get(f"/proxy/stock/LAST?{query}")
    assert shown.status_code == 200 and shown.get_json()["available"] == 0
    # The hold belongs to the cart (without the ?key= suffix), so its order can consume it.
    release = api.delete(f"/stock/reservations/{hold['reservation_id']}")
    assert release.status_code == 204
    assert_ledger_balanced(engine)


@pytest.mark.parametrize(
    "case", ["bad_signature", "wrong_secret", "missing_signature", "stale", "future", "other_shop"]
)
def test_unsigned_or_stale_requests_are_401(
    case: str, client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    api.put("/stock/LAST", json={"on_hand": 1})
    now = int(clock.now.timestamp())
    query = {
        "bad_signature": lambda: signed_query(clock, signature="0" * 64),
        "wrong_secret": lambda: signed_query(clock, secret="nope"),
        "missing_signature": lambda: "shop=" + SHOP + f"&timestamp={now}",
        "stale": lambda: signed_query(clock, timestamp=str(now - 600)),
        "future": lambda: signed_query(clock, timestamp=str(now + 600)),
        "other_shop": lambda: signed_query(clock, shop="another.myshopify.com"),
    }[case]()
    before = snapshot(engine)
    response = client.post(f"/proxy/stock/LAST/reserve?{query}", json={"cart_token": "c1"})
    assert response.status_code == 401, response.get_json()
    assert client.get(f"/proxy/stock/LAST?{query}").status_code == 401
    assert snapshot(engine) == before


def test_a_tampered_query_breaks_the_signature(
    client: FlaskClient, api: ApiClient, clock: FakeClock
) -> None:
    api.put("/stock/LAST", json={"on_hand": 1})
    query = signed_query(clock) + "&extra=1"
    assert client.get(f"/proxy/stock/LAST?{query}").status_code == 401


def test_proxy_validates_bodies_and_skus(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    api.put("/stock/LAST", json={"on_hand": 1})
    query = signed_query(clock)
    before = snapshot(engine)
    assert client.post(f"/proxy/stock/LAST/reserve?{query}", json={}).status_code == 422
    bad = {"cart_token": "c1", "quantity": 0}
    assert client.post(f"/proxy/stock/LAST/reserve?{query}", json=bad).status_code == 422
    garbage = client.post(
        f"/proxy/stock/LAST/reserve?{query}", data=b"{", content_type="application/json"
    )
    assert garbage.status_code == 400
    assert (
        client.post(f"/proxy/stock/NOPE/reserve?{query}", json={"cart_token": "c"}).status_code
        == 404
    )
    assert snapshot(engine) == before
