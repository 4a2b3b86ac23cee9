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
calls :func:`clear`: a row goes only if its ``change_id`` is still the one claimed
(compare-and-clear), so a change made during the publish keeps it and is published next.
``clear`` may leave a follow-up due later instead (a hold's expiry), and :func:`release` gives a
mark back untouched (Shopify down: nothing is lost, only delayed).

Locks: writers lock a mark row after its SKU row, and several in SKU order; followers lock only
mark rows, always in SKU order first (:func:`lock`) before a statement changes several, and
never a SKU row while holding one, so no two transactions wait for each other in a cycle.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Uuid,
    and_,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)

from ..db.dialect import insert
from ..db.metadata import UTCDateTime
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
    # One statement with its rows as parameters (executemany, in this order): built and compiled
    # once per database, where a multi-row VALUES was compiled again for every count of rows
    # (a fifth of a cart webhook's time).
    connection.execute(_mark_statement(connection), rows)


_MARK_STATEMENTS: dict[str, Any] = {}


def _mark_statement(connection: Connection) -> Any:
    name = connection.dialect.name
    if name not in _MARK_STATEMENTS:
        stmt = insert(connection, dirty_skus)
        oldest = func.least if name == "postgresql" else func.min
        _MARK_STATEMENTS[name] = stmt.on_conflict_do_update(
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
    return _MARK_STATEMENTS[name]


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


def lock(connection: Connection, sku_list: list[str]) -> None:
    """Lock these marks in SKU order before changing several at once: a statement that deletes
    or updates many rows takes their locks in whatever order it finds them, and one taking them
    against the order a writer's upsert does would deadlock with it (PostgreSQL; SQLite's
    transaction already holds the database)."""
    if sku_list and connection.dialect.name == "postgresql":
        connection.execute(
            select(dirty_skus.c.sku)
            .where(dirty_skus.c.sku.in_(sorted(set(sku_list))))
            .order_by(dirty_skus.c.sku)
            .with_for_update()
        )


def clear(
    connection: Connection,
    published: list[tuple[Mark, datetime | None]],
    *,
    read_at: datetime,
    now: datetime,
) -> dict[str, Cleared]:
    """Compare-and-clear each published mark (its SKU published as the ledger was at
    ``read_at``); a few statements whatever the number of marks.

    With a follow-up time (the earliest expiry of the holds just published, which the function
    cannot see run out), the row is not deleted but left due then.
    """
    if not published:
        return {}
    lock(connection, [m.sku for m, _ in published])
    key = tuple_(dirty_skus.c.sku, dirty_skus.c.change_id, dirty_skus.c.claim_id)
    done: set[str] = set()
    plain = [m for m, follow_up in published if follow_up is None]
    if plain:
        unchanged = key.in_([(m.sku, m.change_id, m.claim_id) for m in plain])
        gone = connection.execute(delete(dirty_skus).where(unchanged).returning(dirty_skus.c.sku))
        done.update(gone.scalars())
    later = {m.sku: (m, follow_up) for m, follow_up in published if follow_up is not None}
    if later:
        unchanged = key.in_([(m.sku, m.change_id, m.claim_id) for m, _ in later.values()])
        due = case(
            {sku: literal(when, UTCDateTime) for sku, (_, when) in later.items()},
            value=dirty_skus.c.sku,
        )
        fresh = case({sku: literal(random_uuid(), Uuid) for sku in later}, value=dirty_skus.c.sku)
        kept = connection.execute(
            update(dirty_skus)
            .where(unchanged)
            .values(
                change_id=fresh,
                changes=0,
                first_changed_at=due,
                not_before=due,
                claim_id=None,
                claimed_until=None,
            )
            .returning(dirty_skus.c.sku)
        )
        done.update(kept.scalars())
    results = dict.fromkeys(done, Cleared.CLEARED)
    rest = [m for m, _ in published if m.sku not in done]
    # Changed during the publish: what was read at ``read_at`` is out; the rest waits.
    for claim_id in {m.claim_id for m in rest}:
        mine = [m.sku for m in rest if m.claim_id == claim_id]
        changed = connection.execute(
            update(dirty_skus)
            .where(dirty_skus.c.sku.in_(mine), dirty_skus.c.claim_id == claim_id)
            .values(claim_id=None, claimed_until=None, first_changed_at=read_at)
            .returning(dirty_skus.c.sku)
        )
        results.update(dict.fromkeys(changed.scalars(), Cleared.CHANGED))
    # Another follower holds the rest now (this one outlived its lease): what this one wrote
    # may have landed after the other's newer write, so they are published once more.
    lost = sorted(m.sku for m in rest if m.sku not in results)
    mark(connection, dict.fromkeys(lost, 1), now)
    results.update(dict.fromkeys(lost, Cleared.LOST))
    return results


def release(connection: Connection, claimed: list[tuple[Mark, datetime | None]]) -> None:
    """Give claimed marks back as they are (not published), each due again at its time."""
    lock(connection, [m.sku for m, _ in claimed])
    groups: dict[tuple[uuid.UUID, datetime | None], list[str]] = {}
    for one, not_before in claimed:
        groups.setdefault((one.claim_id, not_before), []).append(one.sku)
    for (claim_id, not_before), sku_list in groups.items():
        connection.execute(
            update(dirty_skus)
            .where(dirty_skus.c.sku.in_(sorted(sku_list)), dirty_skus.c.claim_id == claim_id)
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
