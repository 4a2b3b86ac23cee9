"""Writing to the outbox (in the caller's transaction) and looking after it (retry, figures).

The relay that runs the jobs is ``relay.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from ..db import dialect
from ..db.engine import READ_ONLY
from ..observability.logs import current_request_id
from .tables import ERROR_LENGTH, outbox_jobs, outbox_pauses

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..unit_of_work import UnitOfWork

PENDING, DONE, DEAD = "pending", "done", "dead"


def enqueue(
    target: Connection | UnitOfWork,
    kind: str,
    key: str,
    payload: dict[str, Any],
    *,
    now: datetime,
    delay: float = 0,
) -> bool:
    """Add a job in the CALLER's transaction; return False if ``(kind, key)`` already exists.

    ``target`` is the caller's ``Connection`` or unit of work: the job commits or rolls back with
    the change that needs it, so "order confirmed" and "forward it to Bling" cannot part ways.
    ``key`` makes enqueue idempotent for good, not only while the job is pending: a redelivered
    webhook enqueuing the same order again is a no-op even after the job is done. ``payload``
    must be JSON-serialisable; put a ``request_id`` in it to correlate the relay's logs with the
    request that caused the job. ``now`` is the transaction's time (``uow.now``).
    """
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    if delay < 0:
        raise ValueError("delay must be >= 0")
    connection = _connection_of(target)
    request_id = current_request_id()
    if request_id and "request_id" not in payload:
        payload = {**payload, "request_id": request_id}  # the worker's logs join the request's
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    values = {
        "kind": kind,
        "key": key,
        "payload": body,
        "status": PENDING,
        "attempts": 0,
        "due_at": now + timedelta(seconds=delay),
        "created_at": now,
        "updated_at": now,
    }
    stmt = dialect.insert(connection, outbox_jobs).values(**values)
    stmt = stmt.on_conflict_do_nothing(index_elements=["kind", "key"])
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT DO NOTHING. On
    # PostgreSQL a concurrent twin waits for this transaction and then does nothing (or inserts,
    # if this one rolled back).
    return connection.execute(stmt.returning(outbox_jobs.c.id)).first() is not None


def retry_dead(runtime: Runtime, job_id: int | None = None) -> int:
    """Re-queue dead jobs (all, or the one with ``job_id``) with fresh attempts; return how many.

    ``last_error`` is kept until the next outcome, so an operator still sees why it died.
    """
    now = runtime.clock()
    stmt = (
        update(outbox_jobs)
        .where(outbox_jobs.c.status == DEAD)
        .values(status=PENDING, attempts=0, due_at=now, leased_by=None, updated_at=now)
    )
    if job_id is not None:
        stmt = stmt.where(outbox_jobs.c.id == job_id)
    with runtime.engine.begin() as connection:
        return connection.execute(stmt).rowcount


def pause_kind(connection: Connection, kind: str, until: datetime, reason: str = "") -> None:
    """Hold every job of ``kind`` until ``until`` (the latest pause wins), in ``connection``'s
    transaction. Handlers do this by raising ``PauseKind``."""
    values = {"kind": kind, "until": until, "reason": reason[:ERROR_LENGTH] or None}
    stmt = dialect.insert(connection, outbox_pauses).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["kind"], set_={"until": until, "reason": values["reason"]}
    )
    connection.execute(stmt)


def resume_kind(runtime: Runtime, kind: str) -> bool:
    """Lift a pause before its time (e.g. the limit was raised); False if there was none."""
    with runtime.engine.begin() as connection:
        deleted = connection.execute(outbox_pauses.delete().where(outbox_pauses.c.kind == kind))
        return deleted.rowcount > 0


# --- figures for operators ----------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    until: datetime
    reason: str | None


@dataclass
class KindFigures:
    """One kind's queue. ``leased`` counts pending jobs a worker holds right now."""

    pending: int = 0
    leased: int = 0
    dead: int = 0
    oldest_pending_age_seconds: float | None = None


@dataclass
class QueueFigures:
    """Depth per kind and status, the oldest pending job's age, and the pauses in force.

    Done jobs are not counted: they only grow, and counting them on every scrape would get
    slower with age while telling an operator nothing actionable.
    """

    kinds: dict[str, KindFigures] = field(default_factory=dict)
    paused: dict[str, Pause] = field(default_factory=dict)

    def total(self, status: str) -> int:
        return sum(getattr(figures, status) for figures in self.kinds.values())

    @property
    def oldest_pending_age_seconds(self) -> float | None:
        ages = [f.oldest_pending_age_seconds for f in self.kinds.values()]
        known = [age for age in ages if age is not None]
        return max(known) if known else None


