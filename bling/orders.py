"""Contacts and sales orders (docs/bling-api.md §4; spec ``/contatos``, ``/pedidos/vendas``).

Long because a sales order needs its contact first: finding or creating contacts, and finding,
creating, posting, reversing and moving sales orders, are one conversation with Bling.

Bling has no idempotency key and no documented uniqueness on ``numeroLoja``, so "exactly once"
is built from search-before-create: ``ensure_sales_order`` looks the order up by its store number
(``numerosLojas[]``, plus ``idLoja``) and creates it only when absent. A create whose answer was
lost raises ``BlingOutcomeUnknown``; the next ``ensure_sales_order`` finds it instead of making a
second one. The caller records each step's result (the Bling id, then the stock posting) before
the next step.

Another integration on the account (Bling's own Shopify channel, for one) may import the same
order under the same ``numeroLoja``. Adopting that order would post its stock twice, so
``find_own_sales_order`` takes a ``marker``, text the integration writes into every order's
``observacoesInternas`` at creation: only an order carrying it is returned, and orders with the
number that lack it raise ``NotOurSalesOrder``.

A sales order not posted yet is corrected by rewriting it whole (``update_sales_order``,
``PUT``: the create's body with Bling's ``numero`` and contact kept).

Stock posting (``lancar-estoque``) has the same problem and a worse answer: the spec's sales order
carries **no field saying whether its stock was posted**, so the caller must record that it asked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bling.client import BlingClient, data_list, data_object
from bling.errors import FieldError, field_errors

log = logging.getLogger(__name__)

# GET /contatos/consumidor-final: Bling's built-in "Consumidor Final" contact, created with every
# account and not editable (spec). An order needs a contato.id; when a sale carries no CPF/CNPJ
# and no e-mail, this contact is the documented fallback for anonymous sales.
CONSUMIDOR_FINAL = "/contatos/consumidor-final"

# criterio of GET /contatos: 1 all, 2 deleted, 3 last added (the default, hence passed), 4 idle.
_CONTACTS_ALL = 1
_EMAIL_CANDIDATES = 5  # contacts read one by one to confirm an e-mail match (the list lacks it)


# --- contacts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    id: int
    nome: str
    numero_documento: str | None = None
    situacao: str | None = None  # A active, E deleted, I inactive, S idle
    email: str | None = None


def only_digits(document: str) -> str:
    """A CPF/CNPJ as Bling filters on it: digits only, punctuation dropped."""
    return re.sub(r"\D", "", document)


def person_type(document: str | None) -> str:
    """``tipo`` of a contact: F (CPF, 11 digits), J (CNPJ, 14 digits), else E (foreign)."""
    digits = only_digits(document or "")
    return {11: "F", 14: "J"}.get(len(digits), "E" if digits else "F")


def _contact(row: Mapping[str, Any]) -> Contact:
    return Contact(
        id=int(row["id"]),
        nome=str(row.get("nome") or ""),
        numero_documento=row.get("numeroDocumento") or None,
        situacao=row.get("situacao"),
        email=row.get("email") or None,
    )


def find_contact(client: BlingClient, document_or_email: str) -> Contact | None:
    """The live contact with this CPF/CNPJ (any punctuation) or e-mail, or None.

    A document is searched with ``numeroDocumento`` (exact, digits only); an e-mail with
    ``pesquisa`` (a free-text search over name, document, e-mail and code), whose hits are read
    one by one because the list does not include the e-mail to confirm the match.
    """
    value = document_or_email.strip()
    if "@" in value:
        return _find_by_email(client, value)
    digits = only_digits(value)
    if len(digits) not in (11, 14):
        raise ValueError("expected a CPF (11 digits), a CNPJ (14 digits) or an e-mail")
    params = {"numeroDocumento": digits, "criterio": _CONTACTS_ALL}
    for row in data_list(client.get("/contatos", params=params)):
        same = only_digits(str(row.get("numeroDocumento") or "")) == digits
        if same and row.get("situacao") != "E":  # E: deleted
            return _contact(row)
    return None


def _find_by_email(client: BlingClient, email: str) -> Contact | None:
    params = {"pesquisa": email, "criterio": _CONTACTS_ALL}
    rows = data_list(client.get("/contatos", params=params))
    rows = [row for row in rows if row.get("situacao") != "E"]
    for row in rows[:_EMAIL_CANDIDATES]:
        full = data_object(client.get(f"/contatos/{int(row['id'])}"))
        if str(full.get("email") or "").strip().lower() == email.lower():
            return _contact(full)
    return None


def create_contact(
    client: BlingClient,
    nome: str,
    *,
    numero_documento: str | None = None,
    email: str | None = None,
    telefone: str | None = None,
    celular: str | None = None,
    endereco: Mapping[str, Any] | None = None,
    tipo: str | None = None,
) -> int:
    """``POST /contatos`` (required: ``nome``, ``tipo``, ``situacao``); returns the new id.

    Not retried when the answer is lost (a POST); search with ``find_contact`` first.
    ``endereco`` is Bling's ``{"geral": {...}, "cobranca": {...}}``.
    """
    body: dict[str, Any] = {
        "nome": nome[:120] or "Cliente",
        "tipo": tipo or person_type(numero_documento),
        "situacao": "A",
    }
    optional = {
        "numeroDocumento": only_digits(numero_documento) if numero_documento else None,
        "email": email,
        "telefone": telefone,
        "celular": celular,
        "endereco": dict(endereco) if endereco else None,
    }
    body.update({k: v for k, v in optional.items() if v})
    return int(data_object(client.post("/contatos", json=body))["id"])


def consumer_final(client: BlingClient) -> Contact:
    """Bling's built-in "Consumidor Final" (see ``CONSUMIDOR_FINAL``)."""
    return _contact(data_object(client.get(CONSUMIDOR_FINAL)))


