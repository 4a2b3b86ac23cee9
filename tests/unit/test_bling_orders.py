"""The sales-order payload and contact helpers, without a server."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from bling.orders import OrderLine, SalesOrderInput, only_digits, person_type


def order(**overrides: object) -> SalesOrderInput:
    fields: dict[str, object] = {
        "store_number": "#1001",
        "order_date": date(2026, 11, 27),
        "contact_id": 55,
        "lines": [
            OrderLine(101, 2, Decimal("49.90"), "Camiseta Bone P", sku="BAZI-BONE-P"),
            OrderLine(102, 1, Decimal("19.95"), "Meia", sku="BAZI-MEIA"),
        ],
        "payment_method_id": 7,
        "store_id": 2040,
        "shipping": Decimal("15.00"),
        "discount": Decimal("10.00"),
    }
    fields.update(overrides)
    return SalesOrderInput(**fields)  # type: ignore[arg-type]


def test_payload_has_the_spec_required_fields() -> None:
    payload = order().to_payload()
    assert payload["numeroLoja"] == "#1001"
    assert payload["data"] == payload["dataSaida"] == payload["dataPrevista"] == "2026-11-27"
    assert payload["contato"] == {"id": 55}
    assert payload["loja"] == {"id": 2040}
    assert "numero" not in payload, "Bling numbers the order; a duplicate numero is refused"
    first = payload["itens"][0]
    assert first == {
        "descricao": "Camiseta Bone P",
        "unidade": "UN",
        "quantidade": 2.0,
        "valor": 49.9,
        "produto": {"id": 101},
        "codigo": "BAZI-BONE-P",
    }


def test_one_installment_carries_the_whole_total() -> None:
    payload = order().to_payload()
    # 2 × 49.90 + 19.95 + 15.00 shipping − 10.00 discount
    assert order().total == Decimal("124.75")
    assert payload["parcelas"] == [
        {"dataVencimento": "2026-11-27", "valor": 124.75, "formaPagamento": {"id": 7}}
    ]
    assert payload["transporte"] == {"frete": 15.0}
    assert payload["desconto"] == {"valor": 10.0, "unidade": "REAL"}


def test_optional_parts_are_left_out() -> None:
    payload = order(store_id=None, shipping=Decimal(0), discount=Decimal(0)).to_payload()
    assert not {"loja", "transporte", "desconto", "observacoes"} & payload.keys()


def test_money_is_rounded_half_up_to_cents() -> None:
    line = OrderLine(1, 3, Decimal("0.335"), "x")
    payload = order(lines=[line], shipping=Decimal(0), discount=Decimal(0)).to_payload()
    assert payload["itens"][0]["valor"] == 0.34
    # The installment must equal what Bling adds up from the lines as sent: 3 × 0.34, not
    # round(3 × 0.335) = 1.01.
    assert payload["parcelas"][0]["valor"] == 1.02


@pytest.mark.parametrize(
    "overrides",
    [{"lines": []}, {"store_number": ""}, {"discount": Decimal("1000")}],
)
def test_orders_that_cannot_be_right_are_refused_before_sending(overrides: dict) -> None:
    with pytest.raises(ValueError):
        order(**overrides).to_payload()


def test_documents() -> None:
    assert only_digits("123.456.789-09") == "12345678909"
    assert person_type("123.456.789-09") == "F"
    assert person_type("12.345.678/0001-95") == "J"
    assert person_type(None) == "F"
    assert person_type("AB-123") == "E"
