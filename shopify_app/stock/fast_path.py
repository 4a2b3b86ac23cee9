"""One round trip per reservation on PostgreSQL: check, decrement and hold in one statement.

(And one per stock read: ``level_of``.)

The locked path (``services.reserve`` through the repository) costs about seven round trips:
BEGIN, ``SELECT … FOR UPDATE``, the hold, the counters, the movement, COMMIT. For the common
case (one SKU, enough stock) one statement does the same work, in autocommit, as one implicit
transaction:

- ``UPDATE skus … WHERE sku = :sku AND on_hand - reserved - committed >= :quantity`` takes the
  row lock, and PostgreSQL re-checks that condition on the newest row version once the lock is
  granted (READ COMMITTED's re-evaluation), so two buyers can never both take the last unit;
- the hold and the movement are inserted from the ``UPDATE``'s ``RETURNING`` rows, so they exist
  if and only if the counters moved, and so is the SKU's dirty mark (stock/dirty.py: its
  Shopify metafield is published again), as the repository's flush writes it;
- the statement has committed when the answer arrives: the 200 is sent after the commit.

When the statement changes nothing (unknown SKU, or not enough available), the caller falls back
to the locked path, which expires due holds first (lazy expiry stays exact) and tells "sold out"
from "unknown SKU". The rows written are exactly those the repository would write: the movement
ledger, the counters and the holds agree (the property and race tests run over this path).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from ..db.engine import checkout, discard_if_broken, execute_autocommit
from .domain import Hold, HoldSource, HoldStatus, Reason, new_hold_id

# Named %(…)s parameters: psycopg prepares the statement on the server after a few executions.
_RESERVE_ONE = """
WITH level AS (
    UPDATE skus
       SET reserved = reserved + %(quantity)s, updated_at = %(now)s
     WHERE sku = %(sku)s AND on_hand - reserved - committed >= %(quantity)s
 RETURNING sku
), hold AS (
    INSERT INTO holds (id, sku, quantity, holder, source, status, order_ref,
                       created_at, expires_at, updated_at)
    SELECT %(id)s, sku, %(quantity)s, %(holder)s, %(source)s, %(active)s, NULL,
           %(now)s, %(expires_at)s, %(now)s
      FROM level
), movement AS (
    INSERT INTO stock_movements (sku, reason, reference, on_hand_delta, reserved_delta,
                                 committed_delta, created_at)
    SELECT sku, %(reason)s, %(reference)s, 0, %(quantity)s, 0, %(now)s
      FROM level
), mark AS (
    -- stock/dirty.py's mark, as the repository's flush writes it
    INSERT INTO dirty_skus (sku, change_id, changes, first_changed_at)
    SELECT sku, gen_random_uuid(), 1, %(now)s FROM level
    ON CONFLICT (sku) DO UPDATE
       SET change_id = EXCLUDED.change_id,
           changes = dirty_skus.changes + EXCLUDED.changes,
           not_before = NULL,
           first_changed_at = LEAST(dirty_skus.first_changed_at, EXCLUDED.first_changed_at)
)
SELECT count(*) FROM level
"""


def reserve_one(
    engine: Engine,
    sku: str,
    quantity: int,
    *,
    holder: str | None,
    source: HoldSource,
    now: datetime,
    ttl: timedelta,
) -> Hold | None:
    """The committed hold, or None when the statement changed nothing (use the locked path)."""
    hold_id = new_hold_id()
    params = {
        "id": hold_id,
        "sku": sku,
        "quantity": quantity,
        "holder": holder,
        "source": source.value,
        "active": HoldStatus.ACTIVE.value,
        "now": now,
        "expires_at": now + ttl,
        "reason": Reason.RESERVE.value,
        "reference": str(hold_id),
    }
    row = execute_autocommit(engine, _RESERVE_ONE, params)
    if row is None or not row[0]:
        return None
    return Hold(
        id=hold_id,
        sku=sku,
        quantity=quantity,
        holder=holder,
        source=source,
        status=HoldStatus.ACTIVE,
        created_at=now,
        expires_at=now + ttl,
    )


_LEVELS = """
SELECT sku, on_hand, reserved, committed,
       (SELECT coalesce(sum(quantity), 0) FROM holds
         WHERE holds.sku = skus.sku AND status = %(active)s AND expires_at <= %(now)s)
  FROM skus WHERE sku = ANY(%(skus)s::text[])
