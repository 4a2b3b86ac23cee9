"""Group commit: concurrent single-SKU reservations in one process share one transaction.

Under a flash sale every request wants the same row. Instead of each taking the row lock and
committing in turn, the requests of one gunicorn process that arrive while a reservation
transaction is in flight wait for it, and the next transaction carries them all
(``fast_path.reserve_batch``): per SKU one conditional UPDATE for the total asked of it, their
holds and movements inserted from it, one COMMIT. Nothing waits on a timer: a lone request goes
at once (one autocommit statement), and a batch is whatever queued meanwhile, up to
``MAX_BATCH``, whatever its SKUs.

Each request still gets its own hold and its own answer, after the commit, in arrival order.
A batch is all or nothing per SKU: when a SKU cannot cover what the batch asks of it, nothing of
that is held and each of those requests is tried alone (``fast_path.reserve_one``), then, if that
cannot either, through the locked path, which expires due holds and says "sold out" or "unknown
SKU". So a batch never holds a unit it cannot cover, and scarcity is decided exactly as without
batching.

Leadership passes along the queue: the request at its head runs the transaction for the batch
it heads, answers it, and wakes the next head to lead the following batch, so no request waits
behind more than one transaction that does not include it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from ..db.batching import GroupRunner
from .domain import Hold, HolderLimits, HoldSource, HoldStatus, new_hold_id
from .fast_path import (
    Counters,
    Counts,
    level_of,
    levels_of,
    reserve_batch,
    reserve_capped_batch,
    reserve_one,
)


@dataclass
class _Reservation:
    hold: Hold
    ttl: timedelta
    clock: Callable[[], datetime]
    #: The per-holder caps that apply to the hold's holder (None: none do).
    limits: HolderLimits | None = None
    #: The request's rate counters, for the batch to count (capped batches only).
    counters: Counters | None = None
    #: What the batch counted (set by the leader before it wakes the request); None: nothing.
    counts: Counts | None = field(default=None, compare=False)


class ReserveCombiner:
    """Group commit of single-SKU reservations for one engine, in one process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # A result of None: the SKU cannot cover the hold now (the caller takes the locked path).
        self._runner: GroupRunner[_Reservation, Hold | None] = GroupRunner(self._run)

    def reserve(
        self,
        sku: str,
        quantity: int,
        *,
        holder: str | None,
        source: HoldSource,
        ttl: timedelta,
        clock: Callable[[], datetime],
        limits: HolderLimits | None = None,
    ) -> Hold | None:
        """The committed hold, or None when the SKU cannot cover it now or a cap refuses it
        (locked path next: it decides and says why). ``clock`` gives the transaction's time
        (the batch's leader's clock is used); ``limits``: the caps of ``holder``."""
        return self.reserve_counted(
            sku, quantity, holder=holder, source=source, ttl=ttl, clock=clock, limits=limits
        )[0]

    def reserve_counted(
        self,
        sku: str,
        quantity: int,
        *,
        holder: str | None,
        source: HoldSource,
        ttl: timedelta,
        clock: Callable[[], datetime],
        limits: HolderLimits | None = None,
        counters: Counters | None = None,
    ) -> tuple[Hold | None, Counts | None]:
        """``reserve``, the request's rate ``counters`` counted in the same transaction when it
        goes under the caps (a holder, ``limits`` enabled): the hold (None: over a rate, a cap,
        or short) and the counts (None: not counted, e.g. a deadlock the server broke; the
        caller counts them itself)."""
        placeholder = clock()
        hold = Hold(
            id=new_hold_id(),
            sku=sku,
            quantity=quantity,
            holder=holder,
            source=source,
            status=HoldStatus.ACTIVE,
            created_at=placeholder,  # both set from the batch's time
            expires_at=placeholder,
        )
        capped = limits if holder is not None and limits is not None and limits.enabled else None
        reservation = _Reservation(hold, ttl, clock, capped, counters if capped else None)
        found = self._runner.submit(reservation)
        return found, reservation.counts

    def _run(self, batch: list[_Reservation]) -> list[Hold | BaseException | None]:
        clock = batch[0].clock
        limits = next((r.limits for r in batch if r.limits is not None), None)
        if limits is not None:
            return self._run_capped(batch, limits, clock)
        if len(batch) == 1:
            # Nothing to combine: one autocommit statement, one round trip (fast_path.py).
            return [self._alone(batch[0], clock)]
        now = clock()
        holds = [_stamped(r.hold, now, r.ttl) for r in batch]
        taken = reserve_batch(self.engine, holds, now)
        results: list[Hold | BaseException | None] = []
        for reservation in batch:
            if reservation.hold.sku in taken:
                results.append(reservation.hold)
                continue
            try:  # its SKU could not cover the batch: on its own, in arrival order
                results.append(self._alone(reservation, clock))
            except BaseException as exc:
                results.append(exc)
        return results

    def _run_capped(
        self, batch: list[_Reservation], limits: HolderLimits, clock: Callable[[], datetime]
    ) -> list[Hold | BaseException | None]:
        """A batch with holders under the caps (the storefront's requests): their rate counters
        counted, their locks, their holds counted and the caps checked in the same transaction
        that takes the stock (``fast_path.reserve_capped_batch``). What a rate or a cap
        refuses, or a SKU cannot cover, gets None: the caller judges the counts, the locked path
        decides the rest exactly (and says which cap, and when it frees)."""
        now = clock()
        holds = [_stamped(r.hold, now, r.ttl) for r in batch]
        try:
            taken, counts = reserve_capped_batch(
                self.engine, holds, limits, now, [r.counters for r in batch]
            )
        except DBAPIError as exc:
            if not _retryable(exc):
                raise
            return [None] * len(batch)  # e.g. a deadlock the server broke: each on its own
        results: list[Hold | BaseException | None] = []
        for reservation, mine in zip(batch, counts, strict=True):
            reservation.counts = mine
            hold = reservation.hold
            if hold.id in taken:
                results.append(hold)
            elif hold.holder is None:
                try:  # no cap applies to it (no holder): its SKU alone, as uncapped
                    results.append(self._alone(reservation, clock))
                except BaseException as exc:
                    results.append(exc)
            else:
                results.append(None)
        return results

    def _alone(self, reservation: _Reservation, clock: Callable[[], datetime]) -> Hold | None:
        hold = reservation.hold
        return reserve_one(
            self.engine,
            hold.sku,
            hold.quantity,
            holder=hold.holder,
            source=hold.source,
            now=clock(),
            ttl=reservation.ttl,
        )


