"""A deployment with Bling: the app in this process (signed webhooks in through its test client,
Bling connected and synced) and the Procfile's worker processes, on one database. With a Shopify
stand-in, the shop's orders are kept there too (as Shopify has them), and the workers'
order reconciliation reads them: a webhook can then be *lost* and the order still arrive.

The Bling-forwarding chaos, outage and operations e2e tests build on it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime
from typing import Any, cast

from flask import Flask
from sqlalchemy import func, select

from shopify_app import create_app
from shopify_app.erp import connection
from shopify_app.erp.stock_sync import full_sync
from shopify_app.orders.tables import orders
from shopify_app.outbox.kinds import FORWARD_ORDER
from shopify_app.outbox.tables import outbox_jobs
from shopify_app.runtime import EXTENSION_KEY, Runtime
from tests.support.app import SHOP, SHOPIFY_SECRET, TOKEN
from tests.support.bling_standin import DEFAULT_DEPOSIT_ID, PAYMENT_METHOD_ID, BlingStandIn
from tests.support.orders import shopify_order
from tests.support.procfile import ProcfileRunner, wait_for
from tests.support.shopify_sender import deliver
from tests.support.shopify_standin import ShopifyStandIn


def deployment_environ(database_url: str, bling: BlingStandIn, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "APP_ENV": "development",
        "SECRET_KEY": "chaos-test-secret-key-0123456789",  # the workers decrypt the tokens
        "STOCK_API_TOKEN": TOKEN,
        "SHOPIFY_API_KEY": "test-shopify-key",
        "SHOPIFY_API_SECRET": SHOPIFY_SECRET,
        "SHOPIFY_SHOP_DOMAIN": SHOP,
        "BLING_API_BASE_URL": bling.base_url,
        "BLING_CLIENT_ID": bling.client_id,
        "BLING_CLIENT_SECRET": bling.client_secret,
        "BLING_DEPOSIT_ID": str(DEFAULT_DEPOSIT_ID),
        "BLING_PAYMENT_METHOD_ID": str(PAYMENT_METHOD_ID),
        "WORKER_OUTBOX_INTERVAL_SECONDS": "0.1",
        "WORKER_BLING_SYNC_SECONDS": "3600",
        "LOG_LEVEL": "INFO",
        **extra,
    }


#: The custom app's token the workers' reconciliation reads the shop's orders with.
SHOPIFY_TOKEN = "shpat_deployment"


class Deployment:
    """The app in this process (webhooks in, Bling connected and synced) and worker processes."""

    def __init__(
        self,
        database_url: str,
        bling: BlingStandIn,
        *,
        shopify: ShopifyStandIn | None = None,
        **extra: str,
    ) -> None:
        self.bling = bling
        self.shopify = shopify
        if shopify is not None:
            shopify.add_access_token(SHOP, SHOPIFY_TOKEN)
            extra = {
                "SHOPIFY_ADMIN_URL": shopify.url,
                "SHOPIFY_ACCESS_TOKEN": SHOPIFY_TOKEN,
                "WORKER_ORDER_RECONCILE_SECONDS": "5",
                **extra,
            }
        self.env = deployment_environ(database_url, bling, **extra)
        self.app: Flask = create_app(self.env)
        self.runtime: Runtime = self.app.extensions[EXTENSION_KEY]
        self.client = self.app.test_client()
        self.runner = ProcfileRunner(self.env)
        self._payloads: dict[int, dict[str, object]] = {}
        connection.connect(self.runtime, bling.authorize())

    def sync(self) -> None:
        with connection.bling_client(self.runtime) as client:
            full_sync(self.runtime, client, deposit_id=DEFAULT_DEPOSIT_ID)

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = self.runner.start("worker")
        wait_for(lambda: "worker started" in self.runner.log_of(proc), "worker start", 30, proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)

    def sell(
        self,
        order_id: int,
        lines: list[tuple[str, int]],
        *,
        expect: str = "confirmed",
        lost: bool = False,
        **extra: object,
    ) -> None:
        """Shopify's ``orders/create`` for order ``#C{order_id}``; ``extra`` sets payload fields
        (``financial_status="pending"``, ``test=True``), ``expect`` the outcome; ``lost``: the
        order is in Shopify, its webhook never came."""
        priced = [(sku, qty, "59.90") for sku, qty in lines]
        payload = shopify_order(order_id, priced, name=f"#C{order_id}", **extra)
        self._payloads[order_id] = payload
        if not lost:
            self._deliver(payload, "orders/create", expect)
        self._in_shopify(payload)

    def pay(self, order_id: int, *, lost: bool = False) -> None:
        """``orders/paid`` for an order sold unpaid (``lost``: Shopify has it paid, the webhook
        never came)."""
        paid = {**self._payloads[order_id], "financial_status": "paid"}
        self._payloads[order_id] = paid
        if not lost:
            self._deliver(paid, "orders/paid", "paid")
        self._in_shopify(paid)

    def cancel(self, order_id: int, *, lost: bool = False) -> None:
        cancelled = {**self._payloads[order_id], "cancelled_at": "2026-11-27T10:00:00-03:00"}
        self._payloads[order_id] = cancelled
        if not lost:
            self._deliver(cancelled, "orders/cancelled", "cancelled")
        self._in_shopify(cancelled)

    def _in_shopify(self, payload: dict[str, Any]) -> None:
        """The order as Shopify now has it (after its webhook, if one was sent)."""
        if self.shopify is None:
            return
        items = cast(list[dict[str, Any]], payload["line_items"])
        self.shopify.add_order(
            SHOP,
            int(cast(int, payload["id"])),
            [(str(i["sku"]), int(i["quantity"])) for i in items],
            updated_at=datetime.now(UTC),
            cancelled_at=datetime.now(UTC) if payload.get("cancelled_at") else None,
            financial_status=str(payload.get("financial_status") or "paid").upper(),
            test=bool(payload.get("test")),
            name=str(payload["name"]),
        )

    def _deliver(self, payload: dict[str, object], topic: str, expect: str) -> None:
        response = deliver(self.client, payload, topic)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["status"] == expect

    def forwarded(self) -> int:
        with self.runtime.engine.connect() as conn:
            return conn.execute(
                select(func.count()).where(orders.c.forward_status == "forwarded")
            ).scalar_one()

    def cancelled(self) -> set[int]:
        """The ids of the orders cancelled here."""
        with self.runtime.engine.connect() as conn:
            return set(
                conn.execute(select(orders.c.order_id).where(orders.c.status == "cancelled"))
                .scalars()
                .all()
            )

    def jobs(self, kind: str | None = FORWARD_ORDER) -> Counter[str]:
        """Jobs of ``kind`` (every kind with None) by status."""
        stmt = select(outbox_jobs.c.status)
        if kind is not None:
            stmt = stmt.where(outbox_jobs.c.kind == kind)
        with self.runtime.engine.connect() as conn:
            return Counter(row.status for row in conn.execute(stmt))

    def close(self) -> None:
        self.runner.close()
        self.runtime.engine.dispose()
