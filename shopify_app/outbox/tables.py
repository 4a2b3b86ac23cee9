"""The outbox's tables (SQLAlchemy Core). Alembic migrations must match these exactly.

``outbox_jobs`` holds one row per piece of work to do outside the database (e.g. "forward order
123 to Bling"), written in the same transaction as the change that needs it. ``due_at`` is both
the schedule and the lease: a claim moves it to ``now + lease``, so a job whose worker died becomes
due again by itself when the lease runs out.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from ..db.metadata import UTCDateTime, metadata

KIND = String(64)
#: last_error is kept short: it is for an operator's eye, the full traceback is in the logs.
ERROR_LENGTH = 500

outbox_jobs = Table(
    "outbox_jobs",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("kind", KIND, nullable=False),
    # Idempotency of enqueue: the same (kind, key) is one job, however often it is enqueued.
    Column("key", String(255), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("due_at", UTCDateTime, nullable=False),
    # Which worker claimed it last (for operators); meaningful while due_at is in the future.
    Column("leased_by", String(128), nullable=True),
    Column("last_error", String(ERROR_LENGTH), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("done_at", UTCDateTime, nullable=True),
    UniqueConstraint("kind", "key"),
    CheckConstraint("status IN ('pending', 'done', 'dead')", name="status_known"),
    CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    # The claim: pending rows in due order.
    Index("ix_outbox_jobs_status_due_at", "status", "due_at"),
)

# A whole kind can wait (e.g. Bling's per-day request limit is spent): its jobs are not claimed
# before ``until``, and no attempts are spent meanwhile.
outbox_pauses = Table(
    "outbox_pauses",
    metadata,
    Column("kind", KIND, primary_key=True),
    Column("until", UTCDateTime, nullable=False),
    Column("reason", String(ERROR_LENGTH), nullable=True),
)
