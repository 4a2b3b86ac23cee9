"""The app forwarding orders to the Bling stand-in, driven in this process: its environment,
signed Shopify deliveries that must be taken, and the rows to look at (the relay run until the
outbox drains is ``tests/support/bling_app.py``'s ``drain``). test_bling_forwarding.py and
test_bling_order_life.py share them."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from shopify_app.orders.tables import orders
from shopify_app.outbox.tables import outbox_jobs
from shopify_app.runtime import Runtime
from tests.support.bling_app import bling_environ
from tests.support.bling_standin import PAYMENT_METHOD_ID, BlingStandIn
from tests.support.shopify_sender import deliver as post_webhook


def forwarding_environ(standin: BlingStandIn, **extra: str) -> dict[str, str]:
    return {
        **bling_environ(standin),
        "BLING_PAYMENT_METHOD_ID": str(PAYMENT_METHOD_ID),
        "BLING_REQUESTS_PER_SECOND": "50",  # the stand-in's limit is off here; see the e2e tests
        **extra,
    }


def deliver(client: FlaskClient, payload: dict[str, Any], topic: str) -> dict[str, Any]:
    """The shared ``deliver`` (tests/support/shopify_sender.py), for deliveries that must be
    taken: it asserts the 200 and returns the JSON (the shared one returns the response, for
    tests that expect refusals)."""
    response = post_webhook(client, payload, topic)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def order_row(runtime: Runtime, order_id: int) -> Any:
    with runtime.engine.connect() as conn:
        return conn.execute(select(orders).where(orders.c.order_id == order_id)).one()


def job(runtime: Runtime, kind: str) -> Any:
    with runtime.engine.connect() as conn:
        return conn.execute(select(outbox_jobs).where(outbox_jobs.c.kind == kind)).one()


def jobs(runtime: Runtime) -> list[tuple[str, str]]:
    """(kind, status) of every job, in the order they were queued."""
    with runtime.engine.connect() as conn:
        rows = conn.execute(select(outbox_jobs.c.kind, outbox_jobs.c.status).order_by("id"))
        return [(r.kind, r.status) for r in rows]
