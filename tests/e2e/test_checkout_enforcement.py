"""Shopify's checkout honours the holds, end to end on PostgreSQL: the Procfile's ``web`` and
``worker``, the Shopify stand-in, and the checkout validation function's real Wasm.

Shopper A holds the last unit through the App Proxy and adds it to her cart (the cart webhook
lists the hold); the worker publishes the variant's stock metafield; the function input is built
from what the stand-in stored: shopper B's Buy it now is refused, A's cart (its line names her
hold) is accepted. A's hold runs out; after the next publish B's cart is accepted.

The same worker makes Shopify's inventory follow the ledger: manual counts reach Shopify's
``available`` as deltas, once even when an answer is lost, and a Shopify sale whose order
webhook comes later is never handed back.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.app import SHOP, SHOPIFY_SECRET, TOKEN
from tests.support.pgcluster import PgCluster
from tests.support.procfile import Web, call, serve_web, wait_for
from tests.support.shopify_function import CartLine, build_function, cart_input, run_function
from tests.support.shopify_install import standin
from tests.support.shopify_sender import signed_headers, signed_query
from tests.support.shopify_standin import ShopifyStandIn

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ACCESS_TOKEN = "shpat_checkout_e2e"
VARIANT = 44_000_000_001
GID = f"gid://shopify/ProductVariant/{VARIANT}"
#: Short holds, so A's runs out during the test: pending (App Proxy) and listed (cart) alike.
HOLD_SECONDS = 8


@pytest.fixture(scope="module")
def wasm() -> Any:
    return build_function()


@pytest.fixture
def stand_in() -> Iterator[ShopifyStandIn]:
    with standin() as server:
        server.add_access_token(SHOP, ACCESS_TOKEN, "write_products,write_inventory,read_locations")
        server.add_location(SHOP, "Depósito Online", fulfills_online_orders=True)
        yield server


@pytest.fixture
def deployment(pg_cluster: PgCluster, stand_in: ShopifyStandIn) -> Iterator[Web]:
    env = {
        "APP_ENV": "test",
        "STOCK_API_TOKEN": TOKEN,
        "SHOPIFY_API_KEY": stand_in.client_id,
        "SHOPIFY_API_SECRET": SHOPIFY_SECRET,
        "SHOPIFY_SHOP_DOMAIN": SHOP,
        "SHOPIFY_ACCESS_TOKEN": ACCESS_TOKEN,
        "SHOPIFY_ADMIN_URL": stand_in.url,
        "RESERVATION_TTL_SECONDS": str(HOLD_SECONDS),
        "CART_HOLD_GRACE_SECONDS": str(HOLD_SECONDS),
        "WORKER_SWEEP_INTERVAL_SECONDS": "0.2",
        "SHOPIFY_PUBLISH_INTERVAL_SECONDS": "0.05",
        "SHOPIFY_INVENTORY_INTERVAL_SECONDS": "0.1",
        "SHOPIFY_INVENTORY_SETTLE_SECONDS": "0",
        "WEB_CONCURRENCY": "2",
    }
    url = pg_cluster.create_database(f"checkout_e2e_{uuid.uuid4().hex[:8]}")
    with serve_web(url, env) as web:
        worker = web.runner.start("worker")
        wait_for(lambda: "worker started" in web.runner.log_of(worker), "worker start", 30, worker)
        assert "stock publisher" in web.runner.log_of(worker)
        assert "inventory follower" in web.runner.log_of(worker)
        yield web


def webhook(port: int, topic: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = signed_headers(body, topic, secret=SHOPIFY_SECRET, shop=SHOP)
    response = requests.post(
        f"http://127.0.0.1:{port}/webhooks/shopify", data=body, headers=headers, timeout=10
    )
    assert response.status_code == 200, response.text


def stored(stand_in: ShopifyStandIn) -> dict[str, Any] | None:
    found = stand_in.metafield(SHOP, GID)
    return None if found is None else dict(found.json_value)


def published(stand_in: ShopifyStandIn, expected: dict[str, Any], timeout: float = 30) -> float:
    """Wait until the stand-in holds ``expected``; the seconds it took."""
    started = time.monotonic()
    wait_for(lambda: stored(stand_in) == expected, f"the metafield {expected}", timeout)
    return time.monotonic() - started


def verdict(wasm: Any, stand_in: ShopifyStandIn, line: CartLine) -> list[str]:
    """The function's error messages for a one-line cart (empty: the checkout may go on)."""
    value = stored(stand_in)
    run = run_function(wasm, cart_input([line], lambda gid: value if gid == GID else None))
    assert run.exit_code == 0, run.logs
    operations = run.output["operations"]
    return [e["message"] for op in operations for e in op["validationAdd"]["errors"]]