"""


def level_of(engine: Engine, sku: str, now: datetime) -> tuple[int, int, int, int] | None:
    """(on_hand, reserved, committed, due) of one SKU in one statement; None if unknown.
    ``due``: units of holds past their time that no sweep has expired yet."""
    return levels_of(engine, [sku], now).get(sku)


def levels_of(
    engine: Engine, skus: list[str], now: datetime
) -> dict[str, tuple[int, int, int, int]]:
    """``level_of`` for several SKUs in one statement (unknown ones are absent)."""
    params = {"skus": skus, "now": now, "active": HoldStatus.ACTIVE.value}
    rows = execute_autocommit(engine, _LEVELS, params, all_rows=True)
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}


# --- several reservations, of one SKU or several, in one transaction ---------------------------

_RESERVE_BATCH = """
WITH wanted AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(skus)s::text[], %(quantities)s::int[],
                         %(holders)s::text[], %(sources)s::text[], %(expires)s::timestamptz[])
           AS r(id, sku, quantity, holder, source, expires_at)
), totals AS (
    SELECT sku, sum(quantity) AS total, count(*) AS holds FROM wanted GROUP BY sku
), locked AS (
    SELECT sku FROM skus WHERE sku = ANY(%(distinct)s::text[]) ORDER BY sku FOR UPDATE
), level AS (
    UPDATE skus
       SET reserved = skus.reserved + totals.total, updated_at = %(now)s
      FROM totals
     WHERE skus.sku = ANY(%(distinct)s::text[])
       AND skus.sku = totals.sku
       AND skus.sku IN (SELECT sku FROM locked)
       AND skus.on_hand - skus.reserved - skus.committed >= totals.total
 RETURNING skus.sku, totals.holds
), hold AS (
    INSERT INTO holds (id, sku, quantity, holder, source, status, order_ref,
                       created_at, expires_at, updated_at)
    SELECT wanted.id, wanted.sku, wanted.quantity, wanted.holder, wanted.source, %(active)s,
           NULL, %(now)s, wanted.expires_at, %(now)s
      FROM wanted JOIN level USING (sku)
), movement AS (
    INSERT INTO stock_movements (sku, reason, reference, on_hand_delta, reserved_delta,
                                 committed_delta, created_at)
    SELECT wanted.sku, %(reason)s, wanted.id::text, 0, wanted.quantity, 0, %(now)s
      FROM wanted JOIN level USING (sku)
), mark AS (
    -- stock/dirty.py's mark, as the repository's flush writes it (sorted: the lock order)
    INSERT INTO dirty_skus (sku, change_id, changes, first_changed_at)
    SELECT sku, gen_random_uuid(), holds, %(now)s FROM level ORDER BY sku
    ON CONFLICT (sku) DO UPDATE
       SET change_id = EXCLUDED.change_id,
           changes = dirty_skus.changes + EXCLUDED.changes,
           not_before = NULL,
           first_changed_at = LEAST(dirty_skus.first_changed_at, EXCLUDED.first_changed_at)
)
SELECT sku FROM level
"""


def reserve_batch(engine: Engine, holds: list[Hold], now: datetime) -> set[str]:
    """Hold ``holds`` (prepared; any SKUs) in one transaction; the SKUs whose holds were taken.

    Per SKU all or nothing: one conditional UPDATE per SKU row takes the total of the batch's
    holds for it, so the batch never holds more than is available, and the holds and movements
    are inserted only for the SKUs it updated. The rows are locked first, in sorted SKU order,
    like every other multi-row transaction here (no deadlock). The transaction is explicit
    (BEGIN pipelined with the statement, then COMMIT): until COMMIT is sent nothing is held, so
    a process that dies after combining but before committing leaves no hold behind, and no
    request of the batch is answered before the commit has returned.
    """
    params = {
        "ids": [h.id for h in holds],
        "skus": [h.sku for h in holds],
        # The rows by primary key, never a scan of a table a flash sale keeps rewriting.
        "distinct": sorted({h.sku for h in holds}),
        "quantities": [h.quantity for h in holds],
        "holders": [h.holder for h in holds],
        "sources": [h.source.value for h in holds],
        "expires": [h.expires_at for h in holds],
        "now": now,
        "active": HoldStatus.ACTIVE.value,
        "reason": Reason.RESERVE.value,
    }
    fairy = checkout(engine, _RESERVE_BATCH, params)
    driver = fairy.driver_connection
    try:
        with driver.cursor() as cursor:
            with driver.pipeline():  # BEGIN and the statement in one round trip
                cursor.execute(_RESERVE_BATCH, params, prepare=True)
            taken = {str(row[0]) for row in cursor.fetchall()}
        if taken:
            driver.commit()
        else:
            driver.rollback()
        return taken
    except psycopg.Error as exc:
        discard_if_broken(engine, fairy, driver, exc)
        raise DBAPIError.instance(_RESERVE_BATCH, params, exc, psycopg.Error) from exc
    finally:
        fairy.close()  # the pool rolls back whatever is still open
