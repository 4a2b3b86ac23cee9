"""The one seam where stock is taken: ``Reservations``, and the one rule that picks how.

Every hold made for a caller that waits for the answer (``POST /stock/{sku}/reserve``, ``POST
/stock/reserve``, the App Proxy's reserve routes) and every figure read for a buyer (``GET
/stock/{sku}``, the App Proxy's reads) goes through a ``Reservations``. Two implementations keep
the same guarantees (the race, property and kill tests run over both):

- ``LockedReservations``: ``services.reserve``, one transaction that locks the holder (when
  per-holder caps apply) and the SKU rows in sorted order, expires due holds of a short SKU,
  checks caps and stock, and inserts holds and movements. Correct anywhere, SQLite included.
- ``GroupCommitReservations`` (PostgreSQL): concurrent single-SKU requests of a process ride one
  transaction (``combiner.py`` over ``fast_path.py``: one conditional UPDATE per SKU, one COMMIT).

The rule, here and nowhere else (``reservations_for`` and ``GroupCommitReservations.reserve``):
on PostgreSQL a request takes the group commit when it is for **one SKU** and it **joins no
cart line**. Under the per-holder caps (a storefront request names its cart) the batch's
transaction first takes the holders' locks and counts their live holds, so a cap is checked in
the transaction that takes the stock (``fast_path.reserve_capped_batch``). Any other request,
and any the group commit cannot cover (not enough available, an unknown SKU, over a cap),
takes the locked path, which decides "sold out", the cap refused and expiry exactly. SQLite
takes the locked path always: ``BEGIN IMMEDIATE`` runs one writer at a time there, so there is
nothing to combine.

Rate limits: a caller hands over the request's rate counters (``RateCounting``, from
``ratelimit.RateLimits.counting``). The group commit counts them in the transaction that takes
the stock when the request goes under the caps (one round trip for both); anywhere else they are
counted first, on their own. Either way a request over a rate touches no stock, and is counted
once.

Cart webhooks reserve inside their own delivery transaction (``shopify/carts.py``), under the
same locks; they are not a caller of this seam.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Protocol

from sqlalchemy import Engine

from ..clock import Clock
from ..observability.events import emit_all
from ..unit_of_work import UnitOfWork
from . import services
from .combiner import combiner_for, read_combiner_for
from .domain import (
    SWEEP_HOLDS,
    SWEEP_SKUS,
    Hold,
    HoldChange,
    HolderLimits,
    HoldSource,
    Line,
    StockLevel,
    merge_lines,
)
from .fast_path import Counters, Counts, expire_due_batch
from .repository import hold_events


class RateCounting(Protocol):
    """One request's rate counters (``ratelimit.Counting``)."""

    @property
    def counters(self) -> Counters:
        """(key, window seconds, hits allowed) per counter: what a batch statement counts."""
        ...

    def settle(self, counts: Counts | None) -> None:
        """Judge what a transaction counted (RateLimited when over a rate); None: nothing was
        counted for this request, so count it now (and judge that)."""
        ...


class Reservations(Protocol):
    """Hold stock for a caller that waits for the answer, and read what buyers see."""

    def reserve(
        self,
        lines: Iterable[Line],
        *,
        holder: str | None,
        source: HoldSource,
        ttl: timedelta,
        limits: HolderLimits | None = None,
        line_ref: uuid.UUID | None = None,
        counting: RateCounting | None = None,
    ) -> list[Hold]:
        """Every line or none (``services.reserve``'s errors: OutOfStock, UnknownSku, …);
        RateLimited first when ``counting`` is over a rate."""
        ...

    def level(self, sku: str) -> services.LevelView | None:
        """The SKU's figures as buyers see them (due holds excluded); None if not tracked."""
        ...

    def expire_due(self, *, batch_skus: int = SWEEP_SKUS, batch_holds: int = SWEEP_HOLDS) -> int:
        """The sweeper: expire every active hold past its time; how many were expired. A
        transaction expires the holds of up to ``batch_skus`` SKUs, and where it is one
        statement for them all, at most ``batch_holds`` holds."""
        ...


