"""Picking a sales order situation out of an account's list (bling/situations.py), no server."""

from __future__ import annotations

import pytest

from bling.situations import (
    CANCELLED,
    Module,
    Situation,
    SituationNotFound,
    sales_module,
    situation_named,
)


def test_the_sales_module_is_vendas_and_the_orders_one_if_several() -> None:
    found = [
        Module(1, "Compras", "Pedidos de Compra"),
        Module(2, "vendas", "PDV"),
        Module(3, "Vendas", "Pedidos de Venda"),
    ]
    assert sales_module(found).id == 3
    assert sales_module(found[:2]).id == 2
    with pytest.raises(SituationNotFound, match="Vendas"):
        sales_module(found[:1])


def test_a_situation_is_found_by_name_whatever_its_accents_case_and_spacing() -> None:
    found = [Situation(6, "Em aberto"), Situation(15, "Em  andamento"), Situation(12, "CANCELADO")]
    assert situation_named(found, "em andamento").id == 15
    assert situation_named(found, CANCELLED).id == 12
    assert situation_named([Situation(21, "Em digitação")], "Em digitacao").id == 21


def test_the_standard_situation_wins_over_an_accounts_own_of_the_same_name() -> None:
    found = [Situation(301, "Cancelado", inherits_from=12), Situation(12, "Cancelado")]
    assert situation_named(found, CANCELLED).id == 12
    assert situation_named(found[:1], CANCELLED).id == 301, "derived, when it is all there is"
    with pytest.raises(SituationNotFound):
        situation_named([Situation(6, "Em aberto")], CANCELLED)
