"""Bling webhook signature (``X-Bling-Signature-256``) and envelope parsing (research §5)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from bling.webhooks import InvalidEvent, parse_event, sign, verify_signature

SECRET = "client-secret-of-the-app"
# The stock.created example of Bling's /webhooks page, as bytes that arrive on the wire.
RAW = (
    b'{"eventId":"01945027-150e-72b4-e7cf-4943a042cd9c","date":"2025-01-10T12:18:46Z",'
    b'"version":"v1","event":"stock.created","companyId":"d4475854366a36c86a37e792f9634a51",'
    b'"data":{"produto":{"id":12345678},"deposito":{"id":87654321,"saldoFisico":1250.75,'
    b'"saldoVirtual":1250.75},"operacao":"E","quantidade":25,"saldoFisicoTotal":1500.75,'
    b'"saldoVirtualTotal":1500.75}}'
)


def bling_header(raw: bytes, secret: str) -> str:
    """What Bling sends, computed here without the code under test."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def test_signature_of_the_raw_body_with_the_client_secret() -> None:
    header = bling_header(RAW, SECRET)
    assert sign(RAW, SECRET) == header
    assert verify_signature(RAW, header, SECRET)
    assert verify_signature(RAW, "  " + header.upper().replace("SHA256=", "sha256=") + " ", SECRET)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        bling_header(RAW, "another-secret"),
        bling_header(RAW, SECRET).removeprefix("sha256="),  # Bling always sends the prefix
        bling_header(RAW, SECRET).replace("sha256=", "sha1="),
        bling_header(RAW, SECRET).replace("sha256=", "sha512="),  # same length, other scheme
        "sha256=" + "zz" * 32,
        "sha256=ünïcode",
    ],
)
def test_wrong_or_missing_signatures_are_refused(header: str | None) -> None:
    assert verify_signature(RAW, header, SECRET) is False


def test_the_body_must_be_the_bytes_as_received() -> None:
    header = bling_header(RAW, SECRET)
    assert not verify_signature(RAW + b" ", header, SECRET)
    assert not verify_signature(json.dumps(json.loads(RAW)).encode(), header, SECRET)
    assert not verify_signature(RAW, header, ""), "an unset secret must not accept anything"


def test_stock_event_envelope_and_balances() -> None:
    event = parse_event(RAW)
    assert event.event_id == "01945027-150e-72b4-e7cf-4943a042cd9c"
    assert (event.event, event.resource, event.action) == ("stock.created", "stock", "created")
    assert event.date == datetime(2025, 1, 10, 12, 18, 46, tzinfo=UTC)
    assert (event.version, event.company_id) == ("v1", "d4475854366a36c86a37e792f9634a51")
    change = event.stock_change()
    assert change is not None
    assert change.product_id == 12345678
    assert change.virtual_in(87654321) == 1250.75
    assert change.virtual_in(None) == 1500.75
    assert change.virtual_in(1) is None, "a deposit the event does not mention is unknown"
    assert (change.operation, change.quantity) == ("E", 25.0)


def test_virtual_stock_event_lists_deposits_and_complex_links() -> None:
    event = parse_event(
        {
            "eventId": "e-2",
            "date": "2025-01-10T12:19:00Z",
            "version": "v1",
            "event": "virtual_stock.updated",
            "data": {
                "produto": {"id": 12345},
                "saldoFisicoTotal": 150.75,
                "saldoVirtualTotal": 148.50,
                "vinculoComplexo": True,
                "depositos": [
                    {"id": 1, "saldoFisico": 75.25, "saldoVirtual": 73.00},
                    {"id": 2, "saldoFisico": 75.50, "saldoVirtual": 75.50},
                ],
            },
        }
    )
    change = event.stock_change()
    assert change is not None and change.complex_link
    assert [d.deposit_id for d in change.deposits] == [1, 2]
    assert change.virtual_in(1) == 73.0 and change.operation is None


def test_other_events_have_no_stock_change() -> None:
    event = parse_event(
        {"eventId": "e-3", "event": "order.created", "date": "2025-01-10T12:00:00Z", "data": {}}
    )
    assert event.stock_change() is None


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"event": "stock.updated"}',
        b'{"eventId": "x", "event": "stock"}',
        b'{"eventId": "x", "event": "stock.updated", "date": "yesterday"}',
    ],
)
def test_malformed_envelopes_raise_invalid_event(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        parse_event(raw)


def test_stock_event_without_product_is_invalid() -> None:
    event = parse_event({"eventId": "x", "event": "stock.updated", "data": {"deposito": {}}})
    with pytest.raises(InvalidEvent):
        event.stock_change()