def test_the_checkout_refuses_units_another_cart_holds_until_the_hold_runs_out(
    deployment: Web, stand_in: ShopifyStandIn, wasm: Any
) -> None:
    port = deployment.port
    assert call(port, "PUT", "/stock/TEE", {"on_hand": 1}, token=TOKEN)[0] == 200

    # Shopper A: the storefront holds the last unit, then adds it with the hold on the line.
    response = requests.post(
        f"http://127.0.0.1:{port}/proxy/stock/TEE/reserve?{signed_query()}",
        json={"cart_token": "cart-a", "quantity": 1},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    hold = response.json()["line_hold"]
    listed_at = time.monotonic()
    webhook(
        port,
        "carts/create",
        {
            "id": "cart-a",
            "token": "cart-a",
            "updated_at": "2026-12-02T12:00:00Z",
            "line_items": [
                {
                    "id": VARIANT,
                    "variant_id": VARIANT,
                    "key": f"{VARIANT}:a",
                    "sku": "TEE",
                    "quantity": 1,
                    "properties": {"_bazico_hold": hold},
                }
            ],
        },
    )
    published(stand_in, {"v": 1, "free": 0, "h": {hold: 1}})
    print(f"\nheld unit published {time.monotonic() - listed_at:.2f} s after the cart webhook")

    # The function reads what the stand-in stored: B's Buy it now (no hold on the line) is
    # refused, A's cart (her hold on the line) goes through.
    refused = verdict(wasm, stand_in, CartLine(GID, 1, product="Camiseta Básica", title="M"))
    assert refused == ["Esgotado: Camiseta Básica / M."]
    assert verdict(wasm, stand_in, CartLine(GID, 1, hold=hold)) == []
    assert verdict(wasm, stand_in, CartLine(GID, 2, hold=hold)) != [], "not more than she holds"

    # A's hold runs out: the sweeper gives the unit back and the worker publishes it.
    took = published(stand_in, {"v": 1, "free": 1, "h": {}}, timeout=HOLD_SECONDS + 30)
    print(f"expiry published {took:.2f} s after the first publish (hold: {HOLD_SECONDS} s)")
    assert verdict(wasm, stand_in, CartLine(GID, 1)) == [], "B's cart is accepted now"
    worker_log = deployment.runner.log_of(deployment.runner.processes[-1][0])
    assert "Traceback" not in worker_log, worker_log[-3000:]


def test_shopifys_inventory_follows_the_ledger_through_the_worker(
    deployment: Web, stand_in: ShopifyStandIn
) -> None:
    port = deployment.port
    [location] = list(stand_in.admin.shop(SHOP).locations)
    item = stand_in.inventory_item_of(SHOP, stand_in.add_variant(SHOP, "TEE"))
    stand_in.stock(SHOP, item, location, 5)
    assert call(port, "PUT", "/stock/TEE", {"on_hand": 5}, token=TOKEN)[0] == 200
    # First mapped (looked up by SKU) and aligned, with a compare-and-set write or none.
    assert call(port, "PUT", "/stock/TEE", {"on_hand": 8}, token=TOKEN)[0] == 200
    wait_for(lambda: stand_in.available(SHOP, item, location) == 8, "Shopify at 8", 30)
    before = len(stand_in.inventory_changes(SHOP))

    # A lost answer: the worker sends the same call again, Shopify applies it once.
    stand_in.lose_answers(1, root="inventoryAdjustQuantities")
    assert call(port, "PUT", "/stock/TEE", {"on_hand": 10}, token=TOKEN)[0] == 200
    wait_for(lambda: stand_in.available(SHOP, item, location) == 10, "Shopify at 10", 30)
    wait_for(lambda: any(c.lost for c in stand_in.calls), "the lost answer", 10)
    time.sleep(1.0)  # a few more rounds: nothing applied twice
    later = stand_in.inventory_changes(SHOP)[before:]
    assert [(c.kind, c.delta) for c in later] == [("adjust", 2)]

    # Shopify sells one; before its order webhook, the warehouse counts 2 more (on hand 12).
    stand_in.sell(SHOP, item, location, 1)
    assert call(port, "PUT", "/stock/TEE", {"on_hand": 12}, token=TOKEN)[0] == 200
    wait_for(lambda: stand_in.available(SHOP, item, location) == 11, "Shopify at 9 + 2", 30)
    order = {
        "id": 880001,
        "name": "#880001",
        "cart_token": None,
        "checkout_token": None,
        "cancelled_at": None,
        "note_attributes": [],
        "line_items": [{"id": 1, "sku": "TEE", "quantity": 1}],
    }
    webhook(port, "orders/create", order)
    time.sleep(1.0)
    assert stand_in.available(SHOP, item, location) == 11  # the sale was never handed back
    level = call(port, "GET", "/stock/TEE", None, token=TOKEN)[1]
    assert level["on_hand"] - level["committed"] == 11
    worker_log = deployment.runner.log_of(deployment.runner.processes[-1][0])
    assert "Traceback" not in worker_log, worker_log[-3000:]
