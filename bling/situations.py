"""Situations (spec ``/situacoes``): the states a Bling record moves through, per module.

A sales order's situation ("Em aberto", "Atendido", "Cancelado", …) is what Bling's users work
from: the warehouse picks, invoices and ships the open ones. The ids differ per account, so they
are discovered, not written down: ``GET /situacoes/modulos`` lists the modules (sales orders are
the module named "Vendas", described "Pedidos de Venda"), ``GET /situacoes/modulos/{idModulo}``
that module's situations. An account may add its own situations; each names the standard one it
derives from (``idHerdado``), and the standard ones cannot be removed.

Moving an order is ``PATCH /pedidos/vendas/{id}/situacoes/{idSituacao}`` (bling/orders.py,
``set_sales_order_status``). A transition may carry actions set up in the account (for example
"estornar estoque"), so a situation change can move stock by itself.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from bling.client import BlingClient, data_list

SALES_MODULE = "Vendas"
OPEN = "Em aberto"
FULFILLED = "Atendido"
CANCELLED = "Cancelado"


class SituationNotFound(LookupError):
    """The account has no module or situation by that name."""


@dataclass(frozen=True)
class Module:
    id: int
    nome: str
    descricao: str = ""


@dataclass(frozen=True)
class Situation:
    id: int
    nome: str
    #: ``idHerdado``: the standard situation this one derives from (None for a standard one).
    inherits_from: int | None = None


def _key(name: str) -> str:
    """Names compared the way a person reads them: case, accents and spacing aside."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


def modules(client: BlingClient) -> list[Module]:
    """``GET /situacoes/modulos``: the account's modules that have situations."""
    return [
        Module(int(row["id"]), str(row.get("nome") or ""), str(row.get("descricao") or ""))
        for row in data_list(client.get("/situacoes/modulos"))
    ]


def situations(client: BlingClient, module_id: int) -> list[Situation]:
    """``GET /situacoes/modulos/{idModuloSistema}``: one module's situations."""
    return [
        Situation(
            int(row["id"]),
            str(row.get("nome") or ""),
            int(row["idHerdado"]) if row.get("idHerdado") else None,
        )
        for row in data_list(client.get(f"/situacoes/modulos/{int(module_id)}"))
    ]


def sales_module(found: Iterable[Module]) -> Module:
    """The sales orders' module: named "Vendas" (if several are, the "Pedidos de Venda" one)."""
    named = [m for m in found if _key(m.nome) == _key(SALES_MODULE)]
    if not named:
        raise SituationNotFound(f"no {SALES_MODULE!r} module in GET /situacoes/modulos")
    orders = [m for m in named if "pedido" in _key(m.descricao)]
    return min(orders or named, key=lambda m: m.id)


def situation_named(found: Iterable[Situation], name: str) -> Situation:
    """The situation called ``name``: the standard one when the account also has its own of that
    name (one that derives from nothing), else the oldest."""
    named = [s for s in found if _key(s.nome) == _key(name)]
    if not named:
        raise SituationNotFound(f"no {name!r} situation")
    return min(named, key=lambda s: (s.inherits_from is not None, s.id))


def sales_order_situation(client: BlingClient, name: str) -> Situation:
    """The sales orders' situation called ``name`` in this account (two requests)."""
    module = sales_module(modules(client))
    try:
        return situation_named(situations(client, module.id), name)
    except SituationNotFound:
        raise SituationNotFound(f"no {name!r} situation in the {module.nome!r} module") from None
