"""POST /webhooks/shopify: every saved delivery, signed as Shopify signs it, and every forgery.

Runs on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from shopify_app.crypto import TokenCipher
from shopify_app.orders.tables import order_adjustments, order_lines, order_stock_entries, orders
from shopify_app.shopify.client import TokenGrant
from shopify_app.shopify.shops import save_tokens, shops
from shopify_app.shopify.tables import carts, webhook_receipts
from shopify_app.stock.tables import holds
from tests.support.app import SHOP, SHOPIFY_SECRET, ApiClient
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures, held_by, snapshot
from tests.support.orders import cart_payload, order_payload
from tests.support.shopify_sender import FIXTURE_TOPICS, deliver, fixture, signed_headers


def rows(engine: Engine, table: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(table)))


# --- every saved delivery: 200 and its documented effect ----------------------------------

FIXTURE_SKUS = {
    "example-shirt-s": 5,
    "IPOD2008PINK": 4,
    "SKU2006-001": 3,
    "SKU2006-020": 3,
    "SKU2006-035": 3,
    "LENS-PROTECT-2YR": 3,
    "CASE-LEATHER-PREM": 3,
}


def effect_cart_sample(engine: Engine, _: Any) -> None:
    assert held_by(engine, "exampleCartId") == {"example-shirt-s": 3}
    assert figures(engine, "example-shirt-s")["available"] == 2


def effect_cart_2024(engine: Engine, _: Any) -> None:
    assert held_by(engine, "eeafa272cebfd4b22385bc4b645e762c") == {"example-shirt-s": 3}


def effect_checkout(engine: Engine, before: Any) -> None:
    # The checkout's cart (the 2024 cart, delivered first by the test) keeps its holds longer,
    # and the checkout token is remembered to link the order later.
    with engine.connect() as conn:
        row = conn.execute(
            select(carts).where(carts.c.token == "eeafa272cebfd4b22385bc4b645e762c")
        ).one()
        hold = conn.execute(select(holds).where(holds.c.holder == row.token)).one()
    assert row.checkout_token == "123123123" or row.checkout_token is not None
    assert (hold.expires_at - hold.created_at).total_seconds() > 1800 - 1


def effect_nothing_on_ledger(engine: Engine, before: Any) -> None:
    after = snapshot(engine)
    for table in ("skus", "holds", "stock_movements", "orders", "order_lines", "carts"):
        assert after[table] == before[table], table


def effect_order_sample(engine: Engine, _: Any) -> None:
    # The sample order #9999 arrives already cancelled: recorded, and nothing stays sold.
    (order,) = rows(engine, orders)
    assert (order.order_id, order.status, order.forward_status) == (
        820982911946154508,
        "cancelled",
        "cancelled",
    )
    assert len(rows(engine, order_lines)) == 5
    for sku in ("SKU2006-001", "SKU2006-020", "SKU2006-035", "LENS-PROTECT-2YR"):
        assert figures(engine, sku) == {"on_hand": 3, "reserved": 0, "committed": 0, "available": 3}


def effect_uninstalled(engine: Engine, before: Any) -> None:
    effect_nothing_on_ledger(engine, before)
    (shop,) = rows(engine, shops)
    assert shop.uninstalled_at is not None
    assert shop.access_token_encrypted is None and shop.refresh_token_encrypted is None


def effect_unknown_order_cancelled(engine: Engine, _: Any) -> None:
    (order,) = rows(engine, orders)
    assert order.status == "cancelled" and rows(engine, order_lines) == []


def effect_adjustment_of_cancelled_sample(engine: Engine, before: Any) -> None:
    # The sample order #9999 is cancelled (all its units went back): the refund or edit of it
    # is recorded once, and moves nothing.
    after = snapshot(engine)
    for table in ("skus", "holds", "stock_movements", "order_lines", "carts"):
        assert after[table] == before[table], table
    (applied,) = rows(engine, order_adjustments)
    assert applied.order_id == 820982911946154508
    assert applied.adjustment in ("refund:890088186047892319", "edit:78912328")
    assert rows(engine, order_stock_entries) == []


EFFECTS: dict[str, tuple[list[str], Callable[[Engine, Any], None]]] = {
    # fixture: (deliveries sent first, check)
    "carts_create.json": ([], effect_cart_sample),
    "carts_update.json": ([], effect_cart_sample),
    "carts_create.raw_2024.json": ([], effect_cart_2024),
    "checkouts_create.json": (["carts_create.raw_2024.json"], effect_checkout),
    "checkouts_update.json": (["carts_create.raw_2024.json"], effect_checkout),
    "checkouts_delete.json": (["carts_create.raw_2024.json"], effect_nothing_on_ledger),
    "orders_create.json": ([], effect_order_sample),
    "orders_paid.json": ([], effect_order_sample),
    "orders_cancelled.json": ([], effect_unknown_order_cancelled),
    "orders_fulfilled.json": ([], effect_nothing_on_ledger),
    "refunds_create.json": (["orders_create.json"], effect_adjustment_of_cancelled_sample),
    "orders_edited.json": (["orders_create.json"], effect_adjustment_of_cancelled_sample),
    "customers_data_request.json": ([], effect_nothing_on_ledger),
    "customers_redact.json": ([], effect_nothing_on_ledger),
    "shop_redact.json": ([], effect_nothing_on_ledger),
    "app_uninstalled.json": (["(installed)"], effect_uninstalled),
}


def test_every_fixture_has_a_documented_effect() -> None:
    assert set(EFFECTS) == set(FIXTURE_TOPICS)


@pytest.mark.parametrize("name", sorted(FIXTURE_TOPICS))
def test_each_fixture_signed_is_applied(
    name: str, client: FlaskClient, api: ApiClient, engine: Engine
) -> None:
    for sku, on_hand in FIXTURE_SKUS.items():
        api.put(f"/stock/{sku}", json={"on_hand": on_hand})
    setup, check = EFFECTS[name]
    for earlier in setup:
        if earlier == "(installed)":
            install_tokens(engine)
            continue
        assert deliver(client, fixture(earlier), FIXTURE_TOPICS[earlier]).status_code == 200
    before = snapshot(engine)
    response = deliver(client, fixture(name), FIXTURE_TOPICS[name])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["status"] != "ignored_topic"
    check(engine, before)
    deliveries = [d for d in setup if d != "(installed)"]
    assert len(rows(engine, webhook_receipts)) == len(deliveries) + 1 or name == "shop_redact.json"
    assert_ledger_balanced(engine)


def install_tokens(engine: Engine) -> None:
    """The shop as a finished OAuth install leaves it: encrypted tokens stored."""
    with engine.begin() as conn:
        save_tokens(
            conn,
            TokenCipher("test-secret"),
            SHOP,
            TokenGrant("shpat_secret", "read_orders", 3600, "shprt_secret", 7776000),
            issued_at=FakeClock().now,
            now=FakeClock().now,
        )


# --- forgeries: 401 and nothing changes -------------------------------------------------------


def _one_byte_changed(raw: bytes) -> bytes:
    index = raw.index(b'"quantity": 3') + len(b'"quantity": ')
    return raw[:index] + b"9" + raw[index + 1 :]


@pytest.mark.parametrize(
    "forge",
    ["one_byte", "wrong_secret", "no_header", "empty_header", "other_shop", "bad_shop_domain"],
)
@pytest.mark.parametrize("name", sorted(FIXTURE_TOPICS))
def test_forged_deliveries_are_401_and_change_nothing(
    name: str, forge: str, client: FlaskClient, api: ApiClient, engine: Engine
) -> None:
    api.put("/stock/example-shirt-s", json={"on_hand": 5})
    raw = fixture(name)
    topic = FIXTURE_TOPICS[name]
    before = snapshot(engine)
    headers = signed_headers(raw, topic, secret=SHOPIFY_SECRET, shop=SHOP)
    body = raw
    if forge == "one_byte":
        body = _one_byte_changed(raw) if b'"quantity": 3' in raw else raw + b" "
    elif forge == "wrong_secret":
        headers = signed_headers(raw, topic, secret="not-the-secret", shop=SHOP)
    elif forge == "no_header":
        del headers["X-Shopify-Hmac-Sha256"]
    elif forge == "empty_header":
        headers["X-Shopify-Hmac-Sha256"] = ""
    elif forge == "other_shop":
        headers["X-Shopify-Shop-Domain"] = "another-store.myshopify.com"
    elif forge == "bad_shop_domain":
        headers["X-Shopify-Shop-Domain"] = f"{SHOP}.evil.com"
    response = client.post("/webhooks/shopify", data=body, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] in ("invalid_hmac", "unknown_shop")
    assert snapshot(engine) == before


def test_previous_secret_is_accepted_during_rotation(database_url: str, clock: FakeClock) -> None:
    from shopify_app import create_app
    from shopify_app.migrations_runner import upgrade
    from tests.support.app import app_environ, engine_of

    app = create_app(
        app_environ(database_url, SHOPIFY_API_SECRET="new", SHOPIFY_API_SECRET_PREVIOUS="old"),
        clock=clock,
    )
    if engine_of(app).dialect.name == "sqlite":
        upgrade(engine_of(app))
    client = app.test_client()
    raw = fixture("orders_fulfilled.json")
    assert deliver(client, raw, "orders/fulfilled", secret="old").status_code == 200
    assert deliver(client, raw, "orders/fulfilled", secret="new").status_code == 200
    assert deliver(client, raw, "orders/fulfilled", secret="older").status_code == 401
    engine_of(app).dispose()


def test_unreadable_bodies_are_400(client: FlaskClient, engine: Engine) -> None:
    before = snapshot(engine)
    assert deliver(client, b"{not json", "carts/update").status_code == 400
    assert deliver(client, b"[1, 2]", "carts/update").status_code == 400
    no_token = {"updated_at": "2026-11-27T12:00:00Z", "line_items": []}
    assert deliver(client, no_token, "carts/update").status_code == 400
    assert snapshot(engine) == before


# --- duplicates and ordering ------------------------------------------------------------------


def test_a_repeated_delivery_is_applied_once(
    client: FlaskClient, api: ApiClient, engine: Engine
) -> None:
    api.put("/stock/TEE", json={"on_hand": 10})
    order = order_payload(5001, None, {"TEE": 2})
    first = deliver(client, order, "orders/create", webhook_id="wh-1")
    assert first.get_json()["status"] == "confirmed"
    before = snapshot(engine)
    again = deliver(client, order, "orders/create", webhook_id="wh-1")
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    assert snapshot(engine) == before
    # A second subscription's delivery of the same event has its own id: still sold once.
    other = deliver(client, order, "orders/create", webhook_id="wh-2")
    assert other.get_json()["status"] == "duplicate_order"
    assert figures(engine, "TEE")["committed"] == 2
    assert_ledger_balanced(engine)


def test_cart_updates_out_of_order_end_as_if_in_order(
    client: FlaskClient, api: ApiClient, engine: Engine
) -> None:
    for sku in ("A", "B", "C"):
        api.put(f"/stock/{sku}", json={"on_hand": 20})
    states = [
        {"A": 1},
        {"A": 3, "B": 1},
        {"A": 2, "B": 2, "C": 1},
        {"B": 4, "C": 1},
        {"A": 1, "C": 3},
    ]
    updates = [
        cart_payload("cart-x", f"2026-11-27T12:00:0{i}Z", lines) for i, lines in enumerate(states)
    ]
    random.Random(3).shuffle(updates)
    outcomes = [deliver(client, u, "carts/update").get_json()["status"] for u in updates]
    assert "stale" in outcomes
    assert held_by(engine, "cart-x") == {"A": 1, "C": 3}
    assert_ledger_balanced(engine)


def test_cart_update_records_the_shortfall(
    client: FlaskClient, api: ApiClient, engine: Engine
) -> None:
    api.put("/stock/LAST", json={"on_hand": 1})
    api.post("/stock/LAST/reserve", json={"holder": "someone-else"})
    api.put("/stock/LAST", json={"on_hand": 2})
    deliver(
        client,
        cart_payload("c?key=abc", "2026-11-27T12:00:00Z", {"LAST": 3, "GHOST": 1}),
        "carts/create",
    )
    assert held_by(engine, "c") == {"LAST": 1}, "the ?key= suffix is not part of the token"
    with engine.connect() as conn:
        shortfalls = conn.execute(select(carts.c.shortfalls).where(carts.c.token == "c")).scalar()
    assert json.loads(shortfalls) == {"LAST": 2}
    assert_ledger_balanced(engine)