def find_or_create_contact(
    client: BlingClient,
    nome: str,
    *,
    document: str | None = None,
    email: str | None = None,
    **details: Any,
) -> int:
    """The contact id for an order: by document, then e-mail; created when neither finds one;
    "Consumidor Final" when the sale identifies nobody."""
    if not document and not email:
        return consumer_final(client).id
    for key in (document, email):
        if key:
            found = find_contact(client, key)
            if found is not None:
                return found.id
    return create_contact(client, nome, numero_documento=document, email=email, **details)


# --- sales orders --------------------------------------------------------------------------

_CENT = Decimal("0.01")


def _cents(value: Decimal | int | str) -> Decimal:
    return Decimal(value).quantize(_CENT, rounding=ROUND_HALF_UP)


def _money(value: Decimal | int | str) -> float:
    return float(_cents(value))


@dataclass(frozen=True)
class OrderLine:
    product_id: int  # Bling product id (``produto.id``)
    quantity: Decimal | int
    unit_price: Decimal  # ``valor``: unit value after the line's discount
    description: str  # ``descricao`` (required)
    sku: str | None = None  # ``codigo``
    unit: str = "UN"

    @property
    def amount(self) -> Decimal:
        """What Bling computes for the line: quantity × the unit value as sent (in cents)."""
        return _cents(Decimal(self.quantity) * _cents(self.unit_price))


@dataclass(frozen=True)
class SalesOrderInput:
    """What ``POST /pedidos/vendas`` needs from a store order.

    ``store_number`` becomes ``numeroLoja`` (the Shopify order name), the key searched before
    creating. ``numero`` is left to Bling: it rejects a duplicate one. One installment carries the
    whole total with ``payment_method_id`` (``formaPagamento.id``), due on ``due_date`` or the
    order date.
    """

    store_number: str
    order_date: date
    contact_id: int
    lines: Sequence[OrderLine]
    payment_method_id: int
    store_id: int | None = None  # ``loja.id``: the sales channel in Bling
    shipping: Decimal = Decimal(0)
    discount: Decimal = Decimal(0)  # order-level, in currency (``desconto.unidade = REAL``)
    due_date: date | None = None
    notes: str | None = None  # ``observacoes``
    internal_notes: str | None = None  # ``observacoesInternas``

    @property
    def total(self) -> Decimal:
        """The order total as Bling will compute it from the payload, so the installment that
        carries it matches to the cent (Bling refuses installments that do not add up)."""
        items = sum((line.amount for line in self.lines), Decimal(0))
        return items + _cents(self.shipping) - _cents(self.discount)

    def to_payload(self) -> dict[str, Any]:
        if not self.store_number:
            raise ValueError("store_number (numeroLoja) is required: it is the search key")
        if not self.lines:
            raise ValueError("a sales order needs at least one line")
        if self.total < 0:
            raise ValueError("the discount exceeds the order's value")
        day = self.order_date.isoformat()
        payload: dict[str, Any] = {
            "numeroLoja": self.store_number,
            # The spec requires the three dates depending on the account's installment setting.
            "data": day,
            "dataSaida": day,
            "dataPrevista": day,
            "contato": {"id": self.contact_id},
            "itens": [_item(line) for line in self.lines],
            "parcelas": [
                {
                    "dataVencimento": (self.due_date or self.order_date).isoformat(),
                    "valor": _money(self.total),
                    "formaPagamento": {"id": self.payment_method_id},
                }
            ],
        }
        if self.store_id is not None:
            payload["loja"] = {"id": self.store_id}
        if self.shipping:
            payload["transporte"] = {"frete": _money(self.shipping)}
        if self.discount:
            payload["desconto"] = {"valor": _money(self.discount), "unidade": "REAL"}
        if self.notes:
            payload["observacoes"] = self.notes
        if self.internal_notes:
            payload["observacoesInternas"] = self.internal_notes
        return payload


