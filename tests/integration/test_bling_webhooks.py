"""POST /webhooks/bling: signed stock events, forgeries, duplicates and events out of order.

Events are built by the stand-in (its ``stock_event``) and signed as Bling signs them
(``sign_webhook``); dates are set relative to the app's fake clock. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from shopify_app.erp.stock_sync import OWN_POSTING_WINDOW
from shopify_app.erp.stock_tables import bling_events
from tests.support.bling_app import (
    GatedStandIn,
    acknowledge,
    bling_environ,
    deliver_bling,
    make_app,
    runtime_of,
    sell,
    sync,
)
from tests.support.bling_standin import COMPANY_ID, DEFAULT_DEPOSIT_ID, BlingStandIn
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures, snapshot

SIGNATURE = "X-Bling-Signature-256"


@pytest.fixture
def standin() -> Iterator[GatedStandIn]:
    with GatedStandIn(rate_limit=None) as server:
        yield server


@pytest.fixture
def bling_app(database_url: str, clock: FakeClock, standin: BlingStandIn) -> Iterator[Flask]:
    app = make_app(database_url, clock, **bling_environ(standin))
    yield app
    runtime_of(app).engine.dispose()


def event(
    standin: BlingStandIn,
    product_id: int,
    date: datetime,
    *,
    event_id: str | None = None,
    deposit_id: int | None = None,
) -> bytes:
    """The stand-in's ``stock.updated`` for the product's current balance, dated ``date``."""
    body = json.loads(standin.stock_event(product_id, deposit_id))
    body["date"] = date.strftime("%Y-%m-%dT%H:%M:%SZ")  # Bling's format: whole seconds, UTC
    body["eventId"] = event_id or str(uuid.uuid4())
    return json.dumps(body).encode()


def at(clock: FakeClock, seconds: float) -> datetime:
    return clock.now + timedelta(seconds=seconds)


# --- forgeries -------------------------------------------------------------------------------


def test_a_bad_or_missing_signature_is_401_and_changes_nothing(
    bling_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    product = standin.add_product("SIG", 5)
    sync(bling_app, standin)
    standin.set_stock(product, 1)
    raw = event(standin, product, at(clock, 10))
    engine = runtime_of(bling_app).engine
    before = snapshot(engine)
    client = bling_app.test_client()
    tampered = raw.replace(b'"saldoVirtual": 1.0', b'"saldoVirtual": 9.0')
    assert tampered != raw
    forgeries = [
        {},  # no signature at all
        {SIGNATURE: "sha256=" + "0" * 64},
        {SIGNATURE: standin.sign_webhook(raw).removeprefix("sha256=")},  # no prefix
        {SIGNATURE: BlingStandIn(client_secret="someone-else").sign_webhook(raw)},
    ]
    for headers in forgeries:
        response = client.post("/webhooks/bling", data=raw, headers=headers)
        assert response.status_code == 401, headers
        assert response.get_json()["error"] == "invalid_signature"
    # Signed over other bytes than those sent (a body altered in transit).
    response = client.post(
        "/webhooks/bling", data=tampered, headers={SIGNATURE: standin.sign_webhook(raw)}
    )
    assert response.status_code == 401
    assert snapshot(engine) == before
    assert figures(engine, "SIG")["on_hand"] == 5
    assert_ledger_balanced(engine)


def test_while_bling_is_not_configured_every_delivery_is_401(
    database_url: str, clock: FakeClock
) -> None:
    with BlingStandIn() as standin:
        app = make_app(database_url, clock)  # no BLING_CLIENT_SECRET
        try:
            product = standin.add_product("OFF", 5)
            response = deliver_bling(app, standin, event(standin, product, at(clock, 0)))
            assert response.status_code == 401
            with runtime_of(app).engine.connect() as conn:
                assert conn.execute(select(bling_events)).all() == []
        finally:
            runtime_of(app).engine.dispose()


def test_a_signed_body_that_is_not_an_event_is_400(bling_app: Flask, standin: BlingStandIn) -> None:
    for raw in (b"not json", b"[]", b'{"event": "stock.updated"}'):
        response = deliver_bling(bling_app, standin, raw)
        assert response.status_code == 400, raw
        assert response.get_json()["error"] == "invalid_payload"


# --- applying stock events -----------------------------------------------------------------


def test_a_stock_event_sets_on_hand_and_a_duplicate_changes_nothing(
    bling_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    engine = runtime_of(bling_app).engine
    product = standin.add_product("DUP", 5)
    sync(bling_app, standin)
    standin.set_stock(product, 3.6)
    raw = event(standin, product, at(clock, 10), event_id="ev-1")

    first = deliver_bling(bling_app, standin, raw)
    assert (first.status_code, first.get_json()) == (200, {"status": "applied"})
    assert figures(engine, "DUP")["on_hand"] == 3  # 3.6 units: 3 can be sold
    before = snapshot(engine)

    again = deliver_bling(bling_app, standin, raw)
    assert (again.status_code, again.get_json()) == (200, {"status": "duplicate"})
    assert snapshot(engine) == before
    assert_ledger_balanced(engine)


def test_events_out_of_order_leave_the_newest_balance(
    bling_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    engine = runtime_of(bling_app).engine
    product = standin.add_product("ORDER", 5)
    sync(bling_app, standin)
    standin.set_stock(product, 7)
    older = event(standin, product, at(clock, 10))
    standin.set_stock(product, 2)
    newer = event(standin, product, at(clock, 20))

    assert deliver_bling(bling_app, standin, newer).get_json() == {"status": "applied"}
    assert deliver_bling(bling_app, standin, older).get_json() == {"status": "stale"}
    assert figures(engine, "ORDER")["on_hand"] == 2
    # Bling retries for days: an event older than the last sync is stale too.
    clock.advance(60)
    standin.set_stock(product, 4)
    sync(bling_app, standin)
    late = event(standin, product, at(clock, -30))
    assert deliver_bling(bling_app, standin, late).get_json() == {"status": "stale"}
    assert figures(engine, "ORDER")["on_hand"] == 4
    assert_ledger_balanced(engine)


def test_an_event_dated_before_an_acknowledgement_does_not_resurrect_the_unit(
    bling_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime, engine = runtime_of(bling_app), runtime_of(bling_app).engine
    product = standin.add_product("EV-RACE", 5)
    sync(bling_app, standin)
    sell(bling_app.test_client(), 2001, "EV-RACE")
    clock.advance(10)
    # Bling emits an event at +10 s with 5 (before our order was posted), delivered late…
    stale_balance = event(standin, product, at(clock, 0))
    clock.advance(OWN_POSTING_WINDOW.total_seconds() + 5)  # the posting comes well after it
    standin.set_stock(product, 4)
    own_posting = event(standin, product, at(clock, -1))  # stamped by Bling as it posted
    acknowledge(runtime, 2001, "EV-RACE")  # …after the posting was acknowledged at +20 s.
    assert deliver_bling(bling_app, standin, stale_balance).get_json() == {"status": "applied"}
    assert figures(engine, "EV-RACE") == {
        "on_hand": 4,
        "reserved": 0,
        "committed": 0,
        "available": 4,
    }
    # The posting's own event, dated a second before the acknowledgement, shows the posting:
    # the acknowledgement is not taken off it a second time.
    assert deliver_bling(bling_app, standin, own_posting).get_json() == {"status": "applied"}
    assert figures(engine, "EV-RACE")["on_hand"] == 4
    assert_ledger_balanced(engine)


def test_events_bling_cannot_map_are_acknowledged_and_ignored(
    bling_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    engine = runtime_of(bling_app).engine
    known = standin.add_product("KNOWN", 5)
    sync(bling_app, standin)
    stranger = standin.add_product("NOT-SYNCED-YET", 8)
    before = snapshot(engine)

    unknown = deliver_bling(bling_app, standin, event(standin, stranger, at(clock, 5)))
    assert unknown.get_json() == {"status": "ignored_unknown_product"}
    other_deposit = event(standin, known, at(clock, 5), deposit_id=DEFAULT_DEPOSIT_ID + 1)
    assert deliver_bling(bling_app, standin, other_deposit).get_json() == {"status": "ignored"}
    order = {"eventId": "ev-order", "date": "2026-11-27T12:00:05Z", "event": "order.created"}
    raw = json.dumps({**order, "version": "v1", "data": {"id": 1}}).encode()
    assert deliver_bling(bling_app, standin, raw).get_json() == {"status": "ignored"}

    after = snapshot(engine)
    assert {k: v for k, v in after.items() if k != "bling_events"} == {
        k: v for k, v in before.items() if k != "bling_events"
    }
    assert len(after["bling_events"]) == 3  # receipts kept: Bling's retries are duplicates
    assert_ledger_balanced(engine)


def test_a_virtual_stock_event_uses_the_configured_deposit(
    bling_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    engine = runtime_of(bling_app).engine
    product = standin.add_product("VIRT", 5)
    sync(bling_app, standin)
    body = {
        "eventId": "ev-virtual",
        "date": at(clock, 5).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "version": "v1",
        "event": "virtual_stock.updated",
        "companyId": COMPANY_ID,
        "data": {
            "produto": {"id": product},
            "saldoFisicoTotal": 15.0,
            "saldoVirtualTotal": 11.0,
            "depositos": [
                {"id": DEFAULT_DEPOSIT_ID + 1, "saldoFisico": 10.0, "saldoVirtual": 9.0},
                {"id": DEFAULT_DEPOSIT_ID, "saldoFisico": 5.0, "saldoVirtual": 2.0},
            ],
        },
    }
    response = deliver_bling(bling_app, standin, json.dumps(body).encode())
    assert response.get_json() == {"status": "applied"}
    assert figures(engine, "VIRT")["on_hand"] == 2  # saldoVirtual of BLING_DEPOSIT_ID only
    assert_ledger_balanced(engine)


def test_a_sync_keeps_a_webhook_balance_newer_than_its_own_read(
    bling_app: Flask, standin: GatedStandIn, clock: FakeClock
) -> None:
    engine = runtime_of(bling_app).engine
    product = standin.add_product("NEWER", 5)
    sync(bling_app, standin)
    standin.gate_armed = True
    reports: list[Any] = []
    syncing = threading.Thread(target=lambda: reports.append(sync(bling_app, standin)))
    syncing.start()
    try:
        assert standin.balance_read.wait(10)  # the sync has read 5 at T = clock.now
        standin.set_stock(product, 1)
        assert deliver_bling(
            bling_app, standin, event(standin, product, at(clock, 3))
        ).get_json() == {"status": "applied"}
    finally:
        standin.release.set()
        syncing.join(10)
    assert reports and reports[0].skipped == 1
    assert figures(engine, "NEWER")["on_hand"] == 1  # not the 5 the slow sync read
    assert_ledger_balanced(engine)
