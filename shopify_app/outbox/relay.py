"""The relay: claim a due job, run its handler with no transaction open, record the outcome.

Why three steps: a handler calls other services (Bling) and may take seconds. Holding a row lock
or a transaction across that would block other workers (and, on SQLite, every writer), and a
crash would lose the attempt's bookkeeping. So:

1. **Claim** (one short transaction): pick the oldest due job of a kind that has a handler and is
   not paused, and lease it: ``due_at = now + lease``, ``attempts + 1``. On PostgreSQL the row
   is picked with ``SELECT … FOR UPDATE SKIP LOCKED``, so concurrent workers each take a
   different row without waiting on each other; a row another worker has just leased no longer
   matches ``due_at <= now`` when PostgreSQL re-checks it under the lock. On SQLite the write
   transaction begins with ``BEGIN IMMEDIATE`` (``db/engine.py``), which serialises claims outright.
2. **Run** the handler, committed claim, no transaction open.
3. **Record** (one short transaction): done; pending again after a backoff; dead; or put back
   untouched when its kind is paused. The update only applies while ``attempts`` still equals
   the claim's value: if the lease ran out and another worker re-claimed the job meanwhile, that
   worker owns the outcome, and a late result of this one is dropped.

A worker killed at any point loses nothing: the lease runs out and another claim re-runs the job.
That is why handlers must be idempotent (``registry.py``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, exists, select, update

from ..db.engine import READ_ONLY
from ..observability import logs, metrics
from .registry import (
    PauseKind,
    PermanentFailure,
    Registration,
    Registry,
    RetryLater,
    default_registry,
)
from .service import DEAD, DONE, PENDING, pause_kind
from .tables import ERROR_LENGTH, outbox_jobs, outbox_pauses

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

Rng = Callable[[], float]


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int  # including this one; also the fencing token of this claim
    previous_due_at: datetime  # restored when the kind turns out to be paused

    @property
    def request_id(self) -> str | None:
        value = self.payload.get("request_id")
        return None if value is None else str(value)


def default_worker_id() -> str:
    """Host and process id: enough for an operator to tell which dyno holds a lease."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_due(
    runtime: Runtime,
    *,
    batch: int = 50,
    worker_id: str | None = None,
    stop: threading.Event | None = None,
    registry: Registry | None = None,
    rng: Rng = random.random,
) -> int:
    """Run up to ``batch`` due jobs, one after the other; return how many ran (any outcome).

    Jobs are claimed one at a time, right before each runs, so a lease measures one handler's
    run rather than the wait behind others in a batch, and a stop request (checked between jobs:
    SIGTERM lets the current job finish) leaves no job claimed but not started.
    """
    registry = registry or default_registry
    worker_id = worker_id or default_worker_id()
    ran = 0
    while ran < batch and not (stop is not None and stop.is_set()):
        claimed = claim(runtime, registry=registry, worker_id=worker_id, limit=1)
        if not claimed:
            break
        run_claimed(runtime, claimed[0], registry=registry, rng=rng)
        ran += 1
    return ran


def claim(
    runtime: Runtime, *, registry: Registry, worker_id: str, limit: int = 1
) -> list[ClaimedJob]:
    """Lease up to ``limit`` due jobs in one short transaction and commit (see module doc)."""
    kinds = registry.kinds()
    if not kinds:
        return []  # nothing could run them: do not even touch the database
    now = runtime.clock()
    query = _due_jobs(kinds, now, limit)
    if runtime.engine.dialect.name == "sqlite" and not _any_due(runtime, query):
        # BEGIN IMMEDIATE takes SQLite's one write lock, which the web's reserve path waits on;
        # an idle worker polling twice a second should not take it to find nothing.
        return []
    claimed = []
    with runtime.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=outbox_jobs)
        for row in connection.execute(query).all():
            registration = registry.get(row.kind)
            if registration is None:  # unregistered since kinds() was read
                continue
            lease = timedelta(seconds=registration.policy.lease_seconds)
            connection.execute(
                update(outbox_jobs)
                .where(outbox_jobs.c.id == row.id)
                .values(
                    due_at=now + lease,
                    attempts=row.attempts + 1,
                    leased_by=worker_id[:128],
                    updated_at=now,
                )
            )
            payload = json.loads(row.payload)
            claimed.append(
                ClaimedJob(row.id, row.kind, row.key, payload, row.attempts + 1, row.due_at)
            )
    return claimed


def run_claimed(
    runtime: Runtime, job: ClaimedJob, *, registry: Registry, rng: Rng = random.random
) -> str:
    """Run one claimed job's handler and record the outcome; return the job's new status."""
    registration = registry.get(job.kind)
    if registration is None:
        raise LookupError(f"no handler for outbox kind {job.kind!r}")
    logs.bind_request_id(job.request_id)  # the job's lines join the request that queued it
    try:
        status = _run(runtime, job, registration, rng)
    finally:
        logs.clear_context()
    return status


