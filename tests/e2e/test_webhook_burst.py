"""A burst of signed Shopify webhooks far beyond the normal rate is absorbed within Shopify's 5 s.

The Procfile's ``web`` (gunicorn, 2 workers x 8 threads) on PostgreSQL; 64 clients released
together by a barrier deliver 200 shoppers' carts (``carts/update`` twice each: lines added, then
changed) and, for half of them, the ``orders/create`` that follows: 500 webhooks in a few
seconds, each shopper's in order, all shoppers at once.

Asserted: every delivery is answered 200 within 5 s (Shopify's timeout; it retries anything
else, and drops a subscription that keeps failing); the ledger is exactly what the carts and
orders say right afterwards: reserved = the open carts' lines, committed = the orders' lines.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.outage import Answer, percentile, request
from tests.support.procfile import (
    WebOnPostgres,
    call,
)
from tests.support.shopify_sender import signed_headers

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TOKEN = "burst-token"
SECRET = "burst-shopify-secret"
SHOP = "bazico-burst.myshopify.com"
# Plenty for every cart and order: with less, which cart finds the last units depends on timing.
SKUS = {f"BURST-{n}": 1_000 for n in range(5)}
SHOPPERS, CLIENTS = 200, 64
SHOPIFY_TIMEOUT_S = 5.0


@pytest.fixture
def web(web_on_postgres: WebOnPostgres) -> Iterator[tuple[int, Engine]]:
    env = {
        "STOCK_API_TOKEN": TOKEN,
        "SHOPIFY_API_KEY": "burst-key",
        "SHOPIFY_API_SECRET": SECRET,
        "SHOPIFY_SHOP_DOMAIN": SHOP,
        "APP_ENV": "test",
        "WEB_CONCURRENCY": "2",
        "WEB_THREADS": "8",
        "LOG_LEVEL": "WARNING",
    }
    with web_on_postgres("webhook_burst", env, workers=2, clean_exit=True) as served:
        yield served.port, served.engine


def cart(token: str, minute: int, lines: dict[str, int]) -> dict[str, Any]:
    return {
        "id": token,
        "token": token,
        "updated_at": f"2026-11-27T12:{minute:02d}:00Z",
        "line_items": [
            {"id": i, "sku": sku, "quantity": qty} for i, (sku, qty) in enumerate(lines.items())
        ],
    }


def order(number: int, token: str, lines: dict[str, int]) -> dict[str, Any]:
    return {
        "id": 770_000 + number,
        "name": f"#W{number}",
        "cart_token": token,
        "line_items": [
            {"id": i, "sku": sku, "quantity": qty, "price": "59.90", "title": sku}
            for i, (sku, qty) in enumerate(lines.items(), start=1)
        ],
    }


def test_hundreds_of_webhooks_in_seconds_all_answered_within_shopifys_5s(
    web: tuple[int, Engine],
) -> None:
    port, engine = web
    for sku, units in SKUS.items():
        assert call(port, "PUT", f"/stock/{sku}", {"on_hand": units}, token=TOKEN)[0] == 200

    rng = random.Random(23)
    names = sorted(SKUS)
    plans: list[list[tuple[str, dict[str, Any]]]] = []
    expected_reserved: Counter[str] = Counter()
    expected_committed: Counter[str] = Counter()
    for n in range(SHOPPERS):
        token = f"burst-cart-{n:03d}"
        first = {sku: rng.randint(1, 2) for sku in rng.sample(names, rng.randint(1, 2))}
        final = dict(first)
        final[rng.choice(names)] = rng.randint(1, 2)  # one line added or changed
        steps = [("carts/update", cart(token, 1, first)), ("carts/update", cart(token, 2, final))]
        if n % 2 == 0:
            steps.append(("orders/create", order(n, token, final)))
            expected_committed.update(final)
        else:
            expected_reserved.update(final)
        plans.append(steps)

    answers: list[Answer] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS)

    def client(index: int) -> None:
        barrier.wait()
        for steps in plans[index::CLIENTS]:  # one shopper's deliveries in order
            for topic, payload in steps:
                body = json.dumps(payload).encode()
                headers = signed_headers(body, topic, secret=SECRET, shop=SHOP)
                answer = request(
                    port, "POST", "/webhooks/shopify", kind=topic, body=body, headers=headers
                )
                with lock:
                    answers.append(answer)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    total = sum(len(steps) for steps in plans)
    assert len(answers) == total

    began = min(a.started for a in answers)
    span = max(a.ended for a in answers) - began
    latencies = [a.elapsed for a in answers]
    statuses = Counter(a.status for a in answers)
    outcomes = Counter(
        (a.kind, a.body.get("status") if isinstance(a.body, dict) else None) for a in answers
    )
    print(
        f"\nwebhook burst: {total} deliveries from {CLIENTS} clients in {span:.2f} s "
        f"({total / span:.0f}/s); statuses {dict(statuses)}; latency "
        f"p50 {percentile(latencies, 50) * 1000:.0f} ms "
        f"p99 {percentile(latencies, 99) * 1000:.0f} ms "
        f"max {max(latencies) * 1000:.0f} ms; outcomes {dict(outcomes)}"
    )
    assert statuses == {200: total}, [a for a in answers if a.status != 200][:5]
    assert max(latencies) < SHOPIFY_TIMEOUT_S
    assert outcomes[("orders/create", "confirmed")] == SHOPPERS // 2

    # The ledger right afterwards: open carts hold their lines, orders committed theirs.
    for sku, on_hand in SKUS.items():
        assert figures(engine, sku) == {
            "on_hand": on_hand,
            "reserved": expected_reserved[sku],
            "committed": expected_committed[sku],
            "available": on_hand - expected_reserved[sku] - expected_committed[sku],
        }, sku
    assert_ledger_balanced(engine)
