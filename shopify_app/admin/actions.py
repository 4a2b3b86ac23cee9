"""What the admin pages can do: set a SKU's on hand, resync one SKU from Bling, retry a dead job.

Each goes through the same rules as the operator commands: the stock use case (audited with the
admin user), Bling's balance applied race-free (erp/stock_sync.py's rule, for one SKU), and the
outbox's own retry. None of them takes a lock the ledger's order does not allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bling.errors import BlingError, BlingNotConnected
from bling.products import find_products_by_sku, stock_balances

from ..erp.connection import bling_client, is_configured
from ..erp.stock_sync import (
    CLOCK_TOLERANCE,
    BlingStockRows,
    balance_offsets,
    configured_deposit,
    sellable_units,
)
from ..outbox import service as outbox
from ..runtime import Runtime
from ..stock import services
from ..stock.domain import UnknownSku


class ActionRefused(Exception):
    """The action cannot be done; ``status`` and ``code`` are the JSON answer's."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def audit_reference(user: str, action: str) -> str:
    """The movement's reference: who did it, from which page (the session token's ``sub``)."""
    return f"admin:{user}:{action}"[:255]


def set_on_hand(runtime: Runtime, sku: str, on_hand: int, *, user: str) -> services.LevelView:
    """The counted stock of a SKU the ledger tracks (the page never creates SKUs)."""
    if services.get_level(runtime.uow(read_only=True), sku) is None:
        raise ActionRefused(404, "unknown_sku", f"SKU {sku!r} is not tracked")
    return services.set_on_hand(
        runtime.uow(), sku, on_hand, reference=audit_reference(user, "set-on-hand")
    )


@dataclass(frozen=True)
class Resync:
    sku: str
    product_id: int
    balance: float
    outcome: str  # "updated", "unchanged", "skipped" (a newer webhook was applied meanwhile)
    level: services.LevelView | None


def resync_sku(runtime: Runtime, sku: str, *, user: str) -> Resync:
    """Read the SKU's Bling balance now and apply it race-free, as the full sync would."""
    if not is_configured(runtime.settings):
        raise ActionRefused(
            503, "bling_not_configured", "BLING_CLIENT_ID and BLING_CLIENT_SECRET are not set"
        )
    if services.get_level(runtime.uow(read_only=True), sku) is None:
        raise ActionRefused(404, "unknown_sku", f"SKU {sku!r} is not tracked")
    deposit = configured_deposit(runtime.settings)
    try:
        with bling_client(runtime) as client:
            product_id = find_products_by_sku(client, [sku]).get(sku)
            if product_id is None:
                raise ActionRefused(404, "not_in_bling", f"Bling has no active product {sku!r}")
            read_at = runtime.clock()  # before the request leaves: the balance is this recent
            balance = stock_balances(client, [product_id], deposit).get(product_id, 0.0)
    except BlingNotConnected as exc:
        raise ActionRefused(503, "bling_not_connected", str(exc)) from None
    except BlingError as exc:
        raise ActionRefused(502, "bling_failed", f"Bling failed: {exc}") from None
    with runtime.uow() as uow:  # the catalog row first, in its own transaction, as a sync does
        BlingStockRows(uow).save_catalog({sku: product_id})
        uow.commit()
    outcome = _apply(runtime, sku, balance, read_at, user)
    level = services.get_level(runtime.uow(read_only=True), sku)
    return Resync(sku, product_id, balance, outcome, level)


def _apply(runtime: Runtime, sku: str, balance: float, read_at: Any, user: str) -> str:
    with runtime.uow() as uow:
        try:
            level = uow.stock.lock([sku])[sku]
        except UnknownSku:
            raise ActionRefused(404, "unknown_sku", f"SKU {sku!r} is not tracked") from None
        rows = BlingStockRows(uow)
        applied_as_of = rows.balance_as_of([sku]).get(sku)
        if applied_as_of is not None and applied_as_of > read_at:
            return "skipped"
        offset = balance_offsets(uow, [sku], read_at).get(sku, 0)
        before = level.on_hand
        level.apply_balance(
            sellable_units(balance), offset, audit_reference(user, f"resync:{read_at.isoformat()}")
        )
        rows.mark_applied([sku], read_at - CLOCK_TOLERANCE)
        uow.commit()
    return "updated" if level.on_hand != before else "unchanged"


def retry_job(runtime: Runtime, job_id: int) -> outbox.JobView:
    """Re-queue one dead outbox job with fresh attempts; refuses a job that is not dead."""
    if outbox.retry_dead(runtime, job_id) == 0:
        job = outbox.get_job(runtime, job_id)
        if job is None:
            raise ActionRefused(404, "unknown_job", f"no outbox job {job_id}")
        raise ActionRefused(409, "not_dead", f"job {job_id} is {job.status}, not dead")
    job = outbox.get_job(runtime, job_id)
    assert job is not None  # noqa: S101 # nosec B101 # it was just re-queued
    return job
