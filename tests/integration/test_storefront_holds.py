"""Storefront holds: pending until a cart webhook lists them, named on the cart line, consumed by
the order that names them (shopify/carts.py, ``sync_cart``; domain.Hold.pending).

Each test runs on SQLite and on PostgreSQL, through the real routes (App Proxy signed as
Shopify signs it, webhooks signed as Shopify signs them) with a clock moved by hand.

Long because the storefront hold rule has many cases (pending, listed, joined, named, consumed),
each through the real routes, and they share the signed-request helpers of this module.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select

from shopify_app.orders.tables import order_lines
from shopify_app.runtime import EXTENSION_KEY
from shopify_app.stock import services
from shopify_app.stock.tables import holds
from tests.support.app import ApiClient
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures, snapshot
from tests.support.shopify_sender import deliver, signed_query

GRACE = 120  # CART_HOLD_GRACE_SECONDS' default
TTL = 900  # RESERVATION_TTL_SECONDS' default


def stock(api: ApiClient, **levels: int) -> None:
    for sku, on_hand in levels.items():
        assert api.put(f"/stock/{sku}", json={"on_hand": on_hand}).status_code == 200


def proxy_reserve(
    client: FlaskClient, clock: FakeClock, sku: str, cart: str, quantity: int = 1
) -> Any:
    body = {"cart_token": cart, "quantity": quantity}
    return client.post(f"/proxy/stock/{sku}/reserve?{signed_query(clock)}", json=body)


def hold_of(client: FlaskClient, clock: FakeClock, sku: str, cart: str, quantity: int = 1) -> str:
    response = proxy_reserve(client, clock, sku, cart, quantity)
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["reservation_id"])


def line(
    sku: str, quantity: int, hold: str | None = None, *, line_id: int = 1, order: bool = False
) -> dict[str, Any]:
    """A cart line (properties an object) or an order line (a list of name/value)."""
    properties: Any = None
    if hold is not None:
        properties = [{"name": "_bazico_hold", "value": hold}] if order else {"_bazico_hold": hold}
    return {
        "id": line_id,
        "key": f"{line_id}:{hold or 'none'}",
        "variant_id": 4400 + line_id,
        "sku": sku,
        "quantity": quantity,
        "properties": properties,
    }


def cart_update(token: str, at: datetime, *lines: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": token,
        "token": token,
        "updated_at": at.isoformat().replace("+00:00", "Z"),
        "line_items": list(lines),
    }


def order(order_id: int, cart: str | None, *lines: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": order_id,
        "name": f"#{order_id}",
        "cart_token": cart,
        "checkout_token": None,
        "cancelled_at": None,
        "note_attributes": [],
        "line_items": list(lines),
    }


def send(client: FlaskClient, payload: dict[str, Any], topic: str, **kw: Any) -> str:
    response = deliver(client, payload, topic, **kw)
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["status"])


def hold_row(engine: Engine, hold_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(holds).where(holds.c.id == uuid.UUID(hold_id))).one()


def order_line_figures(engine: Engine, order_id: int) -> list[tuple[int, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(order_lines).where(order_lines.c.order_id == order_id).order_by("line_id")
        )
        return [(r.from_holds, r.from_available, r.oversold) for r in rows]


def sweep(app: Flask) -> int:
    return services.expire_due(app.extensions[EXTENSION_KEY].uow())


# --- the sequence ----------------------------------------------------------------------


def test_a_webhook_of_the_cart_before_the_add_leaves_the_hold_and_b_gets_409(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, LAST=1, OTHER=3)
    earlier = clock.now - timedelta(seconds=5)
    # 1. shopper A asks for the last unit: a pending hold.
    held = hold_of(client, clock, "LAST", "cart-a")
    assert hold_row(engine, held).listed_at is None
    # 2. Shopify delivers carts/update for an earlier change of A's cart (not listing LAST).
    assert send(client, cart_update("cart-a", earlier, line("OTHER", 1)), "carts/update") == (
        "applied"
    )
    assert figures(engine, "LAST")["reserved"] == 1, "the pending hold was kept"
    # 3. shopper B asks for the same unit: sold out.
    refused = proxy_reserve(client, clock, "LAST", "cart-b")
    assert refused.status_code == 409, refused.get_json()
    # 4. the carts/update that lists A's line: the hold is the cart's now, for a cart's TTL.
    clock.advance(3)
    listed = cart_update("cart-a", clock.now, line("OTHER", 1), line("LAST", 1, held, line_id=2))
    assert send(client, listed, "carts/update") == "applied"
    row = hold_row(engine, held)
    assert row.listed_at is not None and row.status == "active"
    assert row.expires_at == clock.now + timedelta(seconds=TTL)
    assert figures(engine, "LAST") == {"on_hand": 1, "reserved": 1, "committed": 0, "available": 0}
    # ... then A's order: sold from A's hold, nothing oversold.
    placed = order(9001, "cart-a", line("LAST", 1, held, line_id=2, order=True))
    assert send(client, placed, "orders/create") == "confirmed"
    assert order_line_figures(engine, 9001) == [(1, 0, 0)]
    assert figures(engine, "LAST") == {"on_hand": 1, "reserved": 0, "committed": 1, "available": 0}
    assert hold_row(engine, held).status == "confirmed"
    assert_ledger_balanced(engine)


def test_a_pending_hold_that_no_webhook_lists_runs_out_after_the_grace_window(
    app: Flask, client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, LAST=1)
    held = hold_of(client, clock, "LAST", "cart-a")
    assert hold_row(engine, held).expires_at == clock.now + timedelta(seconds=GRACE)
    # Webhooks that never list it do not release it...
    for n in range(3):
        clock.advance(30)
        send(client, cart_update("cart-a", clock.now - timedelta(seconds=n + 1)), "carts/update")
    assert figures(engine, "LAST")["reserved"] == 1
    assert sweep(app) == 0
    # ...the grace window does: the sweeper gives it back, and counts it for the operator.
    unlisted = REGISTRY.get_sample_value("bazico_storefront_holds_unlisted_total") or 0
    clock.advance(GRACE - 90 + 1)
    assert api.get("/stock/LAST").get_json()["available"] == 1, "buyers see it free at once"
    assert sweep(app) == 1
    assert REGISTRY.get_sample_value("bazico_storefront_holds_unlisted_total") == unlisted + 1
    assert hold_row(engine, held).status == "expired"
    assert figures(engine, "LAST") == {"on_hand": 1, "reserved": 0, "committed": 0, "available": 1}
    assert proxy_reserve(client, clock, "LAST", "cart-b").status_code == 200
    assert_ledger_balanced(engine)


def test_a_webhook_listing_fewer_units_than_a_listed_hold_releases_the_difference(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=5)
    held = hold_of(client, clock, "TEE", "cart-a", quantity=3)
    send(client, cart_update("cart-a", clock.now, line("TEE", 3, held)), "carts/update")
    clock.advance(10)
    send(client, cart_update("cart-a", clock.now, line("TEE", 1, held)), "carts/update")
    row = hold_row(engine, held)
    assert (row.status, row.quantity) == ("active", 1), "same hold (the line names it), 1 unit"
    assert figures(engine, "TEE") == {"on_hand": 5, "reserved": 1, "committed": 0, "available": 4}
    clock.advance(10)
    send(client, cart_update("cart-a", clock.now), "carts/update")  # the line removed
    assert hold_row(engine, held).status == "released"
    assert figures(engine, "TEE")["available"] == 5
    assert_ledger_balanced(engine)


def test_a_webhook_never_holds_again_what_a_pending_hold_covers(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=5)
    hold_of(client, clock, "TEE", "cart-a", quantity=2)
    # The line reached the cart without its property (an older theme): matched by SKU.
    send(client, cart_update("cart-a", clock.now, line("TEE", 2)), "carts/update")
    assert figures(engine, "TEE")["reserved"] == 2
    with engine.connect() as conn:
        assert conn.execute(select(holds.c.listed_at)).scalars().all() != [None]
    assert_ledger_balanced(engine)


def test_a_quantity_increase_waits_for_the_webhook_that_shows_it(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=2)
    first = hold_of(client, clock, "TEE", "cart-a")
    send(client, cart_update("cart-a", clock.now, line("TEE", 1, first)), "carts/update")
    clock.advance(5)
    extra = hold_of(client, clock, "TEE", "cart-a")  # the drawer's +1 asks first
    stale = cart_update("cart-a", clock.now - timedelta(seconds=1), line("TEE", 1, first))
    send(client, stale, "carts/update")  # the cart as it was before the +1
    assert hold_row(engine, extra).status == "active" and hold_row(engine, extra).listed_at is None
    assert proxy_reserve(client, clock, "TEE", "cart-b").status_code == 409
    clock.advance(5)
    send(client, cart_update("cart-a", clock.now, line("TEE", 2, first)), "carts/update")
    assert hold_row(engine, extra).listed_at is not None
    assert figures(engine, "TEE") == {"on_hand": 2, "reserved": 2, "committed": 0, "available": 0}
    placed = order(9002, "cart-a", line("TEE", 2, first, order=True))
    send(client, placed, "orders/create")
    assert order_line_figures(engine, 9002) == [(2, 0, 0)]
    assert_ledger_balanced(engine)


def test_a_checkout_that_has_the_line_lists_a_pending_hold(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=2, CAP=2)
    tee = hold_of(client, clock, "TEE", "cart-a")
    cap = hold_of(client, clock, "CAP", "cart-a")
    checkout = {
        "token": "chk-a",
        "cart_token": "cart-a",
        "updated_at": clock.now.isoformat(),
        "line_items": [{"sku": "TEE", "quantity": 1, "properties": []}],
    }
    send(client, checkout, "checkouts/create")
    assert hold_row(engine, tee).expires_at == clock.now + timedelta(seconds=1800)
    # CAP is not in the checkout: still pending, on its grace window.
    assert hold_row(engine, cap).listed_at is None
    assert hold_row(engine, cap).expires_at == clock.now + timedelta(seconds=GRACE)


# --- delivery order does not matter ---------------------------------------------------------


def _deliveries(sku: str, token: str, held: str, start: datetime) -> list[tuple[dict, str]]:
    """A shopper's webhooks after one storefront hold of 2 units of ``sku``: an earlier state,
    the add, a decrease to 1, a checkout; (payload, webhook id)."""
    at = [start + timedelta(seconds=s) for s in (-5, 2, 20)]
    return [
        (cart_update(token, at[0]), f"{token}-w0"),
        (cart_update(token, at[1], line(sku, 2, held)), f"{token}-w1"),
        (cart_update(token, at[2], line(sku, 1, held)), f"{token}-w2"),
    ]


def test_redelivered_and_shuffled_webhooks_leave_the_same_ledger_as_in_order(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, INORDER=3, SHUFFLED=3)
    start = clock.now
    a = hold_of(client, clock, "INORDER", "cart-in", quantity=2)
    b = hold_of(client, clock, "SHUFFLED", "cart-sh", quantity=2)
    clock.advance(30)
    for payload, webhook_id in _deliveries("INORDER", "cart-in", a, start):
        send(client, payload, "carts/update", webhook_id=webhook_id)
    shuffled = _deliveries("SHUFFLED", "cart-sh", b, start)
    shuffled += random.Random(7).sample(shuffled, 2)  # two redeliveries (same webhook id)
    random.Random(11).shuffle(shuffled)
    for payload, webhook_id in shuffled:
        send(client, payload, "carts/update", webhook_id=webhook_id)
    assert figures(engine, "INORDER") == figures(engine, "SHUFFLED")
    assert figures(engine, "SHUFFLED") == {
        "on_hand": 3,
        "reserved": 1,
        "committed": 0,
        "available": 2,
    }
    assert (hold_row(engine, a).quantity, hold_row(engine, a).status) == (1, "active")
    assert (hold_row(engine, b).quantity, hold_row(engine, b).status) == (1, "active")
    assert_ledger_balanced(engine)


# --- hold ids that are not the cart's ---------------------------------------------------------


def test_an_order_naming_another_carts_hold_or_a_made_up_one_never_consumes_it(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, LAST=2)
    theirs = hold_of(client, clock, "LAST", "cart-b")
    send(client, cart_update("cart-b", clock.now, line("LAST", 1, theirs)), "carts/update")
    made_up = str(uuid.uuid4())
    placed = order(
        9003,
        "cart-a",
        line("LAST", 1, theirs, line_id=1, order=True),
        line("LAST", 1, made_up, line_id=2, order=True),
    )
    send(client, placed, "orders/create")
    assert hold_row(engine, theirs).status == "active", "B's hold is untouched"
    # A's order had no hold: it sold from available (1 unit), and the second one was oversold.
    assert order_line_figures(engine, 9003) == [(0, 1, 0), (0, 1, 1)]
    assert figures(engine, "LAST") == {"on_hand": 2, "reserved": 1, "committed": 2, "available": -1}
    assert_ledger_balanced(engine)


def test_a_cart_webhook_naming_another_carts_hold_leaves_it_alone(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, LAST=1)
    theirs = hold_of(client, clock, "LAST", "cart-b")
    forged = cart_update("cart-a", clock.now, line("LAST", 1, theirs))
    send(client, forged, "carts/update")
    row = hold_row(engine, theirs)
    assert (row.holder, row.listed_at, row.status) == ("cart-b", None, "active")
    assert figures(engine, "LAST")["reserved"] == 1, "cart A got no unit: none was free"
    assert_ledger_balanced(engine)


@pytest.mark.parametrize("value", ["not-a-uuid", "", "x" * 300, 42, None])
def test_a_malformed_hold_property_names_nothing(
    value: Any, client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=2)
    bad = line("TEE", 1)
    bad["properties"] = {"_bazico_hold": value}
    send(client, cart_update("cart-a", clock.now, bad), "carts/update")
    assert figures(engine, "TEE")["reserved"] == 1, "held by SKU, as a line without a property"
    assert_ledger_balanced(engine)


def test_an_order_without_a_cart_token_finds_its_cart_by_the_hold_it_names(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, LAST=1, CAP=1)
    held = hold_of(client, clock, "LAST", "cart-a")
    cap = hold_of(client, clock, "CAP", "cart-a")
    send(client, cart_update("cart-a", clock.now, line("LAST", 1, held)), "carts/update")
    send(client, order(9004, None, line("LAST", 1, held, order=True)), "orders/create")
    assert order_line_figures(engine, 9004) == [(1, 0, 0)]
    assert hold_row(engine, cap).status == "released", "the cart is done: nothing of it stays held"
    assert_ledger_balanced(engine)


# --- the App Proxy by variant id ----------------------------------------------------------------


def test_the_proxy_reserves_a_variant_it_has_seen_in_shopifys_payloads(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=1)
    before = snapshot(engine)
    body = {"cart_token": "cart-a", "quantity": 1}
    unknown = client.post(f"/proxy/variants/4401/reserve?{signed_query(clock)}", json=body)
    assert unknown.status_code == 404 and unknown.get_json()["error"] == "unknown_variant"
    assert client.get(f"/proxy/variants/4401?{signed_query(clock)}").status_code == 404
    for bad in ("abc", "0", "9" * 30, "-1", "²", "١٢"):
        response = client.post(f"/proxy/variants/{bad}/reserve?{signed_query(clock)}", json=body)
        assert response.status_code == 404, bad
    assert snapshot(engine) == before
    # A cart webhook shows that variant 4401 carries TEE (another cart's: any payload will do).
    send(client, cart_update("cart-x", clock.now, line("UNTRACKED", 1)), "carts/update")
    send(client, cart_update("cart-y", clock.now, line("TEE", 0)), "carts/update")
    assert client.get(f"/proxy/variants/4401?{signed_query(clock)}").status_code == 404
    order_seen = order(9005, None, {**line("TEE", 1), "variant_id": 4401})
    api.put("/stock/TEE", json={"on_hand": 2})
    send(client, order_seen, "orders/create")  # sells 1 of 2
    shown = client.get(f"/proxy/variants/4401?{signed_query(clock)}")
    assert shown.status_code == 200 and shown.get_json()["sku"] == "TEE"
    granted = client.post(f"/proxy/variants/4401/reserve?{signed_query(clock)}", json=body)
    assert granted.status_code == 200, granted.get_json()
    assert granted.get_json()["sku"] == "TEE"
    sold_out = client.post(
        f"/proxy/variants/4401/reserve?{signed_query(clock)}", json={"cart_token": "cart-b"}
    )
    assert sold_out.status_code == 409
    assert_ledger_balanced(engine)


@pytest.mark.parametrize("case", ["unsigned", "forged", "stale"])
def test_forged_stale_or_unsigned_variant_calls_change_nothing(
    case: str, client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=1)
    send(client, order(9006, None, {**line("TEE", 1), "variant_id": 4401}), "orders/create")
    api.put("/stock/TEE", json={"on_hand": 2})
    query = {
        "unsigned": lambda: "shop=bazico-test.myshopify.com",
        "forged": lambda: signed_query(clock, secret="not-the-secret"),
        "stale": lambda: signed_query(clock, timestamp=str(int(clock.now.timestamp()) - 600)),
    }[case]()
    before = snapshot(engine)
    body = {"cart_token": "cart-a"}
    assert client.post(f"/proxy/variants/4401/reserve?{query}", json=body).status_code == 401
    assert client.post(f"/proxy/stock/TEE/reserve?{query}", json=body).status_code == 401
    assert snapshot(engine) == before


# --- one id per cart line: later units join the line's hold id ----------------------------------


def test_an_increase_joins_the_lines_hold_id_and_still_waits_for_its_webhook(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=2)
    first = hold_of(client, clock, "TEE", "cart-a")
    send(client, cart_update("cart-a", clock.now, line("TEE", 1, first)), "carts/update")
    clock.advance(5)
    body = {"cart_token": "cart-a", "quantity": 1, "hold_id": first}
    more = client.post(f"/proxy/stock/TEE/reserve?{signed_query(clock)}", json=body)
    assert more.status_code == 200, more.get_json()
    extra = more.get_json()
    assert extra["line_hold"] == first and extra["reservation_id"] != first
    # The cart as it was before the +1 names the line's id: that proves nothing of the new unit.
    stale = cart_update("cart-a", clock.now - timedelta(seconds=1), line("TEE", 1, first))
    send(client, stale, "carts/update")
    assert hold_row(engine, extra["reservation_id"]).status == "active"
    assert hold_row(engine, extra["reservation_id"]).listed_at is None
    assert proxy_reserve(client, clock, "TEE", "cart-b").status_code == 409
    clock.advance(5)
    send(client, cart_update("cart-a", clock.now, line("TEE", 2, first)), "carts/update")
    assert hold_row(engine, extra["reservation_id"]).listed_at is not None
    placed = order(9010, "cart-a", line("TEE", 2, first, order=True))
    send(client, placed, "orders/create")
    assert order_line_figures(engine, 9010) == [(2, 0, 0)]
    assert figures(engine, "TEE") == {"on_hand": 2, "reserved": 0, "committed": 2, "available": 0}
    assert_ledger_balanced(engine)


@pytest.mark.parametrize("whose", ["another_cart", "another_sku", "made_up", "released"])
def test_a_hold_id_that_is_not_a_live_hold_of_this_cart_and_sku_is_ignored(
    whose: str, client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=3, CAP=3)
    reference = {
        "another_cart": lambda: hold_of(client, clock, "TEE", "cart-b"),
        "another_sku": lambda: hold_of(client, clock, "CAP", "cart-a"),
        "made_up": lambda: str(uuid.uuid4()),
        "released": lambda: hold_of(client, clock, "TEE", "cart-a"),
    }[whose]()
    if whose == "released":
        assert api.delete(f"/stock/reservations/{reference}").status_code == 204
    body = {"cart_token": "cart-a", "quantity": 1, "hold_id": reference}
    answer = client.post(f"/proxy/stock/TEE/reserve?{signed_query(clock)}", json=body)
    assert answer.status_code == 200, answer.get_json()
    hold = answer.get_json()
    assert hold["line_hold"] == hold["reservation_id"], "a line of its own"
    assert hold_row(engine, hold["reservation_id"]).line_ref is None
    assert_ledger_balanced(engine)


def test_a_malformed_hold_id_in_the_proxy_body_is_422_and_changes_nothing(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=3)
    before = snapshot(engine)
    body = {"cart_token": "cart-a", "quantity": 1, "hold_id": "not-a-hold"}
    answer = client.post(f"/proxy/stock/TEE/reserve?{signed_query(clock)}", json=body)
    assert answer.status_code == 422 and answer.get_json()["error"] == "invalid_request"
    assert snapshot(engine) == before
