"""A shopper's whole path through Shopify's webhooks: cart, checkout, order, cancellation."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from shopify_app.orders.tables import order_lines, orders
from tests.support.app import ApiClient
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures, held_by, hold_count
from tests.support.orders import cart_payload, order_payload
from tests.support.shopify_sender import deliver


def stock(api: ApiClient, **levels: int) -> None:
    for sku, on_hand in levels.items():
        assert api.put(f"/stock/{sku}", json={"on_hand": on_hand}).status_code == 200


def order_row(engine: Engine, order_id: int) -> tuple[Any, list[Any]]:
    with engine.connect() as conn:
        order = conn.execute(select(orders).where(orders.c.order_id == order_id)).one()
        lines = list(
            conn.execute(
                select(order_lines)
                .where(order_lines.c.order_id == order_id)
                .order_by(order_lines.c.line_id)
            )
        )
    return order, lines


def test_cart_to_checkout_to_order(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=10, CAP=5, SOCK=5)
    t = "c1-7f3e9a?key=f00d"  # today's token format, with the Ajax API's key suffix
    deliver(client, cart_payload(t, "2026-11-27T12:00:00Z", {"TEE": 2}), "carts/create")
    assert held_by(engine, "c1-7f3e9a") == {"TEE": 2}

    more = cart_payload(t, "2026-11-27T12:01:00Z", {"TEE": 3, "CAP": 2, "SOCK": 1})
    deliver(client, more, "carts/update")
    assert held_by(engine, "c1-7f3e9a") == {"TEE": 3, "CAP": 2, "SOCK": 1}

    less = cart_payload(t, "2026-11-27T12:02:00Z", {"TEE": 1, "CAP": 2})  # SOCK removed
    deliver(client, less, "carts/update")
    assert held_by(engine, "c1-7f3e9a") == {"TEE": 1, "CAP": 2}
    assert figures(engine, "SOCK")["available"] == 5

    clock.advance(600)
    checkout = {"token": "chk-1", "cart_token": t, "updated_at": "2026-11-27T12:10:00Z"}
    deliver(client, checkout, "checkouts/create")
    clock.advance(1000)  # past the cart TTL (900 s) but within the checkout hold (1800 s)
    assert api.get("/stock/TEE").get_json()["reserved"] == 1, "checkout kept the holds alive"

    # The order links through checkout_token alone (cart_token is deprecated in orders).
    order = order_payload(7001, None, {"TEE": 1, "CAP": 2}, checkout_token="chk-1")
    assert deliver(client, order, "orders/create").get_json()["status"] == "confirmed"
    assert hold_count(engine, status="active") == 0, "no holds left for that cart"
    assert figures(engine, "TEE") == {"on_hand": 10, "reserved": 0, "committed": 1, "available": 9}
    assert figures(engine, "CAP") == {"on_hand": 5, "reserved": 0, "committed": 2, "available": 3}
    row, lines = order_row(engine, 7001)
    assert (row.status, row.forward_status, row.oversold) == ("confirmed", "pending", False)
    assert [(li.sku, li.quantity, li.from_holds, li.from_available) for li in lines] == [
        ("TEE", 1, 1, 0),
        ("CAP", 2, 2, 0),
    ]
    # A late cart update for an ordered cart changes nothing.
    late = cart_payload(t, "2026-11-27T12:30:00Z", {"TEE": 4})
    assert deliver(client, late, "carts/update").get_json()["status"] == "stale"
    assert hold_count(engine, status="active") == 0
    assert_ledger_balanced(engine)

    # Cancelled before it reached Bling: its units are for sale again.
    assert deliver(client, order, "orders/cancelled").get_json()["status"] == "cancelled"
    assert figures(engine, "CAP")["available"] == 5
    assert order_row(engine, 7001)[0].forward_status == "cancelled"
    again = deliver(client, order, "orders/cancelled").get_json()["status"]
    assert again == "already_cancelled"
    assert figures(engine, "CAP")["available"] == 5
    assert_ledger_balanced(engine)


def test_order_linked_by_the_cart_attribute_of_the_theme_snippet(
    client: FlaskClient, api: ApiClient, engine: Engine
) -> None:
    stock(api, TEE=3)
    proxy_hold = api.post("/stock/TEE/reserve", json={"holder": "c1-abc", "quantity": 2})
    assert proxy_hold.status_code == 200
    order = order_payload(
        7002, None, {"TEE": 2}, note_attributes=[{"name": "_bazico_cart", "value": "c1-abc?key=1"}]
    )
    deliver(client, order, "orders/create")
    _, lines = order_row(engine, 7002)
    assert (lines[0].from_holds, lines[0].from_available, lines[0].oversold) == (2, 0, 0)
    assert figures(engine, "TEE") == {"on_hand": 3, "reserved": 0, "committed": 2, "available": 1}
    assert_ledger_balanced(engine)


def test_expired_holds_still_confirm_from_available_or_flag_the_oversell(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, TEE=2, CAP=1)
    deliver(
        client, cart_payload("slow", "2026-11-27T12:00:00Z", {"TEE": 1, "CAP": 1}), "carts/create"
    )
    clock.advance(901)  # the cart's holds expired; another shopper takes the last CAP
    assert api.post("/stock/CAP/reserve", json={"holder": "fast"}).status_code == 200

    order = order_payload(7003, "slow", {"TEE": 1, "CAP": 1})
    assert deliver(client, order, "orders/create").get_json()["status"] == "confirmed"
    row, lines = order_row(engine, 7003)
    assert row.oversold is True
    by_sku = {li.sku: (li.from_holds, li.from_available, li.oversold) for li in lines}
    assert by_sku == {"TEE": (0, 1, 0), "CAP": (0, 1, 1)}
    assert figures(engine, "TEE")["available"] == 1
    # Shopify sold it, so it counts: CAP is now 1 unit short, visible to everyone.
    assert figures(engine, "CAP") == {"on_hand": 1, "reserved": 1, "committed": 1, "available": -1}
    assert_ledger_balanced(engine)


def test_a_hold_bigger_than_the_order_line_gives_the_rest_back(
    client: FlaskClient, api: ApiClient, engine: Engine
) -> None:
    stock(api, TEE=5)
    deliver(client, cart_payload("big", "2026-11-27T12:00:00Z", {"TEE": 4}), "carts/create")
    order = order_payload(7004, "big", {"TEE": 1})
    deliver(client, order, "orders/create")
    _, (line,) = order_row(engine, 7004)
    # The hold shrinks to what the line needs and covers it; the other 3 units go back.
    assert (line.from_holds, line.from_available, line.oversold) == (1, 0, 0)
    assert figures(engine, "TEE") == {"on_hand": 5, "reserved": 0, "committed": 1, "available": 4}
    assert_ledger_balanced(engine)


def test_cancellation_before_creation_is_remembered(
    client: FlaskClient, api: ApiClient, engine: Engine
) -> None:
    stock(api, TEE=5)
    order = order_payload(7005, None, {"TEE": 2})
    assert deliver(client, order, "orders/cancelled").get_json()["status"] == "unknown_order"
    assert deliver(client, order, "orders/create").get_json()["status"] == "duplicate_order"
    assert figures(engine, "TEE")["committed"] == 0
    assert_ledger_balanced(engine)


def test_lines_without_sku_or_untracked_are_skipped(
    client: FlaskClient, api: ApiClient, engine: Engine
) -> None:
    stock(api, TEE=5)
    order = order_payload(7006, None, {"TEE": 1, "GIFT-CARD": 1})
    order["line_items"].append({"id": 999, "sku": None, "quantity": 1})
    order["line_items"].append({"id": 998, "sku": "", "quantity": 2})
    assert deliver(client, order, "orders/create").get_json()["status"] == "confirmed"
    _, lines = order_row(engine, 7006)
    assert [li.sku for li in lines] == ["TEE"]
    assert_ledger_balanced(engine)


def outbox_jobs_of(engine: Engine) -> list[tuple[str, str, str]]:
    from shopify_app.outbox.tables import outbox_jobs

    with engine.connect() as conn:
        rows = conn.execute(
            select(outbox_jobs.c.kind, outbox_jobs.c.key, outbox_jobs.c.status).order_by(
                outbox_jobs.c.id
            )
        )
        return [tuple(r) for r in rows]


def test_a_confirmed_order_is_queued_for_bling_once(
    client: FlaskClient, api: ApiClient, engine: Engine
) -> None:
    from tests.support.app import SHOP

    stock(api, TEE=5)
    order = order_payload(7101, None, {"TEE": 1})
    deliver(client, order, "orders/create")
    deliver(client, order, "orders/paid")
    assert outbox_jobs_of(engine) == [("bling.forward_order", f"{SHOP}:7101", "pending")]

    # An order created already cancelled, or refused for a bad payload, queues nothing.
    deliver(
        client,
        order_payload(7102, None, {"TEE": 1}, cancelled_at="2026-11-27T12:00:00Z"),
        "orders/create",
    )
    assert deliver(client, {"name": "#no-id"}, "orders/create").status_code == 400
    assert len(outbox_jobs_of(engine)) == 1


def test_cancelling_an_order_bling_has_queues_its_reversal(
    client: FlaskClient, api: ApiClient, engine: Engine
) -> None:
    from shopify_app.orders.tables import orders as orders_table
    from tests.support.app import SHOP

    stock(api, TEE=5)
    order = order_payload(7103, None, {"TEE": 2})
    deliver(client, order, "orders/create")
    with engine.begin() as conn:  # as the forwarder will record it once Bling has the order
        conn.execute(
            orders_table.update()
            .where(orders_table.c.order_id == 7103)
            .values(forward_status="forwarded")
        )
    assert deliver(client, order, "orders/cancelled").get_json()["status"] == "cancelled"
    assert outbox_jobs_of(engine)[-1] == ("bling.reverse_order", f"{SHOP}:7103", "pending")
    assert order_row(engine, 7103)[0].forward_status == "reversal_pending"


def test_a_cart_whose_hold_ran_out_asking_for_more_than_is_left_expires_it_once(
    client: FlaskClient, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    """The webhook expires the cart's own due hold, then finds the SKU short and expires the
    SKU's due holds before granting: the first one must not be expired a second time (it was,
    and ``reserved`` fell below the active holds)."""
    stock(api, TEE=2)
    deliver(client, cart_payload("late", "2026-11-27T12:00:00Z", {"TEE": 2}), "carts/create")
    clock.advance(901)  # past the cart TTL
    more = cart_payload("late", "2026-11-27T12:20:00Z", {"TEE": 3})
    assert deliver(client, more, "carts/update").status_code == 200
    assert figures(engine, "TEE") == {"on_hand": 2, "reserved": 2, "committed": 0, "available": 0}
    assert held_by(engine, "late") == {"TEE": 2}
    assert_ledger_balanced(engine)
