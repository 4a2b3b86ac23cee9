"""Products and stock balances (docs/bling-api.md §3, spec paths ``/produtos``, ``/estoques``).

- ``iter_products``: every product as ``ProductRef(id, codigo)``; ``codigo`` is the SKU.
- ``find_products_by_sku``: SKU → product id for a few SKUs (``codigos[]``, matched exactly).

``GET /produtos`` filters on the stock balance even when asked nothing: the spec gives
``filtroSaldoEstoque`` (0 zero, 1 positive, 2 negative) a **default of 1**, so a plain listing
leaves out every product that is sold out or below zero. There is no value for "any balance";
both functions above ask for each of the three and merge the answers (``EVERY_BALANCE``).
- ``stock_balances``: product id → balance, from ``/estoques/saldos[/{idDeposito}]``.

Balances are Bling's numbers (floats: Bling allows fractional stock); rounding them to sellable
units is the caller's decision.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, NamedTuple

from bling.client import BlingClient, data_list
from bling.errors import BlingError

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 100  # the spec's default and, per Bling's docs, what a page holds at most
BALANCE_BATCH = 50  # ids per balance request; see stock_balances

# ``criterio`` of GET /produtos: 1 last added (Bling's default), 2 active, 3 inactive,
# 4 deleted, 5 all. Active is what can be sold; deleted products can share a SKU with a live one.
CRITERIO_ACTIVE = 2

# ``filtroSaldoEstoque`` of GET /produtos (and /estoques/saldos): 0 zero, 1 positive (Bling's
# default), 2 negative.
BALANCE_ZERO, BALANCE_POSITIVE, BALANCE_NEGATIVE = 0, 1, 2
#: Every balance, positive first. A sale moves a product from positive to zero or negative while a
#: walk is under way; walking those classes after the positive one finds it there instead of
#: missing it. (A restock moves it the other way and may be missed until the next walk: a product
#: out of stock stays at its last, lower, figure, the side that sells nothing twice.)
EVERY_BALANCE = (BALANCE_POSITIVE, BALANCE_ZERO, BALANCE_NEGATIVE)


class ProductRef(NamedTuple):
    id: int
    codigo: str  # the SKU


def iter_products(
    client: BlingClient,
    *,
    page_size: int = MAX_PAGE_SIZE,
    criterio: int | None = CRITERIO_ACTIVE,
    balances: Iterable[int] = EVERY_BALANCE,
    extra_params: Mapping[str, Any] | None = None,
) -> Iterator[ProductRef]:
    """Walk ``GET /produtos`` page by page (``pagina``, ``limite``) until a page is empty, once
    per ``filtroSaldoEstoque`` in ``balances``: by default every product whatever its balance.

    Bling gives no total. Stopping at a short page would save one call per sync, but if Bling
    ever served fewer rows than ``limite`` the sync would silently miss products; an empty page
    is the only unambiguous end. A product listed by two walks (its balance changed in between)
    is yielded once. Products without a ``codigo`` (variations created without a SKU) cannot be
    matched to a store SKU and are skipped.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
    params: dict[str, Any] = {"limite": page_size, **(extra_params or {})}
    if criterio is not None:
        params["criterio"] = criterio
    seen: set[int] = set()
    for balance in balances:
        for row in _walk(client, {**params, "filtroSaldoEstoque": balance}):
            product_id = int(row["id"])
            if product_id in seen:
                continue
            seen.add(product_id)
            codigo = str(row.get("codigo") or "").strip()
            if codigo:
                yield ProductRef(product_id, codigo)
            else:
                log.debug("bling.product_without_sku id=%s", row["id"])


