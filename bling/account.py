"""The Bling account a token speaks for: its company id and its deposits (spec paths
``/empresas/me/dados-basicos`` and ``/depositos``).

- ``company_id``: the account's id. Bling's webhooks carry the same value as ``companyId``
  (docs/bling-api.md §5: "companyId can be matched against GET /empresas/me/dados-basicos"), so it
  tells the account's own events from those of another account that authorized the same app
  (they are signed with the same client secret).
- ``deposits``: the account's deposits (``situacao`` 1, active, unless asked otherwise); Bling
  marks one of them ``padrao``, the default deposit, where ``lancar-estoque`` without an
  ``idDeposito`` posts. ``default_deposit`` picks it, or None when Bling marks none (or several).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bling.client import BlingClient, data_list, data_object
from bling.errors import BlingError

#: ``GET /depositos`` pages hold up to 100 deposits (the spec's default ``limite``).
PAGE_SIZE = 100
#: A walk that has not ended after this many pages is a server ignoring ``pagina``.
MAX_PAGES = 50


@dataclass(frozen=True)
class Deposit:
    """One row of ``GET /depositos``."""

    id: int
    description: str  # descricao
    active: bool  # situacao 1
    default: bool  # padrao
    ignores_balance: bool = False  # desconsiderarSaldo: its stock is left out of the totals


def company_id(client: BlingClient) -> str:
    """The account's id (``data.id`` of ``GET /empresas/me/dados-basicos``), as webhooks carry it
    in ``companyId``."""
    data = data_object(client.get("/empresas/me/dados-basicos"))
    value = data.get("id")
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise BlingError("GET /empresas/me/dados-basicos answered no company id")
    return str(value).strip()


def deposits(client: BlingClient, *, active_only: bool = True) -> list[Deposit]:
    """Every deposit of the account (active ones only, by default), page by page until an empty
    page, as the other listings are walked."""
    params: dict[str, int] = {"limite": PAGE_SIZE}
    if active_only:
        params["situacao"] = 1
    found: list[Deposit] = []
    previous: list[int] = []
    for page in range(1, MAX_PAGES + 1):
        rows = data_list(client.get("/depositos", params={**params, "pagina": page}))
        if not rows:
            return found
        parsed = [_deposit(row) for row in rows]
        ids = [d.id for d in parsed]
        if ids == previous:
            raise BlingError(f"GET /depositos returned page {page} twice; stopping")
        previous = ids
        found.extend(parsed)
    raise BlingError(f"GET /depositos did not end after {MAX_PAGES} pages")


def default_deposit(candidates: Iterable[Deposit]) -> Deposit | None:
    """The one active deposit Bling marks ``padrao``; None when there is none, or more than one
    (which deposit Bling would post to is then unknown)."""
    marked = [d for d in candidates if d.default and d.active]
    return marked[0] if len(marked) == 1 else None


def _deposit(row: dict[str, object]) -> Deposit:
    try:
        deposit_id = int(str(row["id"]))
    except (KeyError, ValueError):
        raise BlingError("GET /depositos answered a deposit without a numeric id") from None
    return Deposit(
        id=deposit_id,
        description=str(row.get("descricao") or ""),
        active=str(row.get("situacao", 1)) == "1",
        default=row.get("padrao") is True,
        ignores_balance=row.get("desconsiderarSaldo") is True,
    )
