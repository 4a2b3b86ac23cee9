"""The app with Bling on, against the loopback stand-in (tests/support/bling_standin.py), in this
process: its environment, building it, a full sync, a Shopify sale and Bling's acknowledgement,
a Bling webhook delivered as Bling signs it, and the outbox relayed until it is empty.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bling.client import BlingClient, LocalRateLimiter, NullRateLimiter
from bling.oauth import InMemoryTokenStore, OAuthClient, TokenManager
from bling.webhooks import SIGNATURE_HEADER
from shopify_app import create_app, outbox
from shopify_app.erp.stock_sync import full_sync, record_acknowledgement
from shopify_app.migrations_runner import upgrade
from shopify_app.outbox.tables import outbox_jobs
from shopify_app.runtime import EXTENSION_KEY, Runtime
from tests.support.app import SHOP, app_environ
from tests.support.bling_standin import DEFAULT_DEPOSIT_ID, BlingStandIn, Reply
from tests.support.clock import FakeClock
from tests.support.shopify_sender import deliver


def bling_environ(
    standin: BlingStandIn, *, deposit: int | None = DEFAULT_DEPOSIT_ID
) -> dict[str, str]:
    """The Bling variables of an app on ``standin``; ``deposit=None`` leaves BLING_DEPOSIT_ID
    unset (the app then sells from the account's default deposit, erp/account.py)."""
    environ = {
        "BLING_API_BASE_URL": standin.base_url,
        "BLING_CLIENT_ID": standin.client_id,
        "BLING_CLIENT_SECRET": standin.client_secret,
    }
    if deposit is not None:
        environ["BLING_DEPOSIT_ID"] = str(deposit)
    return environ


def make_app(database_url: str, clock: FakeClock, **env: str) -> Flask:
    app = create_app(app_environ(database_url, **env), clock=clock)
    engine = runtime_of(app).engine
    if engine.dialect.name == "sqlite":
        upgrade(engine)
    return app


def runtime_of(app: Flask) -> Runtime:
    return app.extensions[EXTENSION_KEY]


def direct_client(standin: BlingStandIn, *, limited: bool = False) -> BlingClient:
    """A client with tokens the stand-in issued, as after the OAuth dance (no database)."""
    manager = TokenManager(
        OAuthClient(standin.client_id, standin.client_secret, standin.base_url),
        InMemoryTokenStore(),
    )
    manager.connect(standin.authorize())
    limiter = LocalRateLimiter() if limited else NullRateLimiter()
    return BlingClient(standin.base_url, manager, limiter, timeout=(1.0, 5.0), max_retries=1)


def sync(app: Flask, standin: BlingStandIn) -> Any:
    with direct_client(standin) as client:
        return full_sync(runtime_of(app), client, deposit_id=DEFAULT_DEPOSIT_ID)


def sell(client: FlaskClient, order_id: int, sku: str, quantity: int = 1) -> None:
    """A Shopify order with no cart holds: the line is committed from ``available``."""
    order = {
        "id": order_id,
        "name": f"#{order_id}",
        "cart_token": None,
        "checkout_token": None,
        "cancelled_at": None,
        "note_attributes": [],
        "line_items": [{"id": 1, "sku": sku, "quantity": quantity}],
    }
    response = deliver(client, order, "orders/create")
    assert response.status_code == 200, response.get_data(as_text=True)


def acknowledge(runtime: Runtime, order_id: int, sku: str, quantity: int = 1) -> None:
    """What the order forwarder does once Bling posted the order's stock, in one transaction."""
    reference = f"shopify:{order_id}"
    with runtime.uow() as uow:
        order = uow.orders.get(SHOP, order_id, lock=True)
        assert order is not None
        uow.stock.lock([sku])[sku].acknowledge(quantity, reference)
        record_acknowledgement(uow, sku, quantity, reference)
        order.forward_status = "forwarded"
        uow.orders.save(order)
        uow.commit()


def deliver_bling(app: Flask, standin: BlingStandIn, raw: bytes, **headers: str) -> Any:
    """``POST /webhooks/bling`` with ``raw`` signed as Bling signs it (X-Bling-Signature-256 with
    the client secret); the response, whatever its status (tests of refusals need it)."""
    sent = {SIGNATURE_HEADER: standin.sign_webhook(raw), "Content-Type": "application/json"}
    return app.test_client().post("/webhooks/bling", data=raw, headers={**sent, **headers})


def drain(runtime: Runtime, clock: FakeClock, rounds: int = 40) -> None:
    """Relay the outbox in this process until nothing is pending, moving the clock past every
    backoff and pause."""
    for _ in range(rounds):
        outbox.run_due(runtime, batch=50)
        with runtime.engine.connect() as conn:
            pending = conn.execute(
                select(outbox_jobs.c.id).where(outbox_jobs.c.status == "pending")
            ).all()
        if not pending:
            return
        clock.advance(3600)
    raise AssertionError("the outbox did not drain")


class GatedStandIn(BlingStandIn):
    """Answers a balance request only when told to, *after* reading the balance: the answer is
    then one that was current when the request arrived, delivered late (a slow Bling)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.gate_armed = False
        self.balance_read = threading.Event()
        self.release = threading.Event()

    def route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Reply:
        reply = super().route(method, path, query, raw)  # reads under the stand-in's lock
        if self.gate_armed and path.startswith("/estoques/saldos"):
            self.gate_armed = False
            self.balance_read.set()
            assert self.release.wait(10), "the test never released the balance answer"
        return reply
