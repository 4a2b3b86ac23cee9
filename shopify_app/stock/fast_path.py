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

Long because each statement is kept whole beside the function that runs it (the single
reservation, the batch, the capped batch with its rate counters, the set-based expiry): they
share their CTEs' shape and one reading of them explains the others.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from ..db.engine import checkout, compact_sql, discard_if_broken, execute_autocommit
from ..ratelimit import WINDOW_UPSERT, counts_in_arrival_order
from .domain import (
    SWEEP_HOLDS,
    Hold,
    HolderLimits,
    HoldSource,
    HoldStatus,
    Reason,
    new_hold_id,
)

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


def _batch_params(holds: list[Hold], now: datetime) -> dict[str, object]:
    return {
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
    rows = _pipelined(engine, [(_RESERVE_BATCH, _batch_params(holds, now))])
    return {str(row[0]) for row in rows}


def _pipelined(engine: Engine, statements: list[tuple[str, dict[str, object]]]) -> list[Any]:
    """Run ``statements`` in one explicit transaction, pipelined with BEGIN (one round trip),
    then COMMIT when the last one returned rows, else ROLLBACK; the last one's rows. Until
    COMMIT is sent nothing is held, and nothing is answered before it has returned."""
    sql, params = statements[-1]
    fairy = checkout(engine, sql, params)
    driver = fairy.driver_connection
    try:
        cursors = [driver.cursor() for _ in statements]
        try:
            with driver.pipeline():
                for cursor, (statement, values) in zip(cursors, statements, strict=True):
                    cursor.execute(statement, values, prepare=True)
            rows = cursors[-1].fetchall()
        finally:
            for cursor in cursors:
                cursor.close()
        if rows:
            driver.commit()
        else:
            driver.rollback()
        return rows
    except psycopg.Error as exc:
        discard_if_broken(engine, fairy, driver, exc)
        raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc
    finally:
        fairy.close()  # the pool rolls back whatever is still open


# --- the same, for holders under the per-cart caps (the storefront's path) ----------------------

#: First key of the holders' advisory locks (here and ``repository.lock_holder``): keeps them
#: apart from any other advisory lock an extension or a later feature may take.
HOLDER_LOCK_SPACE = 0x4A2C

# Every holder's transaction-scoped lock (repository.lock_holder's key), taken in one statement
# in key order, before any SKU row: the fixed order (holders sorted, then SKUs sorted) that the
# locked path and the cart webhooks keep too, so no two transactions wait for each other.
_LOCK_HOLDERS = """
SELECT pg_advisory_xact_lock(%(space)s, k)
  FROM (SELECT DISTINCT hashtext(h) AS k FROM unnest(%(holders)s::text[]) AS h ORDER BY 1) AS keys
"""

# The batch statement under the caps, run after the locks (its own statement, so its snapshot is
# taken once they are held: nothing of these holders can change until COMMIT).
#
# First the requests' rate counters (``ratelimit.py``'s fixed windows, ``rate_limit_counters``),
# when the caller hands them over: per key the batch's count is added in one upsert, in key
# order, and each request's count is the count before the batch plus its place among the
# batch's requests of that key (arrival order), as if each had counted alone. A request over
# one of its rates is left out of everything after (it touches no stock), and its counts still
# stand: the counters commit with the batch.
#
# Then each remaining request counts its holder's live holds and the batch's earlier requests of
# that holder, in arrival order (``HolderLimits.check``'s rule); those over a cap are left out
# (and so are those after one a cap left out, counted as if it had passed: the locked path
# decides them exactly). The rest is ``_RESERVE_BATCH``.
#
# A holder's holds are read through the holder index alone, one holder at a time (the LATERAL
# with OFFSET 0 keeps the status and expiry tests out of the scan): with statistics gathered
# before the live holds arrived (a new store's first sale; the bench's ANALYZE of a fresh
# catalog), ``status = 'active' AND expires_at > now`` inside made the planner take the active
# holds' index and read every live hold of the store for each batch (5.6 ms a batch in
# bench/run.py's proxy_spread, 1.4 ms now; tests/integration/test_plans.py).
_WANTED_UNDER_CAPS = f"""
WITH rate_asked AS (
    SELECT * FROM unnest(%(rate_n)s::int[], %(rate_keys)s::text[], %(rate_ends)s::float8[],
                         %(rate_allowed)s::int[]) AS r(n, key, ends, allowed)
), rate_totals AS (
    SELECT key, count(*)::int AS amount, min(ends) AS ends FROM rate_asked GROUP BY key
), counters AS (
    INSERT INTO rate_limit_counters (key, hits, expires_at)
    SELECT key, amount, ends FROM rate_totals ORDER BY key
    {WINDOW_UPSERT}
    RETURNING key, hits, expires_at
), rate_counted AS (
    SELECT rate_asked.n, rate_asked.allowed,
           counters.hits - rate_totals.amount
           + row_number() OVER (PARTITION BY rate_asked.key ORDER BY rate_asked.n) AS hits
      FROM rate_asked JOIN counters USING (key) JOIN rate_totals USING (key)
), over_rate AS (
    SELECT DISTINCT n FROM rate_counted WHERE hits > allowed
), asked AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(skus)s::text[], %(quantities)s::int[],
                         %(holders)s::text[], %(sources)s::text[], %(expires)s::timestamptz[])
           WITH ORDINALITY AS r(id, sku, quantity, holder, source, expires_at, n)
     WHERE r.n NOT IN (SELECT n FROM over_rate)
), held AS (
    SELECT capped.holder, mine.sku, sum(mine.quantity) AS units, count(*) AS holds
      FROM unnest(%(capped)s::text[]) AS capped(holder),
           LATERAL (SELECT sku, quantity, status, expires_at FROM holds
                     WHERE holds.holder = capped.holder OFFSET 0) AS mine
     WHERE mine.status = %(active)s AND mine.expires_at > %(now)s
     GROUP BY capped.holder, mine.sku
), counted AS (
    SELECT asked.*,
           coalesce((SELECT units FROM held
                      WHERE held.holder = asked.holder AND held.sku = asked.sku), 0)
           + sum(asked.quantity) OVER (PARTITION BY asked.holder, asked.sku ORDER BY asked.n)
               AS units_after,
           coalesce((SELECT sum(holds) FROM held WHERE held.holder = asked.holder), 0)
           + count(*) OVER (PARTITION BY asked.holder ORDER BY asked.n) AS holds_after
      FROM asked
), wanted AS (
    SELECT id, sku, quantity, holder, source, expires_at
      FROM counted
     WHERE holder IS NULL
        OR ((%(max_units)s::int IS NULL OR units_after <= %(max_units)s::int)
            AND (%(max_holds)s::int IS NULL OR holds_after <= %(max_holds)s::int))
), totals AS"""  # noqa: S608 # nosec B608 - composed of constants only (ratelimit's window rule)

# The holds taken (no count), then every counter's new count and window end. On one line: at
# 4.3 kB psycopg would parse its placeholders again on every storefront batch (compact_sql).
_RESERVE_CAPPED = compact_sql(
    _WANTED_UNDER_CAPS
    + _RESERVE_BATCH.split("), totals AS", 1)[1].replace(
        "SELECT sku FROM level\n",
        "SELECT wanted.id::text, NULL::int, NULL::float8 FROM wanted JOIN level USING (sku)\n"
        "UNION ALL\n"
        "SELECT key, hits, expires_at FROM counters\n",
    )
)

#: A request's rate counters for the batch to count: (key, window seconds, hits allowed).
Counters = list[tuple[str, int, int]]
#: What the batch counted for a request: (count with this request, window's end) per counter.
Counts = list[tuple[int, float]]


def reserve_capped_batch(
    engine: Engine,
    holds: list[Hold],
    limits: HolderLimits,
    now: datetime,
    counters: list[Counters | None] | None = None,
) -> tuple[set[uuid.UUID], list[Counts | None]]:
    """``reserve_batch`` for requests of holders under the per-holder caps: the ids of the
    holds taken, and each request's rate counts (None for one that handed over no counters).
    A hold not taken was over a rate, refused by a cap, or its SKU could not cover the batch
    (the caller judges the counts; the locked path decides the rest, and says when a cap
    frees).

    One round trip and a COMMIT, as ``reserve_batch``: BEGIN, the holders' locks and the batch
    statement are pipelined, and the statement counts the rates and checks the caps as it
    takes the stock. The holder locks make a cap exact across processes: a second request of
    the same cart on another process waits for this COMMIT, then counts this hold. A hold
    without a holder passes the caps. ``counters[i]``: the counters of ``holds[i]``'s request
    (``ratelimit.RateLimits.counting``), counted in this transaction.
    """
    rows = _pipelined(engine, capped_statements(holds, limits, now, counters))
    taken = {uuid.UUID(row[0]) for row in rows if row[1] is None}
    after = {str(row[0]): (int(row[1]), float(row[2])) for row in rows if row[1] is not None}
    keys = [None if mine is None else [key for key, _, _ in mine] for mine in counters or []]
    return taken, counts_in_arrival_order(keys or [None] * len(holds), after)


def capped_statements(
    holds: list[Hold],
    limits: HolderLimits,
    now: datetime,
    counters: list[Counters | None] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """``reserve_capped_batch``'s statements with their parameters, in order: the holders'
    locks, then the batch statement."""
    epoch = time.time()
    rate_n: list[int] = []
    rate_keys: list[str] = []
    rate_ends: list[float] = []
    rate_allowed: list[int] = []
    for n, mine in enumerate(counters or [], start=1):
        for key, window, allowed in mine or []:
            rate_n.append(n)
            rate_keys.append(key)
            rate_ends.append(epoch + window)
            rate_allowed.append(allowed)
    params = _batch_params(holds, now)
    params.update(
        space=HOLDER_LOCK_SPACE,
        capped=sorted({h.holder for h in holds if h.holder is not None}),
        max_units=limits.max_units_per_sku,
        max_holds=limits.max_active_holds,
        rate_n=rate_n,
        rate_keys=rate_keys,
        rate_ends=rate_ends,
        rate_allowed=rate_allowed,
        epoch=epoch,
    )
    locks = {"space": HOLDER_LOCK_SPACE, "holders": params["capped"]}
    return [(_LOCK_HOLDERS, locks), (_RESERVE_CAPPED, params)]


# --- the sweeper's expiry, one statement per batch of SKUs ----------------------------------

# The SKUs with due holds first (the partial index on active holds by SKU and expiry), their rows
# locked in SKU order (the fixed order: SKU rows before their holds, as every reservation and
# confirmation takes them), then the due holds of those SKUs expired (up to a bound, oldest
# first per SKU), the counters, movements and dirty marks written from what was expired: what
# the repository's flush writes for ``StockLevel.expire``, set-based, so a wave of pending
# storefront holds running out during a flash sale costs one statement per 50 SKUs or 500
# holds instead of one per hold.
_EXPIRE_DUE = """
WITH due_skus AS (
    SELECT DISTINCT sku FROM holds
     WHERE status = %(active)s AND expires_at <= %(now)s
     ORDER BY sku LIMIT %(limit)s
), locked AS (
    SELECT sku FROM skus WHERE sku IN (SELECT sku FROM due_skus) ORDER BY sku FOR UPDATE
), due AS (
    SELECT id FROM holds
     WHERE status = %(active)s AND expires_at <= %(now)s AND sku IN (SELECT sku FROM locked)
     ORDER BY sku, expires_at LIMIT %(max_holds)s
), expired AS (
    UPDATE holds SET status = %(expired)s, updated_at = %(now)s
     WHERE id IN (SELECT id FROM due) AND status = %(active)s
 RETURNING id, sku, quantity, holder, source, created_at, expires_at, listed_at, line_ref
), totals AS (
    SELECT sku, sum(quantity) AS units, count(*) AS holds FROM expired GROUP BY sku
), level AS (
    UPDATE skus SET reserved = skus.reserved - totals.units, updated_at = %(now)s
      FROM totals WHERE skus.sku = totals.sku
 RETURNING skus.sku, totals.holds
), movement AS (
    INSERT INTO stock_movements (sku, reason, reference, on_hand_delta, reserved_delta,
                                 committed_delta, created_at)
    SELECT sku, %(reason)s, id::text, 0, -quantity, 0, %(now)s FROM expired
), mark AS (
    INSERT INTO dirty_skus (sku, change_id, changes, first_changed_at)
    SELECT sku, gen_random_uuid(), holds, %(now)s FROM level ORDER BY sku
    ON CONFLICT (sku) DO UPDATE
       SET change_id = EXCLUDED.change_id,
           changes = dirty_skus.changes + EXCLUDED.changes,
           not_before = NULL,
           first_changed_at = LEAST(dirty_skus.first_changed_at, EXCLUDED.first_changed_at)
)
SELECT id, sku, quantity, holder, source, created_at, expires_at, listed_at, line_ref,
       (SELECT count(*) FROM due_skus), (SELECT count(*) FROM due)
  FROM expired
"""


def expire_due_batch(
    engine: Engine, now: datetime, limit: int, max_holds: int = SWEEP_HOLDS
) -> tuple[list[Hold], bool]:
    """Expire the due holds of up to ``limit`` SKUs, at most ``max_holds`` of them, in one
    statement (its own transaction); the holds expired, and whether there may be more due.

    ``max_holds`` bounds how long the statement keeps its SKU rows locked: a flash sale's hot
    SKU can have thousands of storefront holds running out at once, and every reservation of
    it waits while they expire; in statements of SWEEP_HOLDS (500) the reservations get
    through between them."""
    params = {
        "now": now,
        "limit": limit,
        "max_holds": max_holds,
        "active": HoldStatus.ACTIVE.value,
        "expired": HoldStatus.EXPIRED.value,
        "reason": Reason.EXPIRE.value,
    }
    rows = execute_autocommit(engine, _EXPIRE_DUE, params, all_rows=True)
    expired = [
        Hold(
            id=r[0],
            sku=str(r[1]),
            quantity=int(r[2]),
            holder=r[3],
            source=HoldSource(r[4]),
            status=HoldStatus.EXPIRED,
            created_at=r[5],
            expires_at=r[6],
            listed_at=r[7],
            line_ref=r[8],
        )
        for r in rows
    ]
    skus_seen, holds_due = (int(rows[0][9]), int(rows[0][10])) if rows else (0, 0)
    return expired, skus_seen >= limit or holds_due >= max_holds