def _item(line: OrderLine) -> dict[str, Any]:
    item: dict[str, Any] = {
        "descricao": line.description[:120] or line.sku or str(line.product_id),
        "unidade": line.unit,
        "quantidade": float(line.quantity),
        "valor": _money(line.unit_price),
        "produto": {"id": line.product_id},
    }
    if line.sku:
        item["codigo"] = line.sku
    return item


@dataclass(frozen=True)
class SalesOrder:
    id: int
    numero: int | None
    numero_loja: str | None
    store_id: int | None
    situacao_id: int | None
    total: float | None
    #: ``observacoesInternas``: only in ``GET /pedidos/vendas/{id}``, not in the listing.
    internal_notes: str | None = None
    #: ``contato.id``: the contact the order was made for (kept when it is rewritten).
    contact_id: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SalesOrder:
        loja = row.get("loja") or {}
        situacao = row.get("situacao") or {}
        return cls(
            id=int(row["id"]),
            numero=_int_or_none(row.get("numero")),
            numero_loja=row.get("numeroLoja"),
            store_id=_int_or_none(loja.get("id")),
            situacao_id=_int_or_none(situacao.get("id")),
            total=float(row["total"]) if row.get("total") is not None else None,
            internal_notes=row.get("observacoesInternas") or None,
            contact_id=_int_or_none((row.get("contato") or {}).get("id")),
        )


class NotOurSalesOrder(Exception):
    """Sales orders with the store number exist, and none carries our marker: another
    integration made them."""

    def __init__(self, numero_loja: str, ids: Sequence[int]) -> None:
        self.numero_loja = numero_loja
        self.ids = tuple(ids)
        super().__init__(f"numeroLoja {numero_loja!r}: sales orders {list(ids)} lack our marker")


@dataclass(frozen=True)
class CreatedSalesOrder:
    id: int
    alerts: tuple[FieldError, ...] = field(default=())  # ``data.alertas``: saved, with warnings


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "", 0) else None
    except (TypeError, ValueError):
        return None


def sales_orders_by_store_number(
    client: BlingClient, numero_loja: str, store_id: int | None = None
) -> list[SalesOrder]:
    """The orders whose ``numeroLoja`` is exactly this (and in channel ``store_id`` if given),
    oldest first. Filtered by Bling (``numerosLojas[]``, ``idLoja``) and checked again here."""
    params: dict[str, Any] = {"numerosLojas[]": [numero_loja]}
    if store_id is not None:
        params["idLoja"] = store_id
    matches = [
        SalesOrder.from_row(row)
        for row in data_list(client.get("/pedidos/vendas", params=params))
        if row.get("numeroLoja") == numero_loja
    ]
    if store_id is not None:
        matches = [m for m in matches if m.store_id in (None, store_id)]
    return sorted(matches, key=lambda m: m.id)


def find_sales_order_by_store_number(
    client: BlingClient, numero_loja: str, store_id: int | None = None
) -> SalesOrder | None:
    """The order whose ``numeroLoja`` is exactly this (and in channel ``store_id`` if given).
    Should two exist (made by hand, or by another integration), the oldest is returned and a
    warning logged."""
    matches = sales_orders_by_store_number(client, numero_loja, store_id)
    if len(matches) > 1:
        ids = [m.id for m in matches]
        log.warning("bling.duplicate_sales_orders numeroLoja=%s ids=%s", numero_loja, ids)
    return matches[0] if matches else None


def find_own_sales_order(
    client: BlingClient,
    numero_loja: str,
    marker: str,
    *,
    kin: re.Pattern[str] | None = None,
) -> SalesOrder | None:
    """The oldest order with this ``numeroLoja``, in any channel, whose internal notes carry
    ``marker`` (each candidate is read: the listing lacks the notes); None when there is none.
    ``NotOurSalesOrder`` when orders with the number exist and none carries it. Orders whose
    notes match ``kin`` (the integration's marker for another of its stores: two stores may both
    have a "#1001") are passed over, neither adopted nor counted against us."""
    candidates = [
        get_sales_order(client, c.id) for c in sales_orders_by_store_number(client, numero_loja)
    ]
    own = [c for c in candidates if marker in (c.internal_notes or "")]
    if len(own) > 1:
        ids = [o.id for o in own]
        log.warning("bling.duplicate_sales_orders numeroLoja=%s ids=%s", numero_loja, ids)
    if own:
        return own[0]
    others = [c for c in candidates if not (kin and kin.search(c.internal_notes or ""))]
    if others:
        raise NotOurSalesOrder(numero_loja, [c.id for c in others])
    return None