def _walk(client: BlingClient, params: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The rows of every page of one ``GET /produtos`` listing."""
    page = 1
    previous: list[int] = []
    while True:
        rows = data_list(client.get("/produtos", params={**params, "pagina": page}))
        if not rows:
            return
        ids = [int(row["id"]) for row in rows]
        if ids == previous:  # a server ignoring `pagina` would otherwise loop forever
            raise BlingError(f"GET /produtos returned page {page} twice; stopping")
        previous = ids
        yield from rows
        page += 1


def find_products_by_sku(client: BlingClient, skus: Iterable[str]) -> dict[str, int]:
    """SKU → product id, for the SKUs Bling knows, via ``GET /produtos?codigos[]=…``.

    The match is checked here too: ``codigos[]`` is documented as a SKU filter, but older API
    versions had a looser ``codigo`` search, and a wrong id would move someone else's stock.
    One request per balance class and 100 SKUs (a sold-out SKU is a SKU too).
    """
    wanted = sorted({s for s in skus if s})
    found: dict[str, int] = {}
    for chunk in _chunks(wanted, MAX_PAGE_SIZE):
        for balance in EVERY_BALANCE:
            params = {
                "codigos[]": chunk,
                "limite": MAX_PAGE_SIZE,
                "criterio": CRITERIO_ACTIVE,
                "filtroSaldoEstoque": balance,
            }
            for row in data_list(client.get("/produtos", params=params)):
                codigo = str(row.get("codigo") or "")
                if codigo in chunk:
                    found.setdefault(codigo, int(row["id"]))
    return found


BalanceKind = Literal["virtual", "physical"]


def stock_balances(
    client: BlingClient,
    product_ids: Iterable[int],
    deposit_id: int | None = None,
    *,
    kind: BalanceKind = "virtual",
    batch_size: int = BALANCE_BATCH,
) -> dict[int, float]:
    """Product id → balance, for **every** id asked for.

    ``kind="virtual"`` is ``saldoVirtual`` (physical minus what open sales orders reserve: what
    can still be sold, the ledger's ``on_hand``); ``"physical"`` is ``saldoFisico``.

    With ``deposit_id`` it reads ``GET /estoques/saldos/{idDeposito}`` (one deposit; the spec's
    answer has per-product totals for that deposit), else ``GET /estoques/saldos`` (all deposits
    summed). Ids are sent ``batch_size`` at a time as repeated ``idsProdutos[]``; the spec states
    no maximum, and 50 ids keep the URL near 1.5 KB.

    The spec gives ``filtroSaldoEstoque`` a default of 1 (only positive balances), so a product
    with zero or negative stock may be absent from the answer: absent ids map to 0, the reading
    that never sells what might not exist.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    ids = sorted({int(i) for i in product_ids})
    path = "/estoques/saldos" if deposit_id is None else f"/estoques/saldos/{int(deposit_id)}"
    balances: dict[int, float] = dict.fromkeys(ids, 0.0)
    for chunk in _chunks(ids, batch_size):
        for row in data_list(client.get(path, params={"idsProdutos[]": chunk})):
            product_id = int((row.get("produto") or {}).get("id", 0))
            if product_id in balances:
                balances[product_id] = _balance_of(row, deposit_id, kind)
    return balances


def _balance_of(row: Mapping[str, Any], deposit_id: int | None, kind: BalanceKind) -> float:
    """The balance in one row of ``/estoques/saldos``: the deposit's own entry when the answer
    lists deposits (``depositos[]``), otherwise the row's total."""
    per_deposit, total = (
        ("saldoVirtual", "saldoVirtualTotal")
        if kind == "virtual"
        else ("saldoFisico", "saldoFisicoTotal")
    )
    if deposit_id is not None:
        for deposit in row.get("depositos") or ():
            if int(deposit.get("id", 0)) == int(deposit_id):
                return float(deposit.get(per_deposit) or 0)
    return float(row.get(total) or 0)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def post_stock_entry(
    client: BlingClient,
    product_id: int,
    deposit_id: int | None,
    quantity: int,
    note: str | None = None,
) -> int | None:
    """``POST /estoques`` (201): change a product's stock in a deposit outside any sales order.
    ``quantity`` > 0 is an entry (``operacao`` ``E``), < 0 a withdrawal (``S``). Bling keeps no
    key for it, so a repeat is a second movement: record it before sending, never resend it.
    Returns the movement's id when Bling gives one."""
    if quantity == 0:
        raise ValueError("a stock entry moves at least one unit")
    body: dict[str, Any] = {
        "produto": {"id": int(product_id)},
        "operacao": "E" if quantity > 0 else "S",
        "quantidade": abs(int(quantity)),
    }
    if deposit_id is not None:
        body["deposito"] = {"id": int(deposit_id)}
    if note:
        body["observacoes"] = note[:255]
    answer = client.post("/estoques", json=body)
    data = answer.get("data") if isinstance(answer, dict) else None
    found = data.get("id") if isinstance(data, dict) else None
    return int(found) if isinstance(found, int) else None
