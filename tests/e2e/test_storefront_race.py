"""The last units on the real storefront path, through Procfile ``web`` (several gunicorn
workers) on PostgreSQL: App Proxy holds, then Shopify's cart webhooks as they really arrive
(behind the theme's calls, shuffled, late, twice), then the orders.

Acceptance 1 and 2 of the storefront issue: the shopper who holds the unit first gets it, and
no delivery order of the webhooks lets a second shopper have it.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select

from shopify_app.orders.tables import order_lines, orders
from shopify_app.stock.tables import holds
from tests.support.app import SHOP, SHOPIFY_SECRET, TOKEN
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.pgcluster import PgCluster
from tests.support.procfile import ProcfileRunner, WebOnPostgres, call, free_port, wait_for
from tests.support.race import Call, Outcome, race
from tests.support.shopify_sender import signed_headers, signed_query

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WORKERS = 3


def proxy_path(path: str) -> str:
    return f"/proxy/{path}?{signed_query()}"


def reserve(sku: str, cart: str, ip: str, quantity: int = 1) -> Call:
    # Shopify's App Proxy sets X-Forwarded-For to the shopper's address (TRUSTED_PROXY_HOPS=0:
    # no router of our own in front here).
    body = {"cart_token": cart, "quantity": quantity}
    return Call("POST", proxy_path(f"stock/{sku}/reserve"), body, (("X-Forwarded-For", ip),))


def webhook(topic: str, payload: dict[str, Any], webhook_id: str | None = None) -> Call:
    raw = json.dumps(payload).encode()  # race() sends json.dumps(body): the same bytes
    headers = signed_headers(raw, topic, secret=SHOPIFY_SECRET, shop=SHOP, webhook_id=webhook_id)
    return Call("POST", "/webhooks/shopify", payload, tuple(headers.items()))


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def cart_line(sku: str, quantity: int, hold: str | None, line_id: int = 1) -> dict[str, Any]:
    return {
        "id": line_id,
        "key": f"{line_id}:{hold}",
        "variant_id": 5500 + line_id,
        "sku": sku,
        "quantity": quantity,
        "properties": {"_bazico_hold": hold} if hold else {},
    }


def cart(token: str, at: datetime, *lines: dict[str, Any]) -> dict[str, Any]:
    return {"id": token, "token": token, "updated_at": stamp(at), "line_items": list(lines)}


def order(order_id: int, token: str, sku: str, hold: str) -> dict[str, Any]:
    return {
        "id": order_id,
        "name": f"#{order_id}",
        "cart_token": token,
        "checkout_token": None,
        "cancelled_at": None,
        "note_attributes": [],
        "line_items": [
            {
                "id": order_id * 10,
                "sku": sku,
                "quantity": 1,
                "variant_id": 5501,
                "properties": [{"name": "_bazico_hold", "value": hold}],
            }
        ],
    }


def environment(url: str, port: int, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": url, "PORT": str(port), **settings(**extra)}


def settings(**extra: str) -> dict[str, str]:
    """The service's environment apart from its database and port."""
    return {
        "STOCK_API_TOKEN": TOKEN,
        "SHOPIFY_API_KEY": "test-shopify-key",
        "SHOPIFY_API_SECRET": SHOPIFY_SECRET,
        "SHOPIFY_SHOP_DOMAIN": SHOP,
        "WEB_CONCURRENCY": str(WORKERS),
        "APP_ENV": "test",
        "TRUSTED_PROXY_HOPS": "0",
        # The shipped per-cart caps and request rates: every shopper has its own cart and
        # address, as on the real storefront.
        "HOLD_MAX_UNITS_PER_SKU": "5",
        "HOLD_MAX_ACTIVE_HOLDS": "25",
        "RATE_LIMIT_PER_IP": "300/minute",
        "RATE_LIMIT_PER_CART": "30/minute",
        **extra,
    }


@pytest.fixture(scope="module")
def web(web_on_postgres: WebOnPostgres) -> Iterator[tuple[int, Engine]]:
    with web_on_postgres("storefront_race", settings(), workers=WORKERS) as served:
        yield served.port, served.engine


