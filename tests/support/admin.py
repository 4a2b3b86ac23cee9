"""The admin pages' tests: Shopify session tokens as Shopify signs them, and a ledger worth
looking at (stock, live holds, orders on their way to Bling, a dead job, an oversell).

``seed`` speaks through ``send(method, path, json=…, data=…, headers=…) -> status``, so the
in-process tests (Flask's client) and the browser test (HTTP to the Procfile's web) seed alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update

from shopify_app.outbox.tables import outbox_jobs
from shopify_app.shopify.session_tokens import mint
from tests.support.app import SHOP, SHOPIFY_SECRET, TOKEN
from tests.support.orders import shopify_order
from tests.support.shopify_sender import signed_headers

API_KEY = "test-shopify-key"
ADMIN_USER = "staff-4242"
#: Bling's answer the dead job keeps (what the Pedidos page must show).
BLING_ERROR = "Bling 400 VALIDATION_ERROR: o contato informado não existe (contato.id)"
#: SKU → on hand the seed starts with.
STOCK = {"BAZI-TEE-P": 8, "BAZI-TEE-M": 3, "BAZI-BONE-U": 1, "BAZI-MEIA-40": 20}

Send = Callable[..., int]


def session_token(
    now: datetime,
    *,
    shop: str = SHOP,
    api_key: str = API_KEY,
    secret: str = SHOPIFY_SECRET,
    user: str = ADMIN_USER,
    lifetime: int = 60,
    not_before: int = 0,
) -> str:
    return mint(
        secret,
        api_key=api_key,
        shop=shop,
        user=user,
        now=now,
        lifetime=lifetime,
        not_before=not_before,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def bad_tokens(now: datetime) -> dict[str, str]:
    """One token per way a session token must be refused."""
    return {
        "expired": session_token(now, lifetime=-120),
        "wrong_audience": session_token(now, api_key="another-apps-key"),
        "wrong_signature": session_token(now, secret="not-the-app-secret"),
        "unknown_shop": session_token(now, shop="someone-else.myshopify.com"),
        "garbage": "not.a.jwt",
    }


def _webhook(send: Send, payload: dict[str, Any], topic: str) -> int:
    raw = json.dumps(payload).encode()
    headers = signed_headers(raw, topic, secret=SHOPIFY_SECRET, shop=SHOP)
    return send("POST", "/webhooks/shopify", data=raw, headers=headers)


def seed(send: Send, engine: Engine, *, order_base: int = 7001) -> dict[str, Any]:
    """Stock four SKUs, hold some of them, sell three orders (one oversold) and kill the first
    order's Bling job with Bling's error. Returns the ids the tests look for."""
    api = {"Authorization": f"Bearer {TOKEN}"}
    for sku, on_hand in STOCK.items():
        assert send("PUT", f"/stock/{sku}", json={"on_hand": on_hand}, headers=api) == 200
    for sku, quantity, holder in [
        ("BAZI-TEE-M", 2, "cart-ana"),
        ("BAZI-TEE-P", 1, "cart-bia"),
        ("BAZI-TEE-P", 2, "cart-caio"),
    ]:
        body = {"quantity": quantity, "holder": holder}
        assert send("POST", f"/stock/{sku}/reserve", json=body, headers=api) == 200
    orders = [order_base, order_base + 1, order_base + 2]
    lines = [
        [("BAZI-MEIA-40", 3, "19.90")],
        [("BAZI-TEE-P", 1, "89.90")],
        [("BAZI-BONE-U", 2, "59.90")],  # one unit more than the ledger has: an oversell
    ]
    for order_id, order_lines in zip(orders, lines, strict=True):
        assert _webhook(send, shopify_order(order_id, order_lines), "orders/create") == 200
    with engine.begin() as connection:
        job_id = connection.execute(
            select(outbox_jobs.c.id).where(outbox_jobs.c.key == f"{SHOP}:{orders[0]}")
        ).scalar_one()
        connection.execute(
            update(outbox_jobs)
            .where(outbox_jobs.c.id == job_id)
            .values(status="dead", attempts=8, last_error=BLING_ERROR)
        )
    return {"orders": orders, "dead_job": job_id, "dead_order": orders[0]}


def job_status(engine: Engine, job_id: int) -> str:
    with engine.connect() as connection:
        return str(
            connection.execute(
                select(outbox_jobs.c.status).where(outbox_jobs.c.id == job_id)
            ).scalar_one()
        )
