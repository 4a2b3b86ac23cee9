"""Logs: one ECS JSON object per line on stdout, each business event once, no secret anywhere."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from flask import Flask

from shopify_app.observability.logs import scrub
from shopify_app.runtime import EXTENSION_KEY
from shopify_app.stock import services
from tests.conftest import TOKEN, ApiClient
from tests.support.clock import FakeClock

pytestmark = pytest.mark.integration

ECS_FIELDS = ("@timestamp", "log.level", "log.logger", "message", "ecs.version", "service.name")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of stdout parsed as JSON (a line that is not JSON fails the test)."""
    records = []
    for line in text.splitlines():
        if line.strip():
            records.append(json.loads(line))
    return records


def events(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if "event.action" in r]


def test_a_reserve_409_expire_confirm_sequence_logs_each_event_once_with_the_request_id(
    app: Flask, api: ApiClient, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = app.extensions[EXTENSION_KEY]
    assert api.put("/stock/BZ-LOG", json={"on_hand": 1}).status_code == 200
    capsys.readouterr()

    first = api.post(
        "/stock/BZ-LOG/reserve",
        json={"quantity": 1, "holder": "cart-secret-1", "ttl_seconds": 60},
        headers={"X-Request-ID": "req-reserve-1"},
    )
    assert first.status_code == 200
    assert first.headers["X-Request-ID"] == "req-reserve-1"
    refused = api.post(
        "/stock/BZ-LOG/reserve",
        json={"quantity": 1, "holder": "cart-secret-2"},
        headers={"X-Request-ID": "req-reserve-2"},
    )
    assert refused.status_code == 409
    clock.advance(61)
    assert services.expire_due(runtime.uow()) == 1  # the worker's sweep
    second = api.post("/stock/BZ-LOG/reserve", json={"quantity": 1, "holder": "cart-secret-3"})
    generated_id = second.headers["X-Request-ID"]
    assert len(generated_id) >= 16  # none sent: one is made and echoed
    confirmed = api.post(
        "/stock/confirm",
        json={"reservation_id": second.get_json()["reservation_id"], "order_id": "ORD-77"},
        headers={"X-Request-ID": "req-confirm"},
    )
    assert confirmed.status_code == 200

    records = json_lines(capsys.readouterr().out)
    for record in records:
        for field in ECS_FIELDS:
            assert field in record, (field, record)
    found = events(records)
    assert Counter(e["event.action"] for e in found) == Counter(
        {
            "reservation.created": 2,
            "reservation.rejected": 1,
            "reservation.expired": 1,
            "reservation.confirmed": 1,
            "order.confirmed": 1,
        }
    )
    by_action = {e["event.action"]: e for e in found}
    created = [e for e in found if e["event.action"] == "reservation.created"]
    assert created[0]["http.request.id"] == "req-reserve-1"
    assert created[0]["bazico.sku"] == "BZ-LOG"
    assert created[0]["bazico.quantity"] == 1
    assert created[0]["bazico.outcome"] == "granted"
    assert created[0]["bazico.holder_hash"] and "cart-secret" not in json.dumps(created[0])
    assert created[1]["http.request.id"] == generated_id
    rejected = by_action["reservation.rejected"]
    assert rejected["http.request.id"] == "req-reserve-2"
    assert (rejected["bazico.outcome"], rejected["bazico.available"]) == ("sold_out", {"BZ-LOG": 0})
    assert rejected["log.level"] == "info"
    assert "http.request.id" not in by_action["reservation.expired"]  # the sweep, no request
    assert by_action["order.confirmed"]["http.request.id"] == "req-confirm"
    assert by_action["order.confirmed"]["bazico.order"] == "ORD-77"
    assert by_action["reservation.confirmed"]["bazico.order"] == "ORD-77"
    # Nothing in the output names the shoppers' cart tokens.
    assert "cart-secret" not in json.dumps(records)


def test_a_request_id_that_could_forge_log_lines_is_replaced(
    api: ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    for forged in ('evil", "log.level": "error', "x" * 500):
        response = api.get("/healthz", headers={"X-Request-ID": forged})
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] != forged
        assert len(response.headers["X-Request-ID"]) == 32


def test_logs_never_show_bearer_tokens_or_e_mails() -> None:
    line = scrub(
        "GET /x Authorization: Bearer abc.DEF-123 user maria.silva+promo@example.com.br "
        "callback?code=S3CR3T&state=x access_token=tok123"
    )
    assert "abc.DEF-123" not in line and "maria.silva" not in line
    assert "S3CR3T" not in line and "tok123" not in line
    assert "[email]" in line and "Bearer [redacted]" in line


def test_a_failed_login_does_not_log_the_token_it_was_given(
    api: ApiClient, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-token-0123456789"
    assert api.get("/stock/BZ-X", token=wrong).status_code == 401
    assert api.get("/stock/BZ-X", token=TOKEN).status_code == 404
    out = capsys.readouterr().out + caplog.text
    assert wrong not in out and TOKEN not in out
