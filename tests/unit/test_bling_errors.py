"""Bling's error JSON → typed exceptions (docs/bling-api.md §2), including the daily limit's end."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bling.errors import (
    BLING_TZ,
    BlingDailyLimitReached,
    BlingError,
    BlingForbidden,
    BlingNotFound,
    BlingRateLimited,
    BlingServerError,
    BlingUnauthorized,
    BlingValidationError,
    InvalidGrant,
    error_from_response,
    next_day_start,
    parse_error_body,
)

# The validation example of docs/bling-api.md §2 (the spec's ErrorResponse), verbatim.
VALIDATION = {
    "error": {
        "type": "VALIDATION_ERROR",
        "message": "Não foi possível salvar a venda",
        "description": "A venda não pode ser salva, pois ocorreram problemas em sua validação.",
        "fields": [
            {
                "code": 49,
                "msg": "Uma ou mais parcelas da venda possuem erros de validação",
                "element": "parcelas",
                "namespace": "VENDAS",
                "collection": [
                    {
                        "index": 1,
                        "code": 12,
                        "msg": "Id da forma de pagamento inválido.",
                        "element": "formaPagamento",
                        "namespace": "VENDAS",
                    }
                ],
            }
        ],
    }
}

# The per-second 429 exactly as Bling's docs print it: a comma is missing before "limit".
DOCUMENTED_429 = (
    '{"error":{"type":"TOO_MANY_REQUESTS","message":"Limite de requisições atingido.",'
    '"description":"O limite de requisições por segundo foi atingido, tente novamente mais tarde."'
    ' "limit":3,"period":"second"}}'
)
DAILY_429 = {
    "error": {
        "type": "TOO_MANY_REQUESTS",
        "message": "Limite de requisições atingido.",
        "description": "O limite de requisições por dia foi atingido, tente novamente amanhã.",
        "limit": 120000,
        "period": "day",
    }
}


def test_validation_error_keeps_fields_and_nested_collection() -> None:
    err = error_from_response(400, json.dumps(VALIDATION).encode())
    assert isinstance(err, BlingValidationError)
    assert (err.status, err.type) == (400, "VALIDATION_ERROR")
    assert err.message == "Não foi possível salvar a venda"
    assert err.description.startswith("A venda não pode ser salva")
    [parcelas] = err.fields
    assert (parcelas.code, parcelas.element) == (49, "parcelas")
    [inner] = parcelas.collection
    assert (inner.index, inner.code, inner.element) == (1, 12, "formaPagamento")
    text = str(err)
    assert "Não foi possível salvar a venda" in text and "formaPagamento[1]" in text


def test_the_documented_429_is_read_although_it_is_not_valid_json() -> None:
    with pytest.raises(ValueError):
        json.loads(DOCUMENTED_429)
    err = error_from_response(429, DOCUMENTED_429)
    assert isinstance(err, BlingRateLimited)
    assert err.type == "TOO_MANY_REQUESTS"
    assert err.retry_after == 1.0
    assert "por segundo" in err.description


def test_daily_429_is_told_apart_and_ends_at_midnight_in_sao_paulo() -> None:
    # 23:30 in São Paulo (02:30 UTC the next day): the budget returns half an hour later.
    now = datetime(2026, 3, 10, 2, 30, tzinfo=UTC)
    err = error_from_response(429, json.dumps(DAILY_429), now=now)
    assert isinstance(err, BlingDailyLimitReached)
    assert not isinstance(err, BlingRateLimited), "a daily 429 must never be retried"
    assert err.until == datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
    assert err.until.tzinfo is BLING_TZ


@pytest.mark.parametrize(
    ("error", "daily"),
    [
        ({"period": "second", "limit": 3}, False),
        ({"period": "day"}, True),
        ({"limit": 120000}, True),  # no period: a limit in the thousands is the daily one
        ({"description": "O limite de requisições por dia foi atingido, tente amanhã."}, True),
        ({}, False),  # unknown 429: retried like the per-second one, boundedly
    ],
)
def test_which_429_is_which(error: dict[str, object], daily: bool) -> None:
    body = json.dumps({"error": {"type": "TOO_MANY_REQUESTS", "message": "x", **error}})
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert isinstance(error_from_response(429, body, now=now), BlingDailyLimitReached) is daily


def test_next_day_start_at_exact_midnight_is_the_following_one() -> None:
    midnight = datetime(2026, 5, 1, 0, 0, tzinfo=BLING_TZ)
    assert next_day_start(midnight) == datetime(2026, 5, 2, 0, 0, tzinfo=BLING_TZ)
    with pytest.raises(ValueError):
        next_day_start(datetime(2026, 5, 1))  # naive: refuse to guess the zone


def test_retry_after_header_is_honoured_when_present() -> None:
    err = error_from_response(429, DOCUMENTED_429, retry_after_header="2.5")
    assert isinstance(err, BlingRateLimited) and err.retry_after == 2.5


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (401, {"error": {"type": "invalid_token", "message": "invalid_token"}}, BlingUnauthorized),
        (403, {"error": {"type": "insufficient_scope", "message": "scope"}}, BlingForbidden),
        (404, {"error": {"type": "RESOURCE_NOT_FOUND", "message": "não achei"}}, BlingNotFound),
        (500, {"error": {"type": "SERVER_ERROR", "message": "erro"}}, BlingServerError),
        (503, None, BlingServerError),
        (400, {"error": {"type": "invalid_grant", "message": "invalid_grant"}}, InvalidGrant),
        # The RFC 6749 shape some OAuth servers use is read too.
        (400, {"error": "invalid_grant", "error_description": "expired"}, InvalidGrant),
        (400, {"error": {"type": "MISSING_REQUIRED_FIELD_ERROR"}}, BlingValidationError),
    ],
)
def test_status_and_type_choose_the_class(status: int, body: object, cls: type) -> None:
    raw = None if body is None else json.dumps(body)
    err = error_from_response(status, raw)
    assert type(err) is cls
    assert isinstance(err, BlingError) and err.status == status


def test_bodies_that_say_nothing_still_give_a_message() -> None:
    assert parse_error_body(b"<html>Bad gateway</html>") == {}
    assert parse_error_body(b"[]") == {}
    err = error_from_response(502, b"<html>Bad gateway</html>")
    assert str(err) == "502: Bling answered HTTP 502"
