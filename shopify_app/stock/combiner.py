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

from .domain import Hold, HoldSource, HoldStatus, new_hold_id
from .fast_path import reserve_batch, reserve_one

#: The most requests one transaction carries (the statement's arrays grow with it).
MAX_BATCH = 64


@dataclass
class _Request:
    hold: Hold
    ttl: timedelta
    clock: Callable[[], datetime]
    result: Hold | None = None
    error: BaseException | None = None
    finished: bool = False
    lead: bool = False
    wake: threading.Event = field(default_factory=threading.Event)


class ReserveCombiner:
    """Group commit of single-SKU reservations for one engine, in one process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._queue: list[_Request] = []

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
        request = _Request(hold, ttl, clock)
        with self._lock:
            self._queue.append(request)
            request.lead = len(self._queue) == 1  # nobody is leading: this request does
        while not request.finished:
            if request.lead:
                request.lead = False
                self._lead()
            else:
                request.wake.wait()
                request.wake.clear()
        if request.error is not None:
            raise request.error
        return request.result

    def _lead(self) -> None:
        with self._lock:
            batch = self._queue[:MAX_BATCH]
        try:
            self._run(batch)
        except BaseException as exc:  # the whole batch learns it; none of it was committed
            for request in batch:
                request.error = exc
        with self._lock:
            del self._queue[: len(batch)]
            successor = self._queue[0] if self._queue else None
            if successor is not None:
                successor.lead = True
        for request in batch:
            request.finished = True
            request.wake.set()
        if successor is not None:
            successor.wake.set()

    def _run(self, batch: list[_Request]) -> None:
        clock = batch[0].clock
        if len(batch) == 1:
            # Nothing to combine: one autocommit statement, one round trip (fast_path.py).
            self._alone(batch[0], clock)
            return
        now = clock()
        holds = [_stamped(r.hold, now, r.ttl) for r in batch]
        taken = reserve_batch(self.engine, holds, now)
        for request in batch:
            if request.hold.sku in taken:
                request.result = request.hold
                continue
            try:  # its SKU could not cover the batch: on its own, in arrival order
                self._alone(request, clock)
            except BaseException as exc:
                request.error = exc

    def _alone(self, request: _Request, clock: Callable[[], datetime]) -> None:
        hold = request.hold
        request.result = reserve_one(
            self.engine,
            hold.sku,
            hold.quantity,
            holder=hold.holder,
            source=hold.source,
            now=clock(),
            ttl=request.ttl,
        )


def _stamped(hold: Hold, now: datetime, ttl: timedelta) -> Hold:
    hold.created_at, hold.expires_at = now, now + ttl
    return hold


_combiners: weakref.WeakKeyDictionary[Engine, ReserveCombiner] = weakref.WeakKeyDictionary()
_combiners_lock = threading.Lock()


def combiner_for(engine: Engine) -> ReserveCombiner:
    """The process's combiner for ``engine`` (one queue per SKU across all its threads)."""
    with _combiners_lock:
        found = _combiners.get(engine)
        if found is None:
            found = _combiners[engine] = ReserveCombiner(engine)
        return found


def _forget_after_fork() -> None:
    global _combiners_lock
    _combiners_lock = threading.Lock()
    _combiners.clear()  # a forked child must not share (or wait on) its parent's queues


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
