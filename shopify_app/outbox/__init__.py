"""The transactional outbox: work for other systems, written with the change that needs it.

Write a job in the caller's transaction with ``enqueue``; the worker's relay (``relay.run_due``)
runs it later through the handler ``register``-ed for its kind, with backoff, a dead letter and
pauses. The outbox is generic: it knows nothing of Bling, whose jobs register themselves.

    from shopify_app import outbox

    outbox.register("bling.forward_order", forward_order, policy=outbox.JobPolicy(lease_seconds=90))
    ...
    outbox.enqueue(uow, "bling.forward_order", f"{shop}:{order_id}", {...}, now=uow.now)

Handlers must be idempotent: a job runs at least once (see ``registry.py``).
"""

from __future__ import annotations

from .registry import (
    DEFAULT_POLICY,
    Handler,
    JobPolicy,
    PauseKind,
    PermanentFailure,
    Registry,
    RetryLater,
    default_registry,
    register,
    unregister,
)
from .relay import ClaimedJob, claim, default_worker_id, run_claimed, run_due
from .service import (
    DEAD,
    DONE,
    PENDING,
    JobView,
    KindFigures,
    Pause,
    QueueFigures,
    dead_jobs,
    enqueue,
    get_job,
    pause_kind,
    queue_figures,
    resume_kind,
    retry_dead,
)

__all__ = [
    "DEAD",
    "DEFAULT_POLICY",
    "DONE",
    "PENDING",
    "ClaimedJob",
    "Handler",
    "JobPolicy",
    "JobView",
    "KindFigures",
    "Pause",
    "PauseKind",
    "PermanentFailure",
    "QueueFigures",
    "Registry",
    "RetryLater",
    "claim",
    "dead_jobs",
    "default_registry",
    "default_worker_id",
    "enqueue",
    "get_job",
    "pause_kind",
    "queue_figures",
    "register",
    "resume_kind",
    "retry_dead",
    "run_claimed",
    "run_due",
    "unregister",
]
