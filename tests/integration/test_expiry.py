"""Expiry is exact for buyers: a hold past its time stops counting at once, sweep or no sweep."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import Engine

from shopify_app.runtime import EXTENSION_KEY
from shopify_app.stock import services
from tests.support.app import ApiClient
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures, hold_count, snapshot


def test_a_new_buyer_gets_an_expired_unit_before_any_sweep(
    api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    api.put("/stock/LAST", json={"on_hand": 1})
    first = api.post("/stock/LAST/reserve", json={"ttl_seconds": 60})
    assert first.status_code == 200
    assert api.post("/stock/LAST/reserve").status_code == 409

    clock.advance(59)
    assert api.post("/stock/LAST/reserve").status_code == 409, "still held one second early"

    clock.advance(1)  # exactly at expires_at the hold no longer counts
    assert api.get("/stock/LAST").get_json()["available"] == 1, "reads already exclude it"
    second = api.post("/stock/LAST/reserve")
    assert second.status_code == 200
    assert hold_count(engine, "LAST", "expired") == 1
    assert hold_count(engine, "LAST", "active") == 1
    assert figures(engine, "LAST")["available"] == 0
    assert_ledger_balanced(engine)


def test_confirming_an_expired_hold_is_410_and_changes_nothing(
    api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    api.put("/stock/LAST", json={"on_hand": 1})
    hold = api.post("/stock/LAST/reserve", json={"ttl_seconds": 30}).get_json()["reservation_id"]
    clock.advance(31)
    before = snapshot(engine)
    response = api.post("/stock/confirm", json={"reservation_id": hold, "order_id": "#1"})
    assert response.status_code == 410
    assert response.get_json()["error"] == "reservation_expired"
    assert snapshot(engine) == before


def test_the_expired_hold_of_a_lazily_expired_sku_also_gives_410(
    api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    api.put("/stock/LAST", json={"on_hand": 1})
    hold = api.post("/stock/LAST/reserve", json={"ttl_seconds": 30}).get_json()["reservation_id"]
    clock.advance(31)
    assert api.post("/stock/LAST/reserve").status_code == 200  # expires the first hold lazily
    before = snapshot(engine)
    response = api.post("/stock/confirm", json={"reservation_id": hold})
    assert response.status_code == 410
    assert snapshot(engine) == before


def test_the_sweeper_expires_what_buyers_did_not(
    app: Flask, api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    for sku in ("A", "B", "C"):
        api.put(f"/stock/{sku}", json={"on_hand": 5})
        api.post(f"/stock/{sku}/reserve", json={"quantity": 2, "ttl_seconds": 10})
    api.post("/stock/C/reserve", json={"quantity": 1, "ttl_seconds": 600})
    runtime = app.extensions[EXTENSION_KEY]

    assert services.expire_due(runtime.uow()) == 0
    clock.advance(11)
    assert services.expire_due(runtime.uow(), batch_skus=2) == 3
    assert services.expire_due(runtime.uow()) == 0
    assert [figures(engine, s)["reserved"] for s in ("A", "B", "C")] == [0, 0, 1]
    assert hold_count(engine, status="expired") == 3
    assert_ledger_balanced(engine)


def test_releasing_a_due_hold_still_gives_its_units_back(
    api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    api.put("/stock/A", json={"on_hand": 2})
    hold = api.post("/stock/A/reserve", json={"ttl_seconds": 5}).get_json()["reservation_id"]
    clock.advance(6)
    assert api.delete(f"/stock/reservations/{hold}").status_code == 204
    assert figures(engine, "A") == {"on_hand": 2, "reserved": 0, "committed": 0, "available": 2}
    assert_ledger_balanced(engine)


def test_put_answers_the_figures_get_would_show(
    api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    api.put("/stock/A", json={"on_hand": 5})
    api.post("/stock/A/reserve", json={"quantity": 2, "ttl_seconds": 60})
    clock.advance(61)
    put = api.put("/stock/A", json={"on_hand": 6}).get_json()
    assert put == api.get("/stock/A").get_json()
    assert put["reserved"] == 0 and put["available"] == 6
