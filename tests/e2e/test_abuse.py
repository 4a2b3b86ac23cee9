"""A bot against the storefront during a drop, through Procfile ``web`` with several workers.

Acceptance 1 of the abuse issue: a bot holding carts in a loop cannot take more than the
configured share of a SKU, honest shoppers still get holds, and the limits hold across gunicorn
workers (counted in the database every process shares, not per process).
"""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, select

from shopify_app.stock.tables import holds
from tests.support.app import SHOP, SHOPIFY_SECRET, TOKEN
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.procfile import ProcfileRunner, WebOnPostgres, call
from tests.support.race import Call, race
from tests.support.shopify_sender import signed_query

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WORKERS = 3
UNITS = 100
CAP_UNITS, CAP_HOLDS = 2, 5
PER_IP, PER_CART = 20, 5  # per minute


def signed_path(sku: str) -> str:
    return f"/proxy/stock/{sku}/reserve?{signed_query()}"


def shopper(ip: str, cart: str, quantity: int = 1) -> Call:
    # Shopify's App Proxy puts the shopper's address in X-Forwarded-For (no proxy of our own
    # in front here: TRUSTED_PROXY_HOPS=0).
    body = {"cart_token": cart, "quantity": quantity}
    return Call("POST", signed_path("DROP"), body, (("X-Forwarded-For", ip),))


@pytest.fixture
def storefront(
    web_on_postgres: WebOnPostgres,
) -> Iterator[tuple[int, Engine, ProcfileRunner, int]]:
    database = f"abuse_{time.monotonic_ns() % 10**8}"
    env = {
        "STOCK_API_TOKEN": TOKEN,
        "SHOPIFY_API_KEY": "test-shopify-key",
        "SHOPIFY_API_SECRET": SHOPIFY_SECRET,
        "SHOPIFY_SHOP_DOMAIN": SHOP,
        "WEB_CONCURRENCY": str(WORKERS),
        "WEB_THREADS": "4",
        "APP_ENV": "test",
        "LOG_LEVEL": "INFO",
        "HOLD_MAX_UNITS_PER_SKU": str(CAP_UNITS),
        "HOLD_MAX_ACTIVE_HOLDS": str(CAP_HOLDS),
        "RATE_LIMIT_PER_IP": f"{PER_IP}/minute",
        "RATE_LIMIT_PER_CART": f"{PER_CART}/minute",
        "TRUSTED_PROXY_HOPS": "0",
    }
    with web_on_postgres(database, env, workers=WORKERS, clean_exit=True) as served:
        yield served.port, served.engine, served.runner, served.proc.pid


def held_units(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(holds.c.holder, holds.c.quantity).where(
                holds.c.sku == "DROP", holds.c.status == "active"
            )
        )
        out: Counter[str] = Counter()
        for row in rows:
            out[row.holder] += row.quantity
    return dict(out)


def test_a_bot_takes_no_more_than_its_configured_share(
    storefront: tuple[int, Engine, ProcfileRunner, int],
) -> None:
    port, engine, runner, _ = storefront
    status, body = call(port, "PUT", "/stock/DROP", {"on_hand": UNITS}, token=TOKEN)
    assert status == 200, body

    # One bot keeps one cart and asks again and again; another makes a new cart for every try
    # (asking for more than the cap, then the cap) from one address; forty honest shoppers each
    # ask once from their own address. All at the same moment, spread over three workers.
    same_cart = [shopper("198.51.100.66", "bot-cart") for _ in range(60)]
    new_carts = [shopper("198.51.100.77", f"rotating-{i}", quantity=2) for i in range(80)]
    honest = [shopper(f"203.0.113.{i + 1}", f"shopper-{i}") for i in range(40)]
    calls = same_cart + new_carts + honest
    outcomes = race(port, TOKEN, calls)

    def statuses(first: int, count: int) -> Counter[int]:
        return Counter(o.status for o in outcomes[first : first + count])

    same, rotating = statuses(0, 60), statuses(60, 80)
    shoppers = statuses(140, 40)
    assert shoppers == {200: 40}, "every honest shopper gets a hold"
    # One cart: the cap of two units (each request asks for one), the rest refused with 429.
    assert same[200] == CAP_UNITS and same[429] == 60 - CAP_UNITS, same
    # New carts from one address: exactly the address's rate, across all workers together
    # (per-process counters would let each of the three workers grant its own twenty).
    assert rotating[200] == PER_IP and rotating[429] == 80 - PER_IP, rotating
    for outcome in outcomes:
        if outcome.status == 429:
            assert outcome.body["error"] in ("rate_limited", "hold_limit_exceeded")

    held = held_units(engine)
    bot_units = held.get("bot-cart", 0) + sum(
        v for k, v in held.items() if k.startswith("rotating-")
    )
    share = CAP_UNITS + PER_IP * CAP_UNITS  # what the configuration allows these two bots
    assert held.get("bot-cart") == CAP_UNITS
    assert bot_units == share <= UNITS
    assert sum(v for k, v in held.items() if k.startswith("shopper-")) == 40
    assert figures(engine, "DROP")["available"] == UNITS - share - 40
    assert_ledger_balanced(engine)

    # The grants came from more than one worker, so the counts above were shared.
    log = runner.log_of(runner.processes[0][0])
    pids = {
        json.loads(line).get("process.pid")
        for line in log.splitlines()
        if '"reservation.created"' in line
    }
    assert len(pids) >= 2, pids

    # Every refusal is counted, whichever worker made it: the bot on one cart was stopped 40
    # times by its address's rate, 15 times by its cart's and 3 times by the cap; the other
    # bot 60 times by its address's rate.
    refusals = scrape(port, "bazico_limit_refusals_total")
    assert refusals == {
        (("channel", "proxy"), ("limit", "ip")): 100,
        (("channel", "proxy"), ("limit", "cart")): 15,
        (("channel", "proxy"), ("limit", "units_per_sku")): 3,
    }


def scrape(port: int, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }
