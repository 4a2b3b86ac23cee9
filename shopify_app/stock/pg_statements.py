"""The locked repository's statements on PostgreSQL, for the unit of work's pipelines
(db/pipeline.py): a holder's locks and holds in one round trip, and the flush's writes as one
set-based statement (arrays unnested), sent with the COMMIT.

They write exactly the rows the SQLAlchemy statements of repository.py write on SQLite (the
same columns, the same deltas, the same dirty marks as stock/dirty.py's ``mark``), so the
ledger's invariants and the tests that check them hold on either path.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from ..db.engine import compact_sql
from ..db.pipeline import Statement
from .domain import Hold, HoldStatus, Movement
from .fast_path import HOLDER_LOCK_SPACE

# --- a holder's locks, then its holds ---------------------------------------------------------

_LOCK_HOLDER = "SELECT pg_advisory_xact_lock(%(space)s, hashtext(%(holder)s))"

# The SKUs asked for and those of the holder's active holds, locked in SKU order (the fixed
# order: the holder first, then the SKU rows sorted). The holds are read by the next statement,
# after these locks: every change to a hold happens under its SKU's lock, so what it reads is
# current until the transaction ends (a hold the sweeper expired meanwhile reads as expired).
#
# The SKUs are gathered into one array first (``= ANY(ARRAY(…))``, an init plan) so the rows
# are found by primary key whatever the table's statistics say: a join there let the planner
# scan every SKU row of a table it had not analyzed yet.
_LOCK_SKUS = compact_sql("""
SELECT sku, on_hand, reserved, committed FROM skus
 WHERE sku = ANY(ARRAY(
         SELECT unnest(%(skus)s::text[])
          UNION SELECT sku FROM holds WHERE holder = %(holder)s AND status = %(active)s))
 ORDER BY sku FOR UPDATE
""")

# Its columns are HoldRow's.
_HOLDS_OF = compact_sql("""
SELECT id, sku, quantity, holder, source, status, created_at, expires_at, order_ref, listed_at,
       line_ref
  FROM holds
 WHERE holder = %(holder)s AND status = %(active)s
 ORDER BY created_at, id
""")


def lock_holder(holder: str) -> Statement:
    """The holder's transaction-scoped advisory lock (repository.py ``lock_holder``)."""
    return Statement(_LOCK_HOLDER, {"space": HOLDER_LOCK_SPACE, "holder": holder})


def lock_for_holder(holder: str, skus: Iterable[str]) -> list[Statement]:
    """The holder's advisory lock, the SKU rows (``skus`` and those of its active holds), then
    its active holds: three statements, one round trip."""
    params = {"holder": holder, "skus": sorted(set(skus)), "active": HoldStatus.ACTIVE.value}
    return [lock_holder(holder), Statement(_LOCK_SKUS, params), Statement(_HOLDS_OF, params)]


# --- the flush ----------------------------------------------------------------------------------