class LockedReservations:
    """The locked path: one unit of work per call (``services.reserve``, ``services.get_level``)."""

    def __init__(self, new_uow: Callable[..., UnitOfWork]) -> None:
        self.new_uow = new_uow

    def reserve(
        self,
        lines: Iterable[Line],
        *,
        holder: str | None,
        source: HoldSource,
        ttl: timedelta,
        limits: HolderLimits | None = None,
        line_ref: uuid.UUID | None = None,
        counting: RateCounting | None = None,
    ) -> list[Hold]:
        if counting is not None:
            counting.settle(None)
        return services.reserve(
            self.new_uow(),
            lines,
            holder=holder,
            source=source,
            ttl=ttl,
            limits=limits,
            line_ref=line_ref,
        )

    def level(self, sku: str) -> services.LevelView | None:
        return services.get_level(self.new_uow(read_only=True), sku)

    def expire_due(self, *, batch_skus: int = SWEEP_SKUS, batch_holds: int = SWEEP_HOLDS) -> int:
        # Through the domain, SKU by SKU: ``batch_holds`` bounds only the set-based statement.
        return services.expire_due(self.new_uow(), batch_skus=batch_skus)


class GroupCommitReservations:
    """PostgreSQL: the group commit where the rule allows it, the locked path for the rest."""

    def __init__(self, engine: Engine, clock: Clock, locked: LockedReservations) -> None:
        self.engine = engine
        self.clock = clock
        self.locked = locked

    def reserve(
        self,
        lines: Iterable[Line],
        *,
        holder: str | None,
        source: HoldSource,
        ttl: timedelta,
        limits: HolderLimits | None = None,
        line_ref: uuid.UUID | None = None,
        counting: RateCounting | None = None,
    ) -> list[Hold]:
        lines = list(lines)
        demand = merge_lines(lines)
        if len(demand) == 1 and line_ref is None:
            ((sku, quantity),) = demand.items()
            capped = holder is not None and limits is not None and limits.enabled
            if counting is not None and not capped:
                counting.settle(None)  # an uncapped batch does not count rates: first, alone
                counting = None
            hold, counts = combiner_for(self.engine).reserve_counted(
                sku,
                quantity,
                holder=holder,
                source=source,
                ttl=ttl,
                clock=self.clock,
                limits=limits,
                counters=counting.counters if counting is not None else None,
            )
            if hold is not None:  # its counts were under every rate (the statement's rule)
                emit_all(hold_events([HoldChange("created", hold)]))
                return [hold]
            if counting is not None:
                counting.settle(counts)  # over a rate: RateLimited, and no stock was touched
                counting = None
            # else: short, unknown or over a cap: the locked path decides
        return self.locked.reserve(
            lines,
            holder=holder,
            source=source,
            ttl=ttl,
            limits=limits,
            line_ref=line_ref,
            counting=counting,
        )

    def expire_due(self, *, batch_skus: int = SWEEP_SKUS, batch_holds: int = SWEEP_HOLDS) -> int:
        """Set-based on PostgreSQL (``fast_path.expire_due_batch``): one statement per batch of
        SKUs (or of holds, the bound on how long it locks them), so a wave of storefront holds
        running out never queues behind one UPDATE per hold while the sale goes on."""
        expired = 0
        while True:
            holds, more = expire_due_batch(self.engine, self.clock(), batch_skus, batch_holds)
            expired += len(holds)
            emit_all(hold_events([HoldChange("expired", h) for h in holds]))
            if not more:
                return expired

    def level(self, sku: str) -> services.LevelView | None:
        """One statement shared with the process's concurrent reads (``combiner.py``)."""
        found = read_combiner_for(self.engine).level_of(sku, self.clock)
        if found is None:
            return None
        on_hand, reserved, committed, due = found
        return services.LevelView.of(StockLevel(sku, on_hand, reserved, committed), due)


def reservations_for(
    engine: Engine, clock: Clock, new_uow: Callable[..., UnitOfWork]
) -> Reservations:
    """The implementation this database allows (the rule is in the module docstring)."""
    locked = LockedReservations(new_uow)
    if engine.dialect.name == "postgresql":
        return GroupCommitReservations(engine, clock, locked)
    return locked
