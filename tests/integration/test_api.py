"""Every /stock route of the README's HTTP API, every status it lists, and bad input changing
nothing.

Runs on SQLite and on PostgreSQL (the ``database_url`` fixture).

Long because it walks every route and status of the README's HTTP API in one place, so a change
to the contract shows up in one file.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.support.app import ApiClient
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures, hold_count, snapshot


def stock(api: ApiClient, sku: str, on_hand: int) -> None:
    assert api.put(f"/stock/{sku}", json={"on_hand": on_hand}).status_code == 200


def reserve(api: ApiClient, sku: str, **body: Any) -> Any:
    return api.post(f"/stock/{sku}/reserve", json=body)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


# --- GET /stock/{sku} -------------------------------------------------------------------------


def test_get_stock_returns_the_figures(api: ApiClient) -> None:
    stock(api, "TEE-P", 5)
    reserve(api, "TEE-P", quantity=2)
    response = api.get("/stock/TEE-P")
    assert response.status_code == 200
    assert response.get_json() == {
        "sku": "TEE-P",
        "on_hand": 5,
        "reserved": 2,
        "committed": 0,
        "available": 3,
    }


def test_get_unknown_sku_is_404(api: ApiClient) -> None:
    assert_error(api.get("/stock/NOPE"), 404, "unknown_sku")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic dGVzdA=="},
        {"Authorization": ""},
    ],
)
def test_every_stock_route_needs_the_bearer_token(
    api: ApiClient, engine: Engine, headers: dict[str, str]
) -> None:
    stock(api, "TEE-P", 5)
    hold = reserve(api, "TEE-P").get_json()["reservation_id"]
    before = snapshot(engine)
    calls = [
        ("GET", "/stock/TEE-P", None),
        ("PUT", "/stock/TEE-P", {"on_hand": 1}),
        ("POST", "/stock/TEE-P/reserve", {"quantity": 1}),
        ("POST", "/stock/reserve", {"lines": [{"sku": "TEE-P"}]}),
        ("POST", "/stock/confirm", {"reservation_id": hold}),
        ("DELETE", f"/stock/reservations/{hold}", None),
    ]
    for method, path, body in calls:
        response = api.request(method, path, token=None, headers=headers, json=body)
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot(engine) == before


# --- PUT /stock/{sku} -------------------------------------------------------------------------


def test_put_creates_then_adjusts_and_audits(api: ApiClient, engine: Engine) -> None:
    assert api.put("/stock/NEW-SKU", json={"on_hand": 7}).get_json()["available"] == 7
    reserve(api, "NEW-SKU", quantity=3)
    response = api.put("/stock/NEW-SKU", json={"on_hand": 4, "note": "ignored"})
    assert response.status_code == 200
    assert response.get_json() == {
        "sku": "NEW-SKU",
        "on_hand": 4,
        "reserved": 3,
        "committed": 0,
        "available": 1,
    }
    assert_ledger_balanced(engine)


@pytest.mark.parametrize(
    "body",
    [{"on_hand": -1}, {"on_hand": "5"}, {"on_hand": 2.5}, {"on_hand": None}, {}, {"on_hand": True}],
)
def test_put_rejects_bad_bodies_with_422(api: ApiClient, engine: Engine, body: Any) -> None:
    stock(api, "TEE-P", 5)
    before = snapshot(engine)
    assert_error(api.put("/stock/TEE-P", json=body), 422, "invalid_request")
    assert snapshot(engine) == before


# --- POST /stock/{sku}/reserve ----------------------------------------------------------------


def test_reserve_grants_a_hold(api: ApiClient, engine: Engine, clock: FakeClock) -> None:
    stock(api, "TEE-P", 5)
    response = reserve(api, "TEE-P", quantity=2, holder="cart-abc", ttl_seconds=60, extra="ok")
    assert response.status_code == 200
    body = response.get_json()
    assert body["sku"] == "TEE-P" and body["quantity"] == 2
    uuid.UUID(body["reservation_id"])
    assert body["expires_at"].startswith("2026-11-27T12:01:00")
    assert figures(engine, "TEE-P")["available"] == 3
    assert_ledger_balanced(engine)


def test_reserve_without_body_holds_one_for_the_default_ttl(api: ApiClient) -> None:
    stock(api, "TEE-P", 5)
    response = api.post("/stock/TEE-P/reserve")
    assert response.status_code == 200
    assert response.get_json()["quantity"] == 1
    assert response.get_json()["expires_at"].startswith("2026-11-27T12:15:00")


def test_reserve_past_available_is_409_with_what_is_left(api: ApiClient, engine: Engine) -> None:
    stock(api, "TEE-P", 3)
    reserve(api, "TEE-P", quantity=2)
    before = snapshot(engine)
    body = assert_error(reserve(api, "TEE-P", quantity=2), 409, "out_of_stock")
    assert body["available"] == 1
    assert body["shortfalls"] == {"TEE-P": 1}
    assert snapshot(engine) == before


def test_reserve_unknown_sku_is_404(api: ApiClient, engine: Engine) -> None:
    before = snapshot(engine)
    assert_error(reserve(api, "NOPE"), 404, "unknown_sku")
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    "body",
    [
        {"quantity": 0},
        {"quantity": -3},
        {"quantity": "2"},
        {"quantity": 1.5},
        {"quantity": None},
        {"quantity": 10**9},
        {"ttl_seconds": 0},
        {"ttl_seconds": "60"},
        {"holder": ""},
        {"holder": 42},
    ],
)
def test_reserve_rejects_bad_bodies_with_422(api: ApiClient, engine: Engine, body: Any) -> None:
    stock(api, "TEE-P", 5)
    before = snapshot(engine)
    assert_error(reserve(api, "TEE-P", **body), 422, "invalid_request")
    assert snapshot(engine) == before


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"quantity": 1,}', b"\xff\xfe"])
def test_malformed_json_is_400_and_changes_nothing(
    api: ApiClient, engine: Engine, raw: bytes
) -> None:
    stock(api, "TEE-P", 5)
    before = snapshot(engine)
    response = api.post(
        "/stock/TEE-P/reserve", data=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")
    assert snapshot(engine) == before


@pytest.mark.parametrize("raw", [b"[]", b"[1]", b"0", b'"x"', b"null"])
def test_json_that_is_not_an_object_is_422(api: ApiClient, engine: Engine, raw: bytes) -> None:
    stock(api, "TEE-P", 5)
    before = snapshot(engine)
    response = api.post(
        "/stock/TEE-P/reserve", data=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "invalid_request")
    assert snapshot(engine) == before


def test_form_encoded_body_is_400(api: ApiClient, engine: Engine) -> None:
    stock(api, "TEE-P", 5)
    before = snapshot(engine)
    assert_error(api.post("/stock/TEE-P/reserve", data={"quantity": "1"}), 400, "invalid_json")
    assert snapshot(engine) == before


def test_body_over_one_mebibyte_is_413(api: ApiClient, engine: Engine) -> None:
    stock(api, "TEE-P", 5)
    before = snapshot(engine)
    big = b'{"quantity": 1, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = api.post(
        "/stock/TEE-P/reserve", data=big, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")
    assert snapshot(engine) == before


# --- POST /stock/reserve (several lines) -----------------------------------------------------


def test_multi_line_reserve_is_all_or_nothing(api: ApiClient, engine: Engine) -> None:
    stock(api, "A", 2)
    stock(api, "B", 1)
    before = snapshot(engine)
    body = assert_error(
        api.post(
            "/stock/reserve",
            json={"lines": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 2}]},
        ),
        409,
        "out_of_stock",
    )
    assert body["shortfalls"] == {"B": 1}
    assert snapshot(engine) == before

    assert_error(
        api.post("/stock/reserve", json={"lines": [{"sku": "A"}, {"sku": "GHOST"}]}),
        404,
        "unknown_sku",
    )
    assert snapshot(engine) == before

    response = api.post(
        "/stock/reserve",
        json={"lines": [{"sku": "B"}, {"sku": "A"}, {"sku": "A"}], "holder": "cart-1"},
    )
    assert response.status_code == 200
    held = {r["sku"]: r["quantity"] for r in response.get_json()["reservations"]}
    assert held == {"A": 2, "B": 1}
    assert figures(engine, "A")["available"] == 0 and figures(engine, "B")["available"] == 0
    assert_ledger_balanced(engine)


def test_repeated_lines_are_summed_before_the_check(api: ApiClient, engine: Engine) -> None:
    stock(api, "A", 2)
    before = snapshot(engine)
    response = api.post(
        "/stock/reserve", json={"lines": [{"sku": "A", "quantity": 2}, {"sku": "A"}]}
    )
    assert_error(response, 409, "out_of_stock")
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    "body",
    [{"lines": []}, {}, {"lines": [{"quantity": 1}]}, {"lines": [{"sku": "A", "quantity": 0}]}],
)
def test_multi_line_reserve_rejects_bad_bodies(api: ApiClient, engine: Engine, body: Any) -> None:
    stock(api, "A", 2)
    before = snapshot(engine)
    assert_error(api.post("/stock/reserve", json=body), 422, "invalid_request")
    assert snapshot(engine) == before


# --- POST /stock/confirm ----------------------------------------------------------------------


def test_confirm_commits_and_is_idempotent_per_order(api: ApiClient, engine: Engine) -> None:
    stock(api, "TEE-P", 5)
    hold = reserve(api, "TEE-P", quantity=2).get_json()["reservation_id"]
    response = api.post("/stock/confirm", json={"reservation_id": hold, "order_id": "#1001"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "confirmed" and body["order_id"] == "#1001"
    assert figures(engine, "TEE-P") == {"on_hand": 5, "reserved": 0, "committed": 2, "available": 3}

    before = snapshot(engine)
    again = api.post("/stock/confirm", json={"reservation_id": hold, "order_id": "#1001"})
    assert again.status_code == 200 and again.get_json()["status"] == "confirmed"
    assert snapshot(engine) == before

    body = assert_error(
        api.post("/stock/confirm", json={"reservation_id": hold, "order_id": "#2002"}),
        409,
        "already_confirmed",
    )
    assert body["reservation_ids"] == [hold]
    assert snapshot(engine) == before
    assert_ledger_balanced(engine)


def test_confirm_several_holds_at_once(api: ApiClient, engine: Engine) -> None:
    stock(api, "A", 2)
    stock(api, "B", 2)
    ids = [reserve(api, sku).get_json()["reservation_id"] for sku in ("A", "B")]
    response = api.post("/stock/confirm", json={"reservation_ids": ids, "order_id": "#7"})
    assert response.status_code == 200
    assert {r["sku"] for r in response.get_json()["reservations"]} == {"A", "B"}
    assert figures(engine, "A")["committed"] == 1 and figures(engine, "B")["committed"] == 1
    assert_ledger_balanced(engine)


def test_confirm_an_expired_hold_is_410_and_changes_nothing(
    api: ApiClient, engine: Engine, clock: FakeClock
) -> None:
    stock(api, "A", 2)
    stock(api, "B", 2)
    fresh = reserve(api, "A", ttl_seconds=600).get_json()["reservation_id"]
    stale = reserve(api, "B", ttl_seconds=60).get_json()["reservation_id"]
    clock.advance(61)
    before = snapshot(engine)
    body = assert_error(
        api.post("/stock/confirm", json={"reservation_ids": [fresh, stale], "order_id": "#9"}),
        410,
        "reservation_expired",
    )
    assert body["reservation_ids"] == [stale]
    assert snapshot(engine) == before


def test_confirm_a_released_hold_is_410(api: ApiClient, engine: Engine) -> None:
    stock(api, "A", 2)
    hold = reserve(api, "A").get_json()["reservation_id"]
    assert api.delete(f"/stock/reservations/{hold}").status_code == 204
    before = snapshot(engine)
    assert_error(
        api.post("/stock/confirm", json={"reservation_id": hold}), 410, "reservation_released"
    )
    assert snapshot(engine) == before


def test_confirm_unknown_hold_is_404(api: ApiClient, engine: Engine) -> None:
    stock(api, "A", 2)
    hold = reserve(api, "A").get_json()["reservation_id"]
    ghost = str(uuid.uuid4())
    before = snapshot(engine)
    body = assert_error(
        api.post("/stock/confirm", json={"reservation_ids": [hold, ghost]}),
        404,
        "reservation_not_found",
    )
    assert body["reservation_ids"] == [ghost]
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reservation_id": "not-a-uuid"},
        {"reservation_id": str(uuid.UUID(int=1)), "reservation_ids": [str(uuid.UUID(int=2))]},
        {"reservation_ids": []},
        {"reservation_id": 12},
        {"reservation_id": str(uuid.UUID(int=1)), "order_id": 5},
    ],
)
def test_confirm_rejects_bad_bodies(api: ApiClient, engine: Engine, body: Any) -> None:
    before = snapshot(engine)
    assert_error(api.post("/stock/confirm", json=body), 422, "invalid_request")
    assert snapshot(engine) == before


# --- DELETE /stock/reservations/{id} ----------------------------------------------------------


def test_release_gives_units_back_and_repeats_as_204(api: ApiClient, engine: Engine) -> None:
    stock(api, "A", 1)
    hold = reserve(api, "A").get_json()["reservation_id"]
    assert figures(engine, "A")["available"] == 0
    response = api.delete(f"/stock/reservations/{hold}")
    assert response.status_code == 204 and response.get_data() == b""
    assert figures(engine, "A")["available"] == 1
    before = snapshot(engine)
    assert api.delete(f"/stock/reservations/{hold}").status_code == 204
    assert snapshot(engine) == before
    assert_ledger_balanced(engine)


def test_release_unknown_or_malformed_id_is_404(api: ApiClient) -> None:
    assert_error(api.delete(f"/stock/reservations/{uuid.uuid4()}"), 404, "reservation_not_found")
    assert_error(api.delete("/stock/reservations/xyz"), 404, "reservation_not_found")


def test_release_a_confirmed_hold_is_409(api: ApiClient, engine: Engine) -> None:
    stock(api, "A", 1)
    hold = reserve(api, "A").get_json()["reservation_id"]
    api.post("/stock/confirm", json={"reservation_id": hold, "order_id": "#1"})
    before = snapshot(engine)
    assert_error(api.delete(f"/stock/reservations/{hold}"), 409, "already_confirmed")
    assert snapshot(engine) == before


# --- everything else --------------------------------------------------------------------------


def test_unknown_route_and_wrong_method_answer_json(api: ApiClient) -> None:
    assert_error(api.get("/nowhere"), 404, "not_found")
    response = api.request("PATCH", "/stock/A")
    assert_error(response, 405, "method_not_allowed")


def test_hold_ledger_stays_consistent_after_a_mixed_session(api: ApiClient, engine: Engine) -> None:
    stock(api, "A", 10)
    ids = [reserve(api, "A", quantity=2).get_json()["reservation_id"] for _ in range(4)]
    api.delete(f"/stock/reservations/{ids[0]}")
    api.post("/stock/confirm", json={"reservation_id": ids[1], "order_id": "#1"})
    api.put("/stock/A", json={"on_hand": 8})
    assert figures(engine, "A") == {"on_hand": 8, "reserved": 4, "committed": 2, "available": 2}
    assert hold_count(engine, "A", "active") == 2
    assert_ledger_balanced(engine)