Level = tuple[int, int, int, int]  # on_hand, reserved, committed, due


class ReadCombiner:
    """Concurrent reads of single SKUs in one process share one statement (``levels_of``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._runner: GroupRunner[tuple[str, Callable[[], datetime]], Level | None] = GroupRunner(
            self._run
        )

    def level_of(self, sku: str, clock: Callable[[], datetime]) -> Level | None:
        return self._runner.submit((sku, clock))

    def _run(
        self, batch: list[tuple[str, Callable[[], datetime]]]
    ) -> list[Level | BaseException | None]:
        now = batch[0][1]()
        if len(batch) == 1:
            return [level_of(self.engine, batch[0][0], now)]
        found = levels_of(self.engine, sorted({sku for sku, _ in batch}), now)
        return [found.get(sku) for sku, _ in batch]


def _retryable(exc: DBAPIError) -> bool:
    """A deadlock or serialization failure the server broke (SQLSTATE 40P01, 40001): the
    transaction changed nothing and each request can go on its own."""
    return getattr(exc.orig, "sqlstate", None) in {"40P01", "40001"}


def _stamped(hold: Hold, now: datetime, ttl: timedelta) -> Hold:
    hold.created_at, hold.expires_at = now, now + ttl
    return hold


_combiners: weakref.WeakKeyDictionary[Engine, tuple[ReserveCombiner, ReadCombiner]] = (
    weakref.WeakKeyDictionary()
)
_combiners_lock = threading.Lock()


def _pair(engine: Engine) -> tuple[ReserveCombiner, ReadCombiner]:
    with _combiners_lock:
        found = _combiners.get(engine)
        if found is None:
            found = _combiners[engine] = (ReserveCombiner(engine), ReadCombiner(engine))
        return found


def combiner_for(engine: Engine) -> ReserveCombiner:
    """The process's reservation combiner for ``engine`` (shared by all its threads)."""
    return _pair(engine)[0]


def read_combiner_for(engine: Engine) -> ReadCombiner:
    """The process's read combiner for ``engine`` (shared by all its threads)."""
    return _pair(engine)[1]


def _forget_after_fork() -> None:
    global _combiners_lock
    _combiners_lock = threading.Lock()
    _combiners.clear()  # a forked child must not share (or wait on) its parent's queues


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