def queue_figures(runtime: Runtime) -> QueueFigures:
    """Read the queue's figures in one consistent, read-only transaction."""
    now = runtime.clock()
    figures = QueueFigures()
    jobs = outbox_jobs.c
    counts = (
        select(jobs.kind, jobs.status, func.count(), func.min(jobs.created_at))
        .where(jobs.status.in_([PENDING, DEAD]))
        .group_by(jobs.kind, jobs.status)
    )
    leased = (
        select(jobs.kind, func.count())
        .where(jobs.status == PENDING, jobs.leased_by.is_not(None), jobs.due_at > now)
        .group_by(jobs.kind)
    )
    pauses = select(outbox_pauses).where(outbox_pauses.c.until > now)
    with _read_only(runtime) as connection:
        for kind, status, count, oldest in connection.execute(counts):
            kind_figures = figures.kinds.setdefault(kind, KindFigures())
            setattr(kind_figures, status, count)
            if status == PENDING:
                kind_figures.oldest_pending_age_seconds = max(0.0, (now - oldest).total_seconds())
        for kind, count in connection.execute(leased):
            figures.kinds.setdefault(kind, KindFigures()).leased = count
        for row in connection.execute(pauses):
            figures.paused[row.kind] = Pause(row.until, row.reason)
    return figures


@dataclass
class Waiting:
    """Why one kind's pending jobs are not done yet: due now (a worker should take them),
    waiting out a backoff after an error, or held by a worker's lease right now."""

    due_now: int = 0
    backing_off: int = 0
    leased: int = 0
    next_due_at: datetime | None = None
    last_error: str | None = None


def waiting(runtime: Runtime) -> dict[str, Waiting]:
    """Per kind, the pending jobs by why they wait, with the latest error seen."""
    now = runtime.clock()
    jobs = outbox_jobs.c
    stmt = select(jobs.kind, jobs.due_at, jobs.leased_by, jobs.last_error, jobs.updated_at).where(
        jobs.status == PENDING
    )
    found: dict[str, Waiting] = {}
    latest: dict[str, datetime] = {}
    with _read_only(runtime) as connection:
        for kind, due_at, leased_by, last_error, updated_at in connection.execute(stmt):
            entry = found.setdefault(kind, Waiting())
            if due_at <= now:
                entry.due_now += 1
            elif leased_by is not None:
                entry.leased += 1
            else:
                entry.backing_off += 1
                if entry.next_due_at is None or due_at < entry.next_due_at:
                    entry.next_due_at = due_at
            if last_error and (kind not in latest or updated_at > latest[kind]):
                latest[kind] = updated_at
                entry.last_error = last_error
    return found


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    key: str
    status: str
    attempts: int
    due_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime


def dead_jobs(runtime: Runtime, *, limit: int = 50) -> list[JobView]:
    """The most recently dead jobs first, with their last error."""
    return _jobs(runtime, outbox_jobs.c.status == DEAD, limit=limit)


def get_job(runtime: Runtime, job_id: int) -> JobView | None:
    found = _jobs(runtime, outbox_jobs.c.id == job_id, limit=1)
    return found[0] if found else None


def _jobs(runtime: Runtime, condition: Any, *, limit: int) -> list[JobView]:
    jobs = outbox_jobs.c
    stmt = (
        select(
            jobs.id,
            jobs.kind,
            jobs.key,
            jobs.status,
            jobs.attempts,
            jobs.due_at,
            jobs.last_error,
            jobs.created_at,
            jobs.updated_at,
        )
        .where(condition)
        .order_by(jobs.updated_at.desc(), jobs.id.desc())
        .limit(limit)
    )
    with _read_only(runtime) as connection:
        return [JobView(**row._mapping) for row in connection.execute(stmt)]


# --- plumbing -----------------------------------------------------------------------------------


def _connection_of(target: object) -> Connection:
    """The connection of a ``Connection``, a repository, or a unit of work (its repositories all
    share the transaction's connection)."""
    if isinstance(target, Connection):
        return target
    for holder in (target, getattr(target, "stock", None)):
        connection = getattr(holder, "connection", None)
        if isinstance(connection, Connection):
            return connection
    raise TypeError(f"enqueue needs a Connection or a unit of work, got {type(target).__name__}")


@contextmanager
def _read_only(runtime: Runtime) -> Iterator[Connection]:
    """A read-only transaction (on SQLite a deferred one, which does not queue behind writers)."""
    with runtime.engine.connect() as connection:
        connection = connection.execution_options(**{READ_ONLY: True})
        with connection.begin():
            yield connection
