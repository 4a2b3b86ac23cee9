"""The cart webhook's transaction on PostgreSQL (db/pipeline.py): the receipt written at commit,
and the cart row locked or inserted in one statement, under the concurrency that decides them.

PostgreSQL only: SQLite checks the receipt first and runs one writer at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, insert, select

from shopify_app import create_app
from shopify_app.shopify.ports import EPOCH
from shopify_app.shopify.tables import carts, webhook_receipts
from tests.support.app import SHOP, ApiClient, app_environ, engine_of
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures, held_by, snapshot
from tests.support.orders import cart_payload, order_payload
from tests.support.shopify_sender import deliver

pytestmark = pytest.mark.postgres


@pytest.fixture
def app(postgres_url: str, clock: FakeClock) -> Iterator[Flask]:
    app = create_app(app_environ(postgres_url), clock=clock)
    yield app
    engine_of(app).dispose()


@pytest.fixture
def engine(app: Flask) -> Engine:
    return engine_of(app)


@pytest.fixture
def api(app: Flask) -> ApiClient:
    return ApiClient(app.test_client())


def _in_threads(app: Flask, *calls: Any) -> list[Any]:
    """Run each ``call(client)`` in its own thread, all released at once; their answers."""
    answers: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        client = app.test_client()
        start.wait()
        answers[i] = calls[i](client)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_a_repeated_delivery_fails_on_its_receipt_and_leaves_nothing(
    app: Flask, api: ApiClient, engine: Engine
) -> None:
    api.put("/stock/TEE", json={"on_hand": 10})
    client = app.test_client()
    cart = cart_payload("cart-dup", "2026-11-27T12:00:00Z", {"TEE": 2})
    assert deliver(client, cart, "carts/update", webhook_id="wh-c1").get_json()["status"] == (
        "applied"
    )
    before = snapshot(engine)
    # The same delivery again, as a later cart state would not be: it goes all the way to the
    # commit (nothing is checked first on PostgreSQL), fails on the receipt's key, rolls back.
    newer = cart_payload("cart-dup", "2026-11-27T12:00:05Z", {"TEE": 5})
    again = deliver(client, newer, "carts/update", webhook_id="wh-c1")
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    assert snapshot(engine) == before
    assert held_by(engine, "cart-dup") == {"TEE": 2}
    assert_ledger_balanced(engine)


@pytest.mark.parametrize("topic", ["carts/create", "orders/create"])
def test_twin_deliveries_at_once_are_applied_once(
    app: Flask, api: ApiClient, engine: Engine, topic: str
) -> None:
    api.put("/stock/TEE", json={"on_hand": 10})
    if topic == "carts/create":
        body: Any = cart_payload("cart-twin", "2026-11-27T12:00:00Z", {"TEE": 3})
    else:
        body = order_payload(7001, None, {"TEE": 3})

    def send(client: FlaskClient) -> Any:
        return deliver(client, body, topic, webhook_id="wh-twin").get_json()["status"]

    outcomes = _in_threads(app, *[send] * 4)
    assert sorted(outcomes).count("duplicate") == 3, outcomes
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(webhook_receipts)).scalar() == 1
    stock = figures(engine, "TEE")
    assert (stock["reserved"] + stock["committed"]) == 3
    assert_ledger_balanced(engine)


def test_a_first_delivery_racing_another_for_a_new_cart_locks_the_row_it_inserted(
    app: Flask, api: ApiClient, engine: Engine
) -> None:
    """The cart's row inserted by a transaction still open when this delivery's insert meets
    its key: the delivery waits, inserts nothing, and its statement's snapshot does not hold the
    row; having taken the locks that follow the cart's meanwhile, it rolls back and runs again
    (CartRaced), and applies on the state committed."""
    api.put("/stock/TEE", json={"on_hand": 10})
    other = engine.connect()
    transaction = other.begin()
    other.execute(
        insert(carts).values(
            shop=SHOP,
            token="cart-race",
            cart_updated_at=EPOCH,
            ordered=False,
            updated_at=EPOCH,
        )
    )
    answers: list[Any] = []
    cart = cart_payload("cart-race", "2026-11-27T12:00:00Z", {"TEE": 2})
    worker = threading.Thread(
        target=lambda: answers.append(deliver(app.test_client(), cart, "carts/create"))
    )
    worker.start()
    worker.join(timeout=1.0)
    assert worker.is_alive(), "the delivery should wait on the cart's key"
    transaction.commit()
    other.close()
    worker.join(timeout=30)
    assert answers and answers[0].get_json()["status"] == "applied"
    assert held_by(engine, "cart-race") == {"TEE": 2}
    assert_ledger_balanced(engine)
