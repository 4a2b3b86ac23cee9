"""Group commit's queue: concurrent callers of one process hand their items to whoever heads
the queue, who runs them as one batch (one transaction, one statement) and answers each.

Used by the reservation and read combiners (stock/combiner.py) and the rate-limit counters
(ratelimit.py). Nothing waits on a timer: a lone item runs at once; a batch is whatever queued
while the previous one ran, up to ``MAX_BATCH``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

#: The most requests one transaction carries (the statement's arrays grow with it).
MAX_BATCH = 64


T = TypeVar("T")
R = TypeVar("R")


def _asleep() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass
class _Waiter(Generic[T, R]):
    item: T
    result: R | None = None
    error: BaseException | None = None
    finished: bool = False
    #: Held from the start; released once, when the waiter is to wake: its batch finished it,
    #: or the lead is handed to it (then its own batch, which it heads, releases it once more:
    #: the waiter acquired it as it woke). A bare lock, not an ``Event``: an Event is a
    #: Condition over a lock and makes a new lock on every wait, a few percent of a storefront
    #: request's time.
    wake: threading.Lock = field(default_factory=_asleep)


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
            leads = len(self._queue) == 1  # nobody is leading: this one does
        if not leads:
            waiter.wake.acquire()  # until a batch finished it, or the lead is handed to it
        if not waiter.finished:
            self._lead()  # it heads the queue: the batch it runs finishes it
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
        for waiter in batch:
            waiter.finished = True
            waiter.wake.release()
        if successor is not None:
            successor.wake.release()