def stock(port: int, sku: str, on_hand: int) -> None:
    status, body = call(port, "PUT", f"/stock/{sku}", {"on_hand": on_hand}, token=TOKEN)
    assert status == 200, body


def one(port: int, item: Call) -> Outcome:
    (outcome,) = race(port, TOKEN, [item])
    return outcome


def test_the_issues_sequence_the_first_holder_gets_the_last_unit(
    web: tuple[int, Engine],
) -> None:
    port, engine = web
    stock(port, "SEQ-LAST", 1)
    stock(port, "SEQ-OTHER", 5)
    now = datetime.now(UTC)
    # 1. shopper A asks the App Proxy for the last unit.
    a = one(port, reserve("SEQ-LAST", "seq-cart-a", "198.51.100.1"))
    assert a.status == 200, a.body
    held = a.body["reservation_id"]
    # 2. carts/update for an earlier change of A's cart, which does not list the new line.
    earlier = cart("seq-cart-a", now - timedelta(seconds=2), cart_line("SEQ-OTHER", 1, None))
    assert one(port, webhook("carts/update", earlier)).body == {"status": "applied"}
    # 3. shopper B asks for the same unit: 409.
    b = one(port, reserve("SEQ-LAST", "seq-cart-b", "198.51.100.2"))
    assert b.status == 409, b.body
    # 4. the carts/update that lists A's line: reserved 1, available 0...
    listed = cart(
        "seq-cart-a",
        now + timedelta(seconds=1),
        cart_line("SEQ-OTHER", 1, None),
        cart_line("SEQ-LAST", 1, held, line_id=2),
    )
    assert one(port, webhook("carts/update", listed)).body == {"status": "applied"}
    assert figures(engine, "SEQ-LAST") == {
        "on_hand": 1,
        "reserved": 1,
        "committed": 0,
        "available": 0,
    }
    # ...then A's order commits 1 from the hold, nothing oversold.
    assert one(port, webhook("orders/create", order(8101, "seq-cart-a", "SEQ-LAST", held))).body
    assert figures(engine, "SEQ-LAST") == {
        "on_hand": 1,
        "reserved": 0,
        "committed": 1,
        "available": 0,
    }
    with engine.connect() as conn:
        line = conn.execute(select(order_lines).where(order_lines.c.order_id == 8101)).one()
        oversold = conn.execute(select(orders.c.oversold).where(orders.c.order_id == 8101))
        assert (line.from_holds, line.oversold, oversold.scalar()) == (1, 0, False)
    assert_ledger_balanced(engine)


