"""Stock use cases: each is one unit of work (one transaction) over the locked repository.

Web views, the CLI, webhooks and the worker call these; none of them touches rows directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..observability.events import emit, holder_hash
from ..unit_of_work import UnitOfWork
from .domain import (
    SWEEP_SKUS,
    AlreadyConfirmed,
    Hold,
    HolderLimits,
    HoldGone,
    HoldLimitExceeded,
    HoldNotFound,
    HoldSource,
    HoldStatus,
    Line,
    OutOfStock,
    StockLevel,
    UnknownSku,
    check_confirmable,
    merge_lines,
)


@dataclass(frozen=True)
class LevelView:
    """A SKU's figures as buyers see them: holds past their time no longer count."""

    sku: str
    on_hand: int
    reserved: int
    committed: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.committed

    @classmethod
    def of(cls, level: StockLevel, due: int = 0) -> LevelView:
        return cls(level.sku, level.on_hand, level.reserved - due, level.committed)


def reserve(
    uow: UnitOfWork,
    lines: Iterable[Line],
    *,
    holder: str | None,
    source: HoldSource,
    ttl: timedelta,
    limits: HolderLimits | None = None,
    line_ref: uuid.UUID | None = None,
) -> list[Hold]:
    """The locked path (reservations.py): hold every line, or none; OutOfStock names each SKU
    that falls short, with what it has.

    A SKU that looks short first has its due holds expired, inside the same locked transaction,
    so a buyer never loses a unit to a hold whose time is up (expiry is exact, not eventual).
    With ``limits`` and a holder, HoldLimitExceeded refuses what would take the holder over a
    cap, before any stock is looked at, and changes nothing.

    ``line_ref`` names a hold of the same holder and SKU whose cart line the new units join (a
    quantity increase): the new hold carries that line's id (``Hold.line_id``). A reference to
    anything else (another cart's hold, an ended one, another SKU) is ignored.
    """
    demand = merge_lines(lines)
    caps = limits if holder is not None and limits is not None and limits.enabled else None
    if line_ref is not None and (holder is None or len(demand) != 1):
        line_ref = None
    with uow:
        if caps is not None and holder is not None:
            uow.stock.lock_holder(holder)
            try:
                caps.check(uow.stock.active_holds_of(holder), demand, uow.now)
            except HoldLimitExceeded as exc:
                _rejected(demand, holder, source, "hold_limit", {}, limit=exc.limit)
                raise
        try:
            levels = uow.stock.lock(demand)
        except UnknownSku as exc:
            _rejected(demand, holder, source, "unknown_sku", {sku: 0 for sku in exc.skus})
            raise
        for sku, quantity in demand.items():
            level = levels[sku]
            if level.available < quantity:
                expire_due_holds(uow, level)
        short = {
            sku: max(levels[sku].available, 0)
            for sku, quantity in demand.items()
            if levels[sku].available < quantity
        }
        if short:
            uow.commit()  # keep the expiries: they are true whatever this request gets
            _rejected(demand, holder, source, "sold_out", short)
            raise OutOfStock(short)
        joins = _line_of(uow, line_ref, holder, demand) if line_ref is not None else None
        created = []
        for sku in sorted(demand):
            hold = levels[sku].reserve(
                demand[sku], holder=holder, source=source, now=uow.now, ttl=ttl
            )
            hold.line_ref = joins
            uow.stock.add_hold(hold)
            created.append(hold)
        uow.commit()
    return created


def _line_of(
    uow: UnitOfWork, line_ref: uuid.UUID, holder: str | None, demand: dict[str, int]
) -> uuid.UUID | None:
    """The line id a new hold joins: that of ``line_ref`` when it is a live hold of the same
    holder and SKU (read under the SKU's lock), else None (the new hold is a line of its own)."""
    found = uow.stock.holds_by_id([line_ref]).get(line_ref)
    if (
        found is None
        or found.status is not HoldStatus.ACTIVE
        or found.is_due(uow.now)
        or found.holder != holder
        or found.sku not in demand
    ):
        return None
    return found.line_id


def _rejected(
    demand: dict[str, int],
    holder: str | None,
    source: HoldSource,
    outcome: str,
    available: dict[str, int],
    **extra: str,
) -> None:
    fields: dict[str, Any] = {
        "skus": sorted(demand),
        "quantity": sum(demand.values()),
        "available": available,
        "source": source.value,
        "holder_hash": holder_hash(holder),
        "outcome": outcome,
        **extra,
    }
    emit("reservation.rejected", **fields)


def _lock_holds(uow: UnitOfWork, ids: list[uuid.UUID]) -> tuple[dict[str, StockLevel], list[Hold]]:
    """Lock the SKUs of the given holds, then read the holds again under those locks."""
    first = uow.stock.holds_by_id(ids)
    missing = set(ids) - first.keys()
    if missing:
        raise HoldNotFound(missing)
    levels = uow.stock.lock(h.sku for h in first.values())
    current = uow.stock.holds_by_id(ids)
    return levels, [current[i] for i in ids]


