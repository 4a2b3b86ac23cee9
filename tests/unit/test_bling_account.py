"""The account's company id and default deposit, parsed from Bling's answers, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from bling.account import Deposit, company_id, default_deposit, deposits
from bling.errors import BlingError


class Answers:
    """A client that answers ``get`` from a list of bodies, and records what was asked."""

    def __init__(self, *bodies: Any) -> None:
        self.bodies = list(bodies)
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        self.asked.append((path, dict(params or {})))
        return self.bodies.pop(0)


def row(deposit_id: int, *, padrao: bool = False, situacao: int = 1) -> dict[str, Any]:
    return {
        "id": deposit_id,
        "descricao": f"Depósito {deposit_id}",
        "situacao": situacao,
        "padrao": padrao,
        "desconsiderarSaldo": False,
    }


def test_the_default_deposit_is_the_one_active_deposit_marked_padrao() -> None:
    client = Answers({"data": [row(1), row(2, padrao=True)]}, {"data": []})
    listed = deposits(client)  # type: ignore[arg-type]
    assert [d.id for d in listed] == [1, 2]
    assert client.asked == [
        ("/depositos", {"limite": 100, "situacao": 1, "pagina": 1}),
        ("/depositos", {"limite": 100, "situacao": 1, "pagina": 2}),
    ]
    assert default_deposit(listed) == Deposit(2, "Depósito 2", active=True, default=True)


@pytest.mark.parametrize(
    "candidates",
    [
        [],
        [Deposit(1, "a", active=True, default=False)],
        [Deposit(1, "a", active=True, default=True), Deposit(2, "b", active=True, default=True)],
        [Deposit(1, "a", active=False, default=True)],
    ],
    ids=["none listed", "none marked", "two marked", "marked but inactive"],
)
def test_no_default_deposit_when_bling_marks_none_or_several(candidates: list[Deposit]) -> None:
    assert default_deposit(candidates) is None


def test_a_deposit_listing_that_repeats_its_page_is_an_error() -> None:
    page = {"data": [row(1)]}
    with pytest.raises(BlingError, match="twice"):
        deposits(Answers(page, page))  # type: ignore[arg-type]
    with pytest.raises(BlingError, match="numeric id"):
        deposits(Answers({"data": [{"descricao": "sem id"}]}))  # type: ignore[arg-type]


def test_the_company_id_is_the_id_of_the_basic_company_data() -> None:
    body = {"data": {"id": "436c56a5679921f5f13a3d6433561773", "nome": "Empresa Teste LTDA"}}
    client = Answers(body)
    assert company_id(client) == "436c56a5679921f5f13a3d6433561773"  # type: ignore[arg-type]
    assert client.asked == [("/empresas/me/dados-basicos", {})]
    for missing in ({"data": {}}, {"data": {"id": ""}}, {"data": {"id": True}}):
        with pytest.raises(BlingError):
            company_id(Answers(missing))  # type: ignore[arg-type]