def get_sales_order(client: BlingClient, order_id: int) -> SalesOrder:
    """``GET /pedidos/vendas/{id}``; ``BlingNotFound`` when it does not exist."""
    return SalesOrder.from_row(data_object(client.get(f"/pedidos/vendas/{int(order_id)}")))


def create_sales_order(client: BlingClient, order: SalesOrderInput) -> CreatedSalesOrder:
    """``POST /pedidos/vendas`` (201 ``{"data": {"id", "alertas"}}``). Never retried after the
    request left: ``BlingOutcomeUnknown``/``BlingServerError`` mean "search before retrying"."""
    data = data_object(client.post("/pedidos/vendas", json=order.to_payload()))
    created = CreatedSalesOrder(int(data["id"]), field_errors(data.get("alertas")))
    if created.alerts:
        alerts = "; ".join(a.describe() for a in created.alerts)
        log.warning("bling.sales_order_alerts id=%s alerts=%s", created.id, alerts)
    return created


def update_sales_order(
    client: BlingClient, order_id: int, order: SalesOrderInput, *, numero: int | None = None
) -> tuple[FieldError, ...]:
    """``PUT /pedidos/vendas/{id}`` (200 ``{"data": {"id", "alertas"}}``): the order is
    **replaced** by this body (spec: ``VendasDadosBaseDTO_PUT`` + ``VendasDadosDTO``, the
    create's fields), so it carries the whole order, its items and installments recomputed;
    ``numero`` keeps Bling's number. Sending the same body twice leaves the same order, so a
    lost answer is simply sent again. 400 (``BlingValidationError``) when Bling refuses it,
    404 when the order is gone. Returns Bling's alerts (saved, with warnings).

    The spec says nothing of what a PUT does to an order whose stock was posted (it has no field
    saying whether it was), so callers rewrite only an order not posted yet."""
    payload = order.to_payload()
    if numero is not None:
        payload["numero"] = int(numero)
    data = data_object(client.put(f"/pedidos/vendas/{int(order_id)}", json=payload))
    alerts = field_errors(data.get("alertas"))
    if alerts:
        described = "; ".join(a.describe() for a in alerts)
        log.warning("bling.sales_order_alerts id=%s alerts=%s", order_id, described)
    return alerts


def ensure_sales_order(client: BlingClient, order: SalesOrderInput) -> tuple[int, bool]:
    """(Bling order id, created now?): search by store number first, create only if absent.
    An integration that must not adopt another's order searches with ``find_own_sales_order``
    and then calls ``create_sales_order`` itself."""
    existing = find_sales_order_by_store_number(client, order.store_number, order.store_id)
    if existing is not None:
        return existing.id, False
    return create_sales_order(client, order).id, True


def post_stock(client: BlingClient, order_id: int, deposit_id: int | None = None) -> None:
    """``POST /pedidos/vendas/{id}/lancar-estoque/{idDeposito}`` (204), or ``…/lancar-estoque``
    for Bling's default deposit. Bling refuses a second posting of the same order with a 400;
    the exact message is not documented, so record the posting before calling this again."""
    path = f"/pedidos/vendas/{int(order_id)}/lancar-estoque"
    if deposit_id is not None:
        path += f"/{int(deposit_id)}"
    client.post(path)


def reverse_stock(client: BlingClient, order_id: int) -> None:
    """``POST /pedidos/vendas/{id}/estornar-estoque`` (204). The spec takes no deposit here:
    Bling reverses the posting wherever it was made."""
    client.post(f"/pedidos/vendas/{int(order_id)}/estornar-estoque")


def set_sales_order_status(client: BlingClient, order_id: int, situacao_id: int) -> None:
    """``PATCH /pedidos/vendas/{id}/situacoes/{idSituacao}`` (204). Situation ids differ per
    account (``GET /situacoes/modulos``), and a transition may post or reverse stock by itself.
    Setting the same situation twice changes nothing, so this one is retried like a GET."""
    client.patch(f"/pedidos/vendas/{int(order_id)}/situacoes/{int(situacao_id)}", idempotent=True)