def confirm(uow: UnitOfWork, ids: Iterable[uuid.UUID], *, order_ref: str | None) -> list[Hold]:
    """Turn holds into commitments for ``order_ref``; repeating it for the same order is a no-op.

    HoldGone (expired or released) and AlreadyConfirmed (another order) change nothing at all.
    """
    id_list = list(dict.fromkeys(ids))
    with uow:
        levels, holds = _lock_holds(uow, id_list)
        try:
            confirmable = check_confirmable(holds, order_ref, uow.now)
        except HoldGone:
            emit("order.confirmation_refused", channel="api", order=order_ref, outcome="expired")
            raise
        for hold in confirmable:
            levels[hold.sku].confirm(hold, order_ref)
        if confirmable:
            uow.record(
                "order.confirmed",
                channel="api",
                order=order_ref,
                units=sum(h.quantity for h in confirmable),
                skus=sorted({h.sku for h in confirmable}),
            )
        uow.commit()
    return holds


def release(uow: UnitOfWork, hold_id: uuid.UUID) -> Hold:
    """Give a hold's units back. Releasing a hold that already ended is a no-op."""
    with uow:
        levels, (hold,) = _lock_holds(uow, [hold_id])
        if hold.status is HoldStatus.CONFIRMED:
            raise AlreadyConfirmed([hold])
        if hold.status is HoldStatus.ACTIVE:
            levels[hold.sku].release(hold)
            uow.commit()
    return hold


def set_on_hand(uow: UnitOfWork, sku: str, on_hand: int, *, reference: str) -> LevelView:
    """Manual stock count: set ``on_hand`` (creating the SKU if new); audited as an adjustment."""
    with uow:
        level = uow.stock.lock_or_create(sku)
        level.set_on_hand(on_hand, reference)
        due = sum(hold.quantity for hold in uow.stock.due_holds(sku))
        uow.commit()
    return LevelView.of(level, due)  # as GET shows it: holds past their time do not count


def get_level(uow: UnitOfWork, sku: str) -> LevelView | None:
    """One SKU as buyers see it (holds past their time excluded); None if not tracked."""
    with uow:
        found = uow.stock.levels(sku)
    return LevelView.of(*found[0]) if found else None


def list_levels(uow: UnitOfWork) -> list[LevelView]:
    with uow:
        return [LevelView.of(level, due) for level, due in uow.stock.levels()]


@dataclass(frozen=True)
class Drift:
    """A counter that disagrees with what it summarises: a bug to investigate, never to patch."""

    sku: str
    figure: str
    counter: int
    expected: int
    source: str


def find_drift(uow: UnitOfWork) -> list[Drift]:
    """Recompute every SKU's counters from the movement ledger and the holds; list disagreements.

    Give it a ``snapshot`` unit of work, so concurrent traffic cannot make a healthy ledger look
    drifted.
    """
    with uow:
        levels = [level for level, _due in uow.stock.levels()]
        movements = uow.stock.movement_totals()
        active = uow.stock.active_hold_totals()
    found = []
    for level in levels:
        figures = (level.on_hand, level.reserved, level.committed)
        for name, counter, expected in zip(
            ("on_hand", "reserved", "committed"),
            figures,
            movements.get(level.sku, (0, 0, 0)),
            strict=True,
        ):
            if counter != expected:
                found.append(Drift(level.sku, name, counter, expected, "movements"))
        if level.reserved != active.get(level.sku, 0):
            found.append(
                Drift(level.sku, "reserved", level.reserved, active.get(level.sku, 0), "holds")
            )
    return found


def expire_due(uow: UnitOfWork, *, batch_skus: int = SWEEP_SKUS) -> int:
    """The sweeper: expire every active hold past its time; returns how many were expired.

    Each batch of SKUs is its own short transaction, locked in sorted order like any other, so the
    sweeper never holds a hot SKU for long and never deadlocks with buyers.
    """
    expired = 0
    while True:
        with uow:
            sku_batch = uow.stock.skus_with_due_holds(batch_skus)
            if not sku_batch:
                return expired
            levels = uow.stock.lock(sku_batch)
            for sku in sku_batch:
                expired += expire_due_holds(uow, levels[sku])
            uow.commit()
        if len(sku_batch) < batch_skus:
            return expired


def expire_due_holds(uow: UnitOfWork, level: StockLevel) -> int:
    """Expire the SKU's holds whose time is up (call with it locked): done before a short SKU
    grants or sells units, so nothing is lost to a dead hold. Returns how many it expired."""
    due = uow.stock.due_holds(level.sku)
    for hold in due:
        level.expire(hold)
    return len(due)
