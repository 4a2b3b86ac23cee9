"""Which code runs a kind of job, how it is retried, and how a handler reports its outcome.

A handler is ``handler(runtime, payload) -> None``. Returning means done. It reports anything else
by raising:

- ``RetryLater(reason, delay=None)``: transient (timeout, 5xx, 429); tried again after ``delay``
  seconds, or after the kind's exponential backoff; dead after ``max_attempts``.
- ``PermanentFailure(reason)``: retrying cannot help (bad payload, rejected by the remote side);
  the job is dead-lettered at once, for an operator to look at and ``outbox retry``.
- ``PauseKind(until, reason)``: the whole kind must wait (e.g. Bling's per-day request limit);
  this job and every other of its kind stay pending until ``until``, spending no attempts.
- any other exception: transient, like ``RetryLater`` with the backoff.

HANDLERS MUST BE IDEMPOTENT. A job runs at least once, not exactly once: a worker killed after
the remote call but before recording "done", a database blip while recording, or a handler that
outlives its lease all make the job run again. Check the remote side before creating (Bling has
no idempotency key: search by ``numeroLoja`` first) and record each step before the next.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the runtime imports the ledger; the outbox must stay importable from it
    from ..runtime import Runtime

Handler = Callable[["Runtime", dict[str, Any]], None]


class RetryLater(Exception):
    """Transient failure: try again after ``delay`` seconds (default: the kind's backoff)."""

    def __init__(
        self, reason: str = "retry later", *, delay: float | timedelta | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        if seconds is not None and (seconds < 0 or not math.isfinite(seconds)):
            raise ValueError(f"RetryLater delay must be a finite number >= 0, got {delay!r}")
        self.delay = seconds


class PermanentFailure(Exception):
    """Retrying cannot help: dead-letter the job now (``outbox retry`` brings it back)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PauseKind(Exception):
    """The whole kind waits until ``until`` (aware datetime); no attempt is spent on this job."""

    def __init__(self, until: datetime, reason: str = "paused") -> None:
        if until.tzinfo is None:
            raise ValueError("PauseKind needs an aware datetime (UTC)")
        super().__init__(reason)
        self.until = until
        self.reason = reason


@dataclass(frozen=True)
class JobPolicy:
    """How a kind is retried, and how long one run may take before another worker may take over.

    ``lease_seconds`` must exceed the handler's longest run (its HTTP timeouts and retries
    included): a job still running when its lease ends can be claimed, and run, a second time.
    """

    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 600.0
    max_attempts: int = 12
    lease_seconds: float = 120.0

    def __post_init__(self) -> None:
        if not 0 < self.backoff_base_seconds <= self.backoff_cap_seconds:
            raise ValueError("need 0 < backoff_base_seconds <= backoff_cap_seconds")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.lease_seconds <= 0:
            raise ValueError("lease_seconds must be > 0")

    def backoff_seconds(self, attempts: int, rng: Callable[[], float]) -> float:
        """Delay before the next try after ``attempts`` failed ones: exponential, full jitter.

        Full jitter (uniform between 0 and the exponential ceiling) spreads the retries of many
        jobs that failed together, e.g. when Bling was down, instead of sending them back in a
        wave. ``rng`` returns a float in [0, 1).
        """
        exponent = min(max(attempts, 1) - 1, 62)  # 2**62 s is past any cap; avoids overflow
        ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2.0**exponent)
        return rng() * ceiling


DEFAULT_POLICY = JobPolicy()


@dataclass(frozen=True)
class Registration:
    kind: str
    handler: Handler
    policy: JobPolicy


class Registry:
    """Handlers by kind. Kinds without a handler are never claimed: their jobs wait (e.g. until
    Bling is configured), they are not failed."""

    def __init__(self) -> None:
        self._by_kind: dict[str, Registration] = {}
        self._lock = threading.Lock()

    def register(self, kind: str, handler: Handler, *, policy: JobPolicy | None = None) -> None:
        """Run ``handler`` for jobs of ``kind``. Registering the same handler again is a no-op
        (``create_app`` may run several times in one process); another handler is an error."""
        if not kind or len(kind) > 64:
            raise ValueError(f"kind must be 1 to 64 characters, got {kind!r}")
        registration = Registration(kind, handler, policy or DEFAULT_POLICY)
        with self._lock:
            existing = self._by_kind.get(kind)
            if existing is not None and existing.handler is not handler:
                raise ValueError(f"outbox kind {kind!r} already has a handler")
            self._by_kind[kind] = registration

    def unregister(self, kind: str) -> None:
        with self._lock:
            self._by_kind.pop(kind, None)

    def get(self, kind: str) -> Registration | None:
        return self._by_kind.get(kind)

    def kinds(self) -> frozenset[str]:
        return frozenset(self._by_kind)


#: The process-wide registry the worker relays from.
default_registry = Registry()


def register(kind: str, handler: Handler, *, policy: JobPolicy | None = None) -> None:
    """Register ``handler`` for ``kind`` in the process-wide registry (``Registry.register``)."""
    default_registry.register(kind, handler, policy=policy)


def unregister(kind: str) -> None:
    default_registry.unregister(kind)
