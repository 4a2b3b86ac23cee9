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
from typing import Generic, TypeVar

from sqlalchemy import Engine

from .domain import Hold, HoldSource, HoldStatus, new_hold_id
from .fast_path import level_of, levels_of, reserve_batch, reserve_one

#: The most requests one transaction carries (the statement's arrays grow with it).
MAX_BATCH = 64


T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Waiter(Generic[T, R]):
    item: T
    result: R | None = None
    error: BaseException | None = None
    finished: bool = False
    lead: bool = False
    wake: threading.Event = field(default_factory=threading.Event)


class GroupRunner(Generic[T, R]):
    """Runs items in batches: whoever heads the queue runs the batch it heads (up to
    ``MAX_BATCH`` items) with ``run_batch``, answers every item of it, and wakes the next head.

    ``run_batch(items)`` returns one result (or exception) per item, in order; if it raises,
    every item of the batch gets that exception.
    """

    def __init__(self, run_batch: Callable[[list[T]], list[R | BaseException]]) -> None:
        self._run_batch = run_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiter[T, R]] = []

    def submit(self, item: T) -> R | None:
        waiter: _Waiter[T, R] = _Waiter(item)
        with self._lock:
            self._queue.append(waiter)
            waiter.lead = len(self._queue) == 1  # nobody is leading: this one does
        while not waiter.finished:
            if waiter.lead:
                waiter.lead = False
                self._lead()
            else:
                waiter.wake.wait()
                waiter.wake.clear()
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    def _lead(self) -> None:
        with self._lock:
            batch = self._queue[:MAX_BATCH]
        try:
            results = self._run_batch([w.item for w in batch])
        except BaseException as exc:  # the whole batch learns it
            results = [exc] * len(batch)
        for waiter, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                waiter.error = result
            else:
                waiter.result = result
        with self._lock:
            del self._queue[: len(batch)]
            successor = self._queue[0] if self._queue else None
            if successor is not None:
                successor.lead = True
        for waiter in batch:
            waiter.finished = True
            waiter.wake.set()
        if successor is not None:
            successor.wake.set()


@dataclass(frozen=True)
class _Reservation:
    hold: Hold
    ttl: timedelta
    clock: Callable[[], datetime]


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
    ) -> Hold | None:
        """The committed hold, or None when the SKU cannot cover it now (locked path next).
        ``clock`` gives the transaction's time (the batch's leader's clock is used)."""
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
        return self._runner.submit(_Reservation(hold, ttl, clock))

    def _run(self, batch: list[_Reservation]) -> list[Hold | BaseException | None]:
        clock = batch[0].clock
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
