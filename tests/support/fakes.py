"""In-memory stand-ins for the stock port (shopify_app/stock/ports.py) and the unit of work, so the
stock use cases are unit-tested in milliseconds, without a database.

They keep the port's contract the simple way: one transaction at a time, nothing stored until
``commit`` (so leaving the ``with`` block without it rolls everything back), every read returning
copies that only ``commit`` writes back. The SQL implementations are tested against a real
SQLite and PostgreSQL in tests/integration.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from shopify_app.observability.events import Event
from shopify_app.stock.domain import (
    Hold,
    HoldStatus,
    Movement,
    Reason,
    StockLevel,
    UnknownSku,
)


@dataclasses.dataclass
class StockStore:
    """What the fake database holds: the SKU rows, the holds and the movement ledger."""

    rows: dict[str, tuple[int, int, int]] = dataclasses.field(default_factory=dict)
    holds: dict[uuid.UUID, Hold] = dataclasses.field(default_factory=dict)
    movements: list[Movement] = dataclasses.field(default_factory=list)
    locked_holders: list[str] = dataclasses.field(default_factory=list)

    def figures(self, sku: str) -> dict[str, int]:
        on_hand, reserved, committed = self.rows[sku]
        return {
            "on_hand": on_hand,
            "reserved": reserved,
            "committed": committed,
            "available": on_hand - reserved - committed,
        }

    def stock(self, **levels: int) -> None:
        """Put SKUs on hand directly (as a sync would), with their movements."""
        for sku, on_hand in levels.items():
            self.rows[sku] = (on_hand, 0, 0)
            self.movements.append(Movement(sku, Reason.SYNC, "test", on_hand=on_hand))


class FakeStockRepository:
    """The stock port over a StockStore, for one transaction at time ``now``."""

    def __init__(self, store: StockStore, now: datetime) -> None:
        self.store = store
        self.now = now
        self._levels: dict[str, StockLevel] = {}
        self._holds: dict[uuid.UUID, Hold] = {}
        self._new: list[Hold] = []

    # --- reads under "lock" -------------------------------------------------------------------

    def lock(self, sku_list: Iterable[str], *, missing_ok: bool = False) -> dict[str, StockLevel]:
        wanted = sorted(set(sku_list))
        missing = [s for s in wanted if s not in self.store.rows and s not in self._levels]
        if missing and not missing_ok:
            raise UnknownSku(missing)
        found = {}
        for sku in wanted:
            if sku in self._levels:
                found[sku] = self._levels[sku]
            elif sku in self.store.rows:
                found[sku] = self._levels[sku] = StockLevel(sku, *self.store.rows[sku])
        return found

    def lock_holder(self, holder: str) -> None:
        self.store.locked_holders.append(holder)

    def lock_or_create(self, sku: str) -> StockLevel:
        if sku not in self.store.rows and sku not in self._levels:
            self._levels[sku] = StockLevel(sku, 0, 0, 0)
        return self.lock([sku])[sku]

    def _track(self, hold: Hold) -> Hold:
        if hold.id not in self._holds:
            self._holds[hold.id] = dataclasses.replace(hold)
        return self._holds[hold.id]

    def _all_holds(self) -> list[Hold]:
        return [self._track(h) for h in self.store.holds.values()] + self._new

    def due_holds(self, sku: str) -> list[Hold]:
        due = [h for h in self._all_holds() if h.sku == sku and h.is_due(self.now)]
        return sorted(due, key=lambda h: h.expires_at)

    def skus_with_due_holds(self, limit: int) -> list[str]:
        return sorted({h.sku for h in self._all_holds() if h.is_due(self.now)})[:limit]

    def holds_by_id(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Hold]:
        wanted = set(ids)
        return {h.id: h for h in self._all_holds() if h.id in wanted}

    def active_holds_of(self, holder: str) -> list[Hold]:
        mine = [
            h for h in self._all_holds() if h.holder == holder and h.status is HoldStatus.ACTIVE
        ]
        return sorted(mine, key=lambda h: (h.created_at, str(h.id)))

    def holds_confirmed_for(self, holder: str, order_refs: Iterable[str]) -> list[Hold]:
        refs = {r for r in order_refs if r}
        return [
            h
            for h in self._all_holds()
            if h.holder == holder and h.status is HoldStatus.CONFIRMED and h.order_ref in refs
        ]

    def add_hold(self, hold: Hold) -> None:
        self._new.append(hold)

    def forget_holders(self, holders: Iterable[str] | None) -> None:
        chosen = None if holders is None else set(holders)
        for hold in self._all_holds():
            if hold.holder is not None and (chosen is None or hold.holder in chosen):
                hold.holder = None

    # --- plain reads --------------------------------------------------------------------------

    def levels(self, sku: str | None = None) -> list[tuple[StockLevel, int]]:
        out = []
        for name in sorted(self.store.rows):
            if sku is not None and name != sku:
                continue
            due = sum(
                h.quantity
                for h in self.store.holds.values()
                if h.sku == name and h.is_due(self.now)
            )
            out.append((StockLevel(name, *self.store.rows[name]), due))
        return out

    def movement_totals(self) -> dict[str, tuple[int, int, int]]:
        totals: dict[str, tuple[int, int, int]] = {}
        for m in self.store.movements:
            a, b, c = totals.get(m.sku, (0, 0, 0))
            totals[m.sku] = (a + m.on_hand, b + m.reserved, c + m.committed)
        return totals

    def active_hold_totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for h in self.store.holds.values():
            if h.status is HoldStatus.ACTIVE:
                totals[h.sku] = totals.get(h.sku, 0) + h.quantity
        return totals

    # --- commit -------------------------------------------------------------------------------

    def flush(self) -> None:
        for level in self._levels.values():
            self.store.rows[level.sku] = (level.on_hand, level.reserved, level.committed)
            self.store.movements.extend(level.pending)
            level.pending = []
        for hold in [*self._holds.values(), *self._new]:
            self.store.holds[hold.id] = dataclasses.replace(hold)
        self._new = []


class FakeUnitOfWork:
    """A unit of work over a StockStore: nothing is stored until ``commit``; ``events`` are the
    business events the use cases recorded, ``committed_events`` those a commit made true."""

    def __init__(self, store: StockStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        self.commits = 0
        self.committed_events: list[Event] = []
        self.shopify: Any = None  # the Shopify side has no fake yet: stock use cases only

    def __enter__(self) -> FakeUnitOfWork:
        self.now = self.clock()
        self.stock = FakeStockRepository(self.store, self.now)
        self.events: list[Event] = []
        return self

    def __exit__(self, *exc: object) -> None:
        self.stock = FakeStockRepository(self.store, self.now)  # uncommitted changes are gone

    def commit(self) -> None:
        self.stock.flush()
        self.commits += 1
        self.committed_events.extend(self.events)
        self.events = []

    def rollback(self) -> None:
        self.stock = FakeStockRepository(self.store, self.now)

    def record(self, action: str, **fields: Any) -> None:
        fields.pop("level", None)
        self.events.append(Event(action, fields))