def test_hundreds_of_shoppers_for_the_last_units_through_the_storefront_path(
    web: tuple[int, Engine],
) -> None:
    """300 shoppers (own cart, own address) race for 25 units through the App Proxy; then
    every cart's webhooks (an earlier state first for every cart, the listing one for the
    winners) arrive shuffled, some twice, some late, while the losers ask again; then the
    winners' orders. Exactly 25 orders, each covered by its hold; nothing oversold."""
    port, engine = web
    units, shoppers = 25, 300
    stock(port, "RACE-LAST", units)
    stock(port, "RACE-OTHER", 1000)
    now = datetime.now(UTC)
    carts = [f"race-{i}-{uuid.uuid4().hex[:8]}" for i in range(shoppers)]
    ips = [f"10.{i // 250}.{i % 250}.7" for i in range(shoppers)]

    calls = [reserve("RACE-LAST", c, ip) for c, ip in zip(carts, ips, strict=True)]
    outcomes = race(port, TOKEN, calls)
    statuses = Counter(o.status for o in outcomes)
    assert statuses == {200: units, 409: shoppers - units}, statuses
    winners = {
        carts[i]: o.body["reservation_id"] for i, o in enumerate(outcomes) if o.status == 200
    }

    rng = random.Random(14)
    early: list[Call] = []
    late: list[Call] = []
    for n, token in enumerate(carts):
        # The webhook of the cart before the add (the theme's earlier change): every cart.
        before = cart(token, now - timedelta(seconds=1), cart_line("RACE-OTHER", 1, None))
        early.append(webhook("carts/update", before, f"{token}-before"))
        if token in winners:
            listed = cart(
                token,
                now + timedelta(seconds=1),
                cart_line("RACE-OTHER", 1, None),
                cart_line("RACE-LAST", 1, winners[token], line_id=2),
            )
            (late if n % 3 == 0 else early).append(webhook("carts/update", listed, f"{token}-l"))
    early += rng.sample(early, 40)  # Shopify delivers at least once: redeliveries, same ids
    rng.shuffle(early)
    losers = [i for i, o in enumerate(outcomes) if o.status == 409]
    again = [reserve("RACE-LAST", carts[i], ips[i]) for i in losers[:150]]
    answers = race(port, TOKEN, early + again)
    assert all(o.status == 200 for o in answers[: len(early)]), "every webhook applied"
    assert Counter(o.status for o in answers[len(early) :]) == {409: len(again)}
    assert figures(engine, "RACE-LAST")["available"] == 0
    late += rng.sample(late, 3)
    assert all(o.status == 200 for o in race(port, TOKEN, late))

    placed = [
        webhook("orders/create", order(9000 + n, token, "RACE-LAST", hold), f"order-{token}")
        for n, (token, hold) in enumerate(sorted(winners.items()))
    ]
    placed += rng.sample(placed, 5)
    rng.shuffle(placed)
    confirmed = Counter(o.body["status"] for o in race(port, TOKEN, placed))
    assert confirmed == {"confirmed": units, "duplicate": 5}, confirmed

    with engine.connect() as conn:
        lines = conn.execute(select(order_lines).where(order_lines.c.sku == "RACE-LAST")).all()
        assert len(lines) == units
        assert all((line.from_holds, line.oversold) == (1, 0) for line in lines)
        count = select(func.count()).select_from(orders).where(orders.c.oversold.is_(True))
        assert conn.execute(count).scalar() == 0
        left = select(func.count()).where(holds.c.sku == "RACE-LAST", holds.c.status == "active")
        assert conn.execute(left).scalar() == 0
    assert figures(engine, "RACE-LAST") == {
        "on_hand": units,
        "reserved": 0,
        "committed": units,
        "available": 0,
    }
    assert_ledger_balanced(engine)


def test_a_pending_hold_no_webhook_lists_is_released_by_the_worker_after_the_grace_window(
    pg_cluster: PgCluster,
) -> None:
    url = pg_cluster.create_database("storefront_grace")
    port = free_port()
    env = environment(url, port, CART_HOLD_GRACE_SECONDS="2", WORKER_SWEEP_INTERVAL_SECONDS="0.2")
    runner = ProcfileRunner(env)
    engine = create_engine(url)
    try:
        runner.release_and_serve(port, WORKERS)
        worker = runner.start("worker")
        stock(port, "GRACE-LAST", 1)
        a = one(port, reserve("GRACE-LAST", "grace-a", "198.51.100.9"))
        assert a.status == 200, a.body
        earlier = cart("grace-a", datetime.now(UTC) - timedelta(seconds=1))
        assert one(port, webhook("carts/update", earlier)).status == 200
        assert one(port, reserve("GRACE-LAST", "grace-b", "198.51.100.10")).status == 409

        def released() -> bool:
            with engine.connect() as conn:
                hold_id = uuid.UUID(a.body["reservation_id"])
                status = conn.execute(select(holds.c.status).where(holds.c.id == hold_id))
                return status.scalar() == "expired"

        wait_for(released, "the sweeper to release the unconfirmed hold", 20, worker)
        assert figures(engine, "GRACE-LAST")["available"] == 1
        assert one(port, reserve("GRACE-LAST", "grace-b", "198.51.100.10")).status == 200
        assert_ledger_balanced(engine)
    finally:
        runner.close()
        engine.dispose()
