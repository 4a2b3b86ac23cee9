"""Logs: one ECS JSON object per line on stdout, each business event once, no secret anywhere.

Long because each business event is checked once, by the flow that emits it, next to the rule
that no secret is logged.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask

from bling.oauth import StoredToken
from shopify_app import create_app
from shopify_app.erp import connection
from shopify_app.migrations_runner import upgrade
from shopify_app.observability.logs import scrub
from shopify_app.runtime import EXTENSION_KEY
from shopify_app.shopify.client import TokenGrant
from shopify_app.shopify.shops import TokenStore
from shopify_app.shopify.signatures import proxy_signature
from shopify_app.stock import services
from tests.support.app import SHOP, TOKEN, ApiClient, app_environ
from tests.support.bling_standin import DEFAULT_DEPOSIT_ID, BlingStandIn
from tests.support.clock import FakeClock
from tests.support.shopify_sender import fixture, signed_headers

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


# --- no secret value in any answer, log line or command output ------------------------------

#: Every secret the service holds, set to values found nowhere else, so a match is a leak.
SECRETS = {
    "SECRET_KEY": "Zq7secretKEYvalue-91c4e2",
    "SHOPIFY_API_SECRET": "Zq7shopifySECRET-5a0d13",
    "SHOPIFY_API_SECRET_PREVIOUS": "Zq7shopifyPREVIOUS-77be02",
    "SHOPIFY_ACCESS_TOKEN": "shpat_Zq7staticTOKEN-0c91ab",
    "STOCK_API_TOKEN": "Zq7stockTOKEN-e4d2f8",
    "BLING_CLIENT_SECRET": "Zq7blingSECRET-31a7c6",
    "METRICS_TOKEN": "Zq7metricsTOKEN-8f2b5d",
}
#: OAuth tokens as stored (encrypted) in the database after an install and a Bling connection.
STORED_TOKENS = {
    "shopify access": "shpua_Zq7storedACCESS-a1b2c3",
    "shopify refresh": "shprt_Zq7storedREFRESH-d4e5f6",
    "bling access": "Zq7blingACCESS-0a9b8c",
    "bling refresh": "Zq7blingREFRESH-7d6e5f",
}


def _leaks(text: str) -> list[str]:
    values = {**SECRETS, **STORED_TOKENS}
    return [name for name, value in values.items() if value in text]


def _answer_text(response: Any) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return f"{response.status_code}\n{headers}\n{response.get_data(as_text=True)}"


@pytest.fixture
def secret_app(sqlite_url: str, clock: FakeClock) -> Iterator[tuple[Flask, BlingStandIn]]:
    with BlingStandIn(
        client_id="bling-client-id", client_secret=SECRETS["BLING_CLIENT_SECRET"]
    ) as bling:
        environ = app_environ(
            sqlite_url,
            **SECRETS,
            LOG_LEVEL="DEBUG",  # every line the code writes is rendered and checked
            BLING_CLIENT_ID="bling-client-id",
            BLING_API_BASE_URL=bling.base_url,
            BLING_DEPOSIT_ID=str(DEFAULT_DEPOSIT_ID),
            SHOPIFY_ADMIN_URL="http://127.0.0.1:9/{shop}",  # nothing listens: calls fail
            APP_URL="https://stock.example.test",
        )
        app = create_app(environ, clock=clock)
        runtime = app.extensions[EXTENSION_KEY]
        upgrade(runtime.engine)
        grant = TokenGrant(
            access_token=STORED_TOKENS["shopify access"],
            refresh_token=STORED_TOKENS["shopify refresh"],
            scope="read_orders",
            expires_in=3600,
            refresh_token_expires_in=86_400,
        )
        TokenStore.for_runtime(runtime).save_tokens(SHOP, grant, issued_at=clock.now)
        stored = StoredToken(
            STORED_TOKENS["bling access"],
            STORED_TOKENS["bling refresh"],
            clock.now + timedelta(hours=1),
        )
        connection.token_store(runtime).update(lambda _old: stored)
        yield app, bling
        runtime.engine.dispose()


def test_no_secret_or_token_value_appears_in_any_answer_log_line_or_command_output(
    secret_app: tuple[Flask, BlingStandIn],
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, bling = secret_app
    runtime = app.extensions[EXTENSION_KEY]
    client = app.test_client()
    token = SECRETS["STOCK_API_TOKEN"]
    shopify_secret = SECRETS["SHOPIFY_API_SECRET"]
    answers: list[tuple[str, str]] = []

    def send(label: str, method: str, path: str, **kw: Any) -> Any:
        response = client.open(path, method=method, **kw)
        answers.append((f"{label}: {method} {path.split('?')[0]}", _answer_text(response)))
        response.close()
        return response

    bearer = {"Authorization": f"Bearer {token}"}
    state = connection.make_state(runtime.settings, clock.now)
    statuses = {
        "health": send("ok", "GET", "/healthz").status_code,
        "ready": send("ok", "GET", "/readyz").status_code,
        "stock put": send(
            "ok", "PUT", "/stock/BZ-S", json={"on_hand": 2}, headers=bearer
        ).status_code,
        "stock get": send("ok", "GET", "/stock/BZ-S", headers=bearer).status_code,
        "reserve": send(
            "ok", "POST", "/stock/BZ-S/reserve", json={"quantity": 1}, headers=bearer
        ).status_code,
        "no token": send("401", "GET", "/stock/BZ-S").status_code,
        "wrong token": send(
            "401", "GET", "/stock/BZ-S", headers={"Authorization": "Bearer nope-123"}
        ).status_code,
        # Another secret offered as the API token is refused, and not echoed either.
        "metrics token as api token": send(
            "401",
            "GET",
            "/stock/BZ-S",
            headers={"Authorization": f"Bearer {SECRETS['METRICS_TOKEN']}"},
        ).status_code,
        "basic auth": send(
            "401", "GET", "/stock/BZ-S", headers={"Authorization": f"Basic {token}"}
        ).status_code,
        "token in query": send("401", "GET", f"/stock/BZ-S?access_token={token}").status_code,
        "404 route": send("404", "GET", "/nowhere", headers=bearer).status_code,
        "404 sku": send("404", "GET", "/stock/NO-SUCH", headers=bearer).status_code,
        "405": send("405", "DELETE", "/healthz").status_code,
        "413": send(
            "413", "POST", "/stock/BZ-S/reserve", data=b"x" * (2 * 1024 * 1024), headers=bearer
        ).status_code,
        "400": send(
            "400",
            "POST",
            "/stock/BZ-S/reserve",
            data=b"{not json",
            headers={**bearer, "Content-Type": "application/json"},
        ).status_code,
        "422": send(
            "422", "POST", "/stock/BZ-S/reserve", json={"quantity": -1}, headers=bearer
        ).status_code,
        "409": send(
            "409", "POST", "/stock/BZ-S/reserve", json={"quantity": 5}, headers=bearer
        ).status_code,
        "410/404 release": send(
            "404",
            "DELETE",
            "/stock/reservations/00000000-0000-0000-0000-000000000000",
            headers=bearer,
        ).status_code,
        "metrics": send(
            "ok", "GET", "/metrics", headers={"Authorization": f"Bearer {SECRETS['METRICS_TOKEN']}"}
        ).status_code,
        "metrics wrong": send("401", "GET", "/metrics", headers=bearer).status_code,
        "openapi": send("ok", "GET", "/openapi.json").status_code,
        "docs": send("redirect", "GET", "/docs").status_code,
        "swagger": send("ok", "GET", "/docs/swagger/").status_code,
        "redoc": send("ok", "GET", "/docs/redoc/").status_code,
        "scalar": send("ok", "GET", "/docs/scalar/").status_code,
        "docs openapi": send("ok", "GET", "/docs/openapi.json").status_code,
        "snippet": send("ok", "GET", "/static/bazico-reserve.js").status_code,
        "install": send("redirect", "GET", f"/auth/install?shop={SHOP}").status_code,
        "shopify callback forged": send(
            "401", "GET", f"/auth/callback?shop={SHOP}&code=abc&state=x&hmac=00&timestamp=1"
        ).status_code,
        "bling connect": send("redirect", "GET", "/bling/connect", headers=bearer).status_code,
        "bling callback bad state": send(
            "400", "GET", "/bling/callback?code=abc&state=forged"
        ).status_code,
        "bling callback refused code": send(
            "502",
            "GET",
            f"/bling/callback?code=not-issued&state={state}",
        ).status_code,
    }
    # Shopify webhooks, signed with the current and the previous secret, and forged.
    raw = fixture("carts_update.json")
    for label, secret in (
        ("ok", shopify_secret),
        ("ok previous", SECRETS["SHOPIFY_API_SECRET_PREVIOUS"]),
        ("401", "forged"),
    ):
        statuses[f"shopify webhook {label}"] = send(
            label,
            "POST",
            "/webhooks/shopify",
            data=raw,
            headers=signed_headers(raw, "carts/update", secret=secret, shop=SHOP),
        ).status_code
    # Bling webhooks, signed and forged.
    product = bling.add_product("BZ-S", 3)
    event = bling.stock_event(product)
    for label, signature in (("ok", bling.sign_webhook(event)), ("401", "sha256=" + "0" * 64)):
        statuses[f"bling webhook {label}"] = send(
            label,
            "POST",
            "/webhooks/bling",
            data=event,
            headers={"X-Bling-Signature-256": signature, "Content-Type": "application/json"},
        ).status_code
    # App Proxy, signed and forged.
    params = {
        "shop": [SHOP],
        "path_prefix": ["/apps/bazico"],
        "timestamp": [str(int(clock.now.timestamp()))],
    }
    good = urlencode(
        {
            **{k: v[0] for k, v in params.items()},
            "signature": proxy_signature(shopify_secret, params),
        }
    )
    statuses["proxy ok"] = send("ok", "GET", f"/proxy/stock/BZ-S?{good}").status_code
    statuses["proxy forged"] = send(
        "401", "GET", f"/proxy/stock/BZ-S?shop={SHOP}&signature=00"
    ).status_code

    # A 500 (an error nobody foresaw, its message naming a setting) and a database failure (503).
    def crash(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("unforeseen failure while reading stock")

    with monkeypatch.context() as patch:
        patch.setattr(type(runtime.reservations), "level", crash)
        statuses["500"] = send("500", "GET", "/stock/BZ-S", headers=bearer).status_code
    with runtime.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE skus RENAME TO skus_gone")
    statuses["503"] = send("503", "GET", "/stock/BZ-S", headers=bearer).status_code
    with runtime.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE skus_gone RENAME TO skus")

    # Commands an operator runs: their output is read by people and kept by log drains.
    cli = app.test_cli_runner()
    commands = {}
    for args in (
        ["bling", "status"],
        ["bling", "connect"],
        ["bling", "sync"],
        ["shopify", "register-webhooks"],
        ["outbox", "show"],
    ):
        result = cli.invoke(args=args)
        commands[" ".join(args)] = result
    # The stand-in does not know the stored Bling tokens: the sync was refused, the refresh
    # too, so the tokens did travel (in headers and a form body) and their refusal was logged.
    assert commands["bling sync"].exit_code != 0
    assert commands["shopify register-webhooks"].exit_code != 0  # nothing listens at its Admin URL

    expected = {
        "health": 200,
        "stock put": 200,
        "stock get": 200,
        "reserve": 200,
        "no token": 401,
        "wrong token": 401,
        "metrics token as api token": 401,
        "basic auth": 401,
        "token in query": 401,
        "404 route": 404,
        "404 sku": 404,
        "405": 405,
        "413": 413,
        "400": 400,
        "422": 422,
        "409": 409,
        "metrics": 200,
        "metrics wrong": 401,
        "openapi": 200,
        "docs": 302,
        "swagger": 200,
        "install": 302,
        "bling connect": 302,
        "bling callback bad state": 403,
        "bling callback refused code": 400,  # the stand-in never issued that code
        "shopify callback forged": 401,
        "410/404 release": 404,
        "shopify webhook ok": 200,
        "shopify webhook ok previous": 200,
        "shopify webhook 401": 401,
        "bling webhook ok": 200,
        "bling webhook 401": 401,
        "proxy ok": 200,
        "proxy forged": 401,
        "500": 500,
        "503": 503,
    }
    assert {k: statuses[k] for k in expected} == expected, statuses

    for label, text in answers:
        assert not _leaks(text), (label, _leaks(text))
    for name, result in commands.items():
        assert not _leaks(result.output), (name, _leaks(result.output), result.output)
        assert not _leaks(repr(result.exception)), (name, result.exception)
    out = capsys.readouterr()
    records = json_lines(out.out)
    assert any(r["log.level"] == "error" for r in records)  # the 500 was logged, with its trace
    for stream in (out.out, out.err, caplog.text):
        leaked = _leaks(stream)
        assert not leaked, (leaked, [line for line in stream.splitlines() if _leaks(line)][:5])