def _run(runtime: Runtime, job: ClaimedJob, registration: Registration, rng: Rng) -> str:
    try:
        registration.handler(runtime, job.payload)
    except PauseKind as pause:
        return _record_pause(runtime, job, pause)
    except PermanentFailure as failure:
        return _record_failure(runtime, job, registration, failure.reason, rng, final=True)
    except RetryLater as retry:
        return _record_failure(runtime, job, registration, retry.reason, rng, delay=retry.delay)
    except Exception as exc:  # any other error is transient: the traceback goes to the log
        log.warning(
            "outbox.error kind=%s id=%d attempt=%d request_id=%s",
            job.kind,
            job.id,
            job.attempts,
            job.request_id,
            exc_info=True,
        )
        return _record_failure(runtime, job, registration, f"{type(exc).__name__}: {exc}", rng)
    return _record_done(runtime, job)


# --- outcomes ---------------------------------------------------------------------------------


def _record_done(runtime: Runtime, job: ClaimedJob) -> str:
    now = runtime.clock()
    values = {"status": DONE, "done_at": now, "last_error": None, "leased_by": None}
    metrics.OUTBOX_JOBS.labels(job.kind, "done").inc()
    if _apply(runtime, job, now, values):
        log.info(
            "outbox.done kind=%s id=%d attempt=%d request_id=%s",
            job.kind,
            job.id,
            job.attempts,
            job.request_id,
        )
    return DONE


def _record_failure(
    runtime: Runtime,
    job: ClaimedJob,
    registration: Registration,
    reason: str,
    rng: Rng,
    *,
    final: bool = False,
    delay: float | None = None,
) -> str:
    now = runtime.clock()
    policy = registration.policy
    error = reason[:ERROR_LENGTH]
    if final or job.attempts >= policy.max_attempts:
        metrics.OUTBOX_JOBS.labels(job.kind, "dead").inc()
        values: dict[str, Any] = {"status": DEAD, "last_error": error, "leased_by": None}
        if _apply(runtime, job, now, values):
            log.error(
                "outbox.dead kind=%s id=%d key=%s attempts=%d request_id=%s error=%s",
                job.kind,
                job.id,
                job.key,
                job.attempts,
                job.request_id,
                error,
            )
        return DEAD
    metrics.OUTBOX_JOBS.labels(job.kind, "retry").inc()
    seconds = policy.backoff_seconds(job.attempts, rng) if delay is None else delay
    values = {"due_at": now + timedelta(seconds=seconds), "last_error": error, "leased_by": None}
    if _apply(runtime, job, now, values):
        log.warning(
            "outbox.retry kind=%s id=%d attempt=%d in=%.1fs request_id=%s error=%s",
            job.kind,
            job.id,
            job.attempts,
            seconds,
            job.request_id,
            error,
        )
    return PENDING


def _record_pause(runtime: Runtime, job: ClaimedJob, pause: PauseKind) -> str:
    metrics.OUTBOX_JOBS.labels(job.kind, "paused").inc()
    now = runtime.clock()
    # The job goes back as it was before the claim (attempt refunded, place in line kept); the
    # pause row, not its due_at, keeps the whole kind waiting.
    values = {
        "attempts": job.attempts - 1,
        "due_at": job.previous_due_at,
        "last_error": f"paused: {pause.reason}"[:ERROR_LENGTH],
        "leased_by": None,
    }
    with runtime.engine.begin() as connection:
        pause_kind(connection, job.kind, pause.until, pause.reason)
        _update_if_still_ours(connection, job, now, values)
    log.warning(
        "outbox.paused kind=%s until=%s reason=%s", job.kind, pause.until.isoformat(), pause.reason
    )
    return PENDING


def _apply(runtime: Runtime, job: ClaimedJob, now: datetime, values: dict[str, Any]) -> bool:
    with runtime.engine.begin() as connection:
        return _update_if_still_ours(connection, job, now, values)


def _update_if_still_ours(
    connection: Connection, job: ClaimedJob, now: datetime, values: dict[str, Any]
) -> bool:
    result = connection.execute(
        update(outbox_jobs)
        .where(
            outbox_jobs.c.id == job.id,
            outbox_jobs.c.status == PENDING,
            outbox_jobs.c.attempts == job.attempts,
        )
        .values(updated_at=now, **values)
    )
    if result.rowcount == 0:
        log.warning(
            "outbox.lease_lost kind=%s id=%d attempt=%d: another worker re-claimed the job "
            "after its lease ran out; raise the kind's lease_seconds above its longest run",
            job.kind,
            job.id,
            job.attempts,
        )
        return False
    return True


# --- queries ----------------------------------------------------------------------------------


def _due_jobs(kinds: frozenset[str], now: datetime, limit: int) -> Any:
    jobs = outbox_jobs.c
    paused = exists().where(outbox_pauses.c.kind == jobs.kind, outbox_pauses.c.until > now)
    return (
        select(jobs.id, jobs.kind, jobs.key, jobs.payload, jobs.attempts, jobs.due_at)
        .where(jobs.status == PENDING, jobs.due_at <= now, jobs.kind.in_(sorted(kinds)), ~paused)
        .order_by(jobs.due_at, jobs.id)
        .limit(limit)
    )


def _any_due(runtime: Runtime, query: Any) -> bool:
    with runtime.engine.connect() as connection:
        connection = connection.execution_options(**{READ_ONLY: True})
        with connection.begin():
            return connection.execute(query.limit(1)).first() is not None
