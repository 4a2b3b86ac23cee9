"""The dirty-SKU queue: which SKUs changed since their followers last published them.

Writers mark, in the transaction that changes the SKU, so a change is marked if and only if it
commits: the repository's ``flush`` calls :func:`mark` for every SKU whose figures or holds
moved, and the fast path's single statements (stock/fast_path.py) carry the same upsert as a
CTE over the SKU rows they updated. A mark is one row
per SKU with a fresh random ``change_id`` per change; many changes between two publishes share
the row (``changes`` counts them), so a burst costs one publish.

A follower (the Shopify stock metafield publisher; Shopify's inventory can follow the same way,
issue 15 part 1) :func:`claim`\\ s due marks (a lease, so followers on several workers never
publish one SKU at once and a dead one hands its marks on), reads the ledger, publishes, then
calls :func:`clear`: the row goes only if its ``change_id`` is still the one claimed
(compare-and-clear), so a change made during the publish keeps it and is published next.
``clear`` may leave a follow-up due later instead (a hold's expiry), and :func:`release` gives a
mark back untouched (Shopify down: nothing is lost, only delayed).

Locks: writers lock a mark row after its SKU row; followers lock only mark rows, in sorted SKU
order, and never a SKU row while holding one, so no two transactions wait for each other in a
cycle. Marks are written in sorted order too.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, and_, delete, func, or_, select, true, update

from ..db.dialect import insert
from ..ids import random_uuid
from .tables import dirty_skus


def mark(connection: Connection, changes: Mapping[str, int], now: datetime) -> None:
    """Mark each SKU of ``changes`` (SKU → how many changes) dirty, in the caller's transaction.

    An existing mark keeps its oldest change time and gets a new ``change_id``; a follow-up
    waiting for later (``not_before``) becomes due now.
    """
    if not changes:
        return
    rows = [
        {
            "sku": sku,
            "change_id": random_uuid(),
            "changes": max(1, changes[sku]),
            "first_changed_at": now,
        }
        for sku in sorted(changes)  # sorted: two transactions lock the rows in the same order
    ]
    stmt = insert(connection, dirty_skus).values(rows)
    oldest = func.least if connection.dialect.name == "postgresql" else func.min
    connection.execute(
        stmt.on_conflict_do_update(
            index_elements=["sku"],
            set_={
                "change_id": stmt.excluded.change_id,
                "changes": dirty_skus.c.changes + stmt.excluded.changes,
                "not_before": None,
                "first_changed_at": oldest(
                    dirty_skus.c.first_changed_at, stmt.excluded.first_changed_at
                ),
            },
        )
    )


@dataclass(frozen=True)
class Mark:
    """A claimed mark: what the follower read, and the claim that lets it clear the row."""

    sku: str
    change_id: uuid.UUID
    changes: int
    first_changed_at: datetime
    claim_id: uuid.UUID


def due(now: datetime) -> ColumnElement[bool]:
    """Marks a follower may claim at ``now``: unclaimed (or their lease ran out), not waiting."""
    unclaimed = or_(dirty_skus.c.claimed_until.is_(None), dirty_skus.c.claimed_until <= now)
    return and_(unclaimed, or_(dirty_skus.c.not_before.is_(None), dirty_skus.c.not_before <= now))


def claim(
    connection: Connection,
    now: datetime,
    *,
    limit: int,
    lease: timedelta,
    eligible: ColumnElement[bool] | None = None,
) -> list[Mark]:
    """Take up to ``limit`` due marks, oldest change first, for ``lease`` (caller commits).

    ``eligible`` narrows what the follower can publish now (the publisher waits for a SKU's
    variant to be known, and publishes a variant at most once a second).
    """
    wanted = select(dirty_skus.c.sku).where(due(now), eligible if eligible is not None else true())
    chosen = [
        row.sku
        for row in connection.execute(
            wanted.order_by(dirty_skus.c.first_changed_at, dirty_skus.c.sku).limit(limit)
        )
    ]
    if not chosen:
        return []
    locked = (
        select(dirty_skus)
        .where(dirty_skus.c.sku.in_(chosen), due(now))
        .order_by(dirty_skus.c.sku)  # the lock order
    )
    if connection.dialect.name == "postgresql":
        locked = locked.with_for_update()
    rows = connection.execute(locked).all()
    if not rows:
        return []
    claim_id = random_uuid()
    connection.execute(
        update(dirty_skus)
        .where(dirty_skus.c.sku.in_([r.sku for r in rows]))
        .values(claim_id=claim_id, claimed_until=now + lease)
    )
    return [Mark(r.sku, r.change_id, r.changes, r.first_changed_at, claim_id) for r in rows]


class Cleared(enum.Enum):
    CLEARED = "cleared"  # nothing changed since the claim: the row is gone (or a follow-up)
    CHANGED = "changed"  # a change came during the publish: the row stays, due now
    LOST = "lost"  # the lease ran out and another follower claimed it: marked again


def clear(
    connection: Connection,
    claimed: Mark,
    *,
    read_at: datetime,
    now: datetime,
    follow_up: datetime | None = None,
) -> Cleared:
    """Compare-and-clear ``claimed`` once its SKU is published as the ledger was at ``read_at``.

    ``follow_up``: instead of deleting the row, leave a mark due then (the earliest expiry of the
    holds just published, which the function cannot see run out by itself).
    """
    same = and_(
        dirty_skus.c.sku == claimed.sku,
        dirty_skus.c.change_id == claimed.change_id,
        dirty_skus.c.claim_id == claimed.claim_id,
    )
    if follow_up is None:
        done = connection.execute(delete(dirty_skus).where(same))
    else:
        done = connection.execute(
            update(dirty_skus)
            .where(same)
            .values(
                change_id=random_uuid(),
                changes=0,
                first_changed_at=follow_up,
                not_before=follow_up,
                claim_id=None,
                claimed_until=None,
            )
        )
    if done.rowcount == 1:
        return Cleared.CLEARED
    # Changed during the publish: what was read at ``read_at`` is out; the rest waits.
    kept = connection.execute(
        update(dirty_skus)
        .where(dirty_skus.c.sku == claimed.sku, dirty_skus.c.claim_id == claimed.claim_id)
        .values(claim_id=None, claimed_until=None, first_changed_at=read_at)
    )
    if kept.rowcount == 1:
        return Cleared.CHANGED
    # Another follower holds it now (this one outlived its lease): what this one wrote may
    # have landed after the other's newer write, so it is published once more.
    mark(connection, {claimed.sku: 1}, now)
    return Cleared.LOST


def release(connection: Connection, claimed: Mark, *, not_before: datetime | None = None) -> None:
    """Give a claimed mark back as it is (not published), due again at ``not_before``."""
    connection.execute(
        update(dirty_skus)
        .where(dirty_skus.c.sku == claimed.sku, dirty_skus.c.claim_id == claimed.claim_id)
        .values(claim_id=None, claimed_until=None, not_before=not_before)
    )


@dataclass(frozen=True)
class Backlog:
    """The queue's size: marks due now (and the oldest unpublished change among them), marks
    waiting for a follow-up time."""

    due: int
    oldest_due_at: datetime | None
    scheduled: int


def backlog(
    connection: Connection, now: datetime, eligible: ColumnElement[bool] | None = None
) -> Backlog:
    """What ``claim`` would find due (claimed ones included: they are being published)."""
    unpublished = or_(dirty_skus.c.not_before.is_(None), dirty_skus.c.not_before <= now)
    where = and_(unpublished, eligible if eligible is not None else true())
    due, oldest = connection.execute(
        select(func.count(), func.min(dirty_skus.c.first_changed_at))
        .select_from(dirty_skus)
        .where(where)
    ).one()
    scheduled = connection.execute(
        select(func.count()).select_from(dirty_skus).where(dirty_skus.c.not_before > now)
    ).scalar_one()
    return Backlog(int(due), oldest, int(scheduled))


def age(since: datetime | None, now: datetime) -> timedelta:
    return max(timedelta(0), now - since) if since is not None else timedelta(0)