# Every write of a transaction's flush in one statement, one data-modifying CTE per table (their
# arrays may be empty): the new holds, the holds changed (written only if their status is still
# the one read, as repository.py's _UPDATE_HOLD), the counters (deltas, not absolute values:
# the rows are locked, and a delta never overwrites a change this transaction did not see), the
# movements, and the dirty marks in SKU order (stock/dirty.py's ``mark``). The CTEs touch
# disjoint rows, so the order PostgreSQL runs them in changes nothing; the SKU rows are locked
# already, so the only rows it can wait for are mark rows, taken in the order every writer
# takes them. One text for every flush: prepared once per connection.
_FLUSH = compact_sql("""
WITH new_holds AS (
    INSERT INTO holds (id, sku, quantity, holder, source, status, created_at, expires_at,
                       order_ref, listed_at, line_ref, updated_at)
    SELECT *, %(now)s FROM unnest(
        %(h_ids)s::uuid[], %(h_skus)s::text[], %(h_quantities)s::int[], %(h_holders)s::text[],
        %(h_sources)s::text[], %(h_statuses)s::text[], %(h_created)s::timestamptz[],
        %(h_expires)s::timestamptz[], %(h_order_refs)s::text[], %(h_listed)s::timestamptz[],
        %(h_lines)s::uuid[])
), changed_holds AS (
    UPDATE holds
       SET status = v.status, order_ref = v.order_ref, expires_at = v.expires_at,
           listed_at = v.listed_at, quantity = v.quantity, updated_at = %(now)s
      FROM unnest(%(c_ids)s::uuid[], %(c_was)s::text[], %(c_statuses)s::text[],
                  %(c_order_refs)s::text[], %(c_expires)s::timestamptz[],
                  %(c_listed)s::timestamptz[], %(c_quantities)s::int[])
           AS v(id, was, status, order_ref, expires_at, listed_at, quantity)
     WHERE holds.id = v.id AND holds.status = v.was
), counters AS (
    UPDATE skus
       SET on_hand = skus.on_hand + v.on_hand, reserved = skus.reserved + v.reserved,
           committed = skus.committed + v.committed,
           external_on_hand = skus.external_on_hand + v.external, updated_at = %(now)s
      FROM unnest(%(s_skus)s::text[], %(s_on_hand)s::bigint[], %(s_reserved)s::bigint[],
                  %(s_committed)s::bigint[], %(s_external)s::bigint[])
           AS v(sku, on_hand, reserved, committed, external)
     WHERE skus.sku = v.sku
), movements AS (
    INSERT INTO stock_movements (sku, reason, reference, on_hand_delta, reserved_delta,
                                 committed_delta, created_at)
    SELECT *, %(now)s FROM unnest(%(m_skus)s::text[], %(m_reasons)s::text[],
                                  %(m_references)s::text[], %(m_on_hand)s::bigint[],
                                  %(m_reserved)s::bigint[], %(m_committed)s::bigint[])
)
INSERT INTO dirty_skus (sku, change_id, changes, first_changed_at)
SELECT sku, gen_random_uuid(), changes, %(now)s
  FROM unnest(%(d_skus)s::text[], %(d_changes)s::int[]) AS d(sku, changes) ORDER BY sku
ON CONFLICT (sku) DO UPDATE
   SET change_id = EXCLUDED.change_id,
       changes = dirty_skus.changes + EXCLUDED.changes,
       not_before = NULL,
       first_changed_at = LEAST(dirty_skus.first_changed_at, EXCLUDED.first_changed_at)
""")


#: One SKU's summed deltas: (sku, on_hand, reserved, committed, external_on_hand).
Deltas = tuple[str, int, int, int, int]


def flush(
    new: list[Hold],
    changed: list[tuple[Hold, HoldStatus]],
    deltas: list[Deltas],
    movements: list[Movement],
    marks: Mapping[str, int],
    now: datetime,
) -> Statement:
    """The flush's statement: the ``new`` holds, the ``changed`` ones (each with the status it
    was read with), the counters' ``deltas``, the ``movements`` and the dirty marks (SKU → how
    many changes)."""
    marked = sorted(marks)
    return Statement(
        _FLUSH,
        {
            "now": now,
            "h_ids": [h.id for h in new],
            "h_skus": [h.sku for h in new],
            "h_quantities": [h.quantity for h in new],
            "h_holders": [h.holder for h in new],
            "h_sources": [h.source.value for h in new],
            "h_statuses": [h.status.value for h in new],
            "h_created": [h.created_at for h in new],
            "h_expires": [h.expires_at for h in new],
            "h_order_refs": [h.order_ref for h in new],
            "h_listed": [h.listed_at for h in new],
            "h_lines": [h.line_ref for h in new],
            "c_ids": [h.id for h, _ in changed],
            "c_was": [was.value for _, was in changed],
            "c_statuses": [h.status.value for h, _ in changed],
            "c_order_refs": [h.order_ref for h, _ in changed],
            "c_expires": [h.expires_at for h, _ in changed],
            "c_listed": [h.listed_at for h, _ in changed],
            "c_quantities": [h.quantity for h, _ in changed],
            "s_skus": [d[0] for d in deltas],
            "s_on_hand": [d[1] for d in deltas],
            "s_reserved": [d[2] for d in deltas],
            "s_committed": [d[3] for d in deltas],
            "s_external": [d[4] for d in deltas],
            "m_skus": [m.sku for m in movements],
            "m_reasons": [m.reason.value for m in movements],
            "m_references": [m.reference for m in movements],
            "m_on_hand": [m.on_hand for m in movements],
            "m_reserved": [m.reserved for m in movements],
            "m_committed": [m.committed for m in movements],
            "d_skus": marked,
            "d_changes": [max(1, marks[sku]) for sku in marked],
        },
    )


class HoldRow(NamedTuple):
    """A row read by ``_HOLDS_OF``, its columns by name."""

    id: uuid.UUID
    sku: str
    quantity: int
    holder: str | None
    source: str
    status: str
    created_at: datetime
    expires_at: datetime
    order_ref: str | None
    listed_at: datetime | None
    line_ref: uuid.UUID | None
