"""The locked stock repository: the one place where ledger rows are locked, read and written.

Locking rule (docs/architecture.md): a transaction that changes a SKU's figures or any of its holds
first locks that SKU's row, and locks several rows in sorted SKU order, so multi-line carts are
all-or-nothing and two carts never deadlock. On PostgreSQL that is ``SELECT … ORDER BY sku FOR
UPDATE``; on SQLite the transaction already began with ``BEGIN IMMEDIATE`` (db/engine.py), which
holds the database's single write lock. Because every change to a hold happens under its SKU's lock,
a hold read after that lock is taken is current.

On PostgreSQL ``flush`` only queues its writes (pg_statements.py: one set-based statement for
every table), for the unit of work to send with the COMMIT in one round trip (``take_writes``), and
``lock_for_holder`` takes a holder's locks and reads its holds in one round trip.

Long because it is the one place the ledger's rows are locked, read and written: the locking
reads, the plain reads of the admin and the audits, and the flush, each on both databases.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from ..db import pipeline
from ..db.dialect import insert_ignore
from ..db.pipeline import Statement
from ..observability.events import Event, holder_hash, logged
from . import dirty, pg_statements
from .domain import (
    FROM_OUTSIDE_SHOPIFY,
    Hold,
    HoldChange,
    HoldSource,
    HoldStatus,
    Movement,
    StockLevel,
    UnknownSku,
)
from .tables import holds, skus, stock_movements


def _hold_from_row(row: Any) -> Hold:
    return Hold(
        id=row.id,
        sku=row.sku,
        quantity=row.quantity,
        holder=row.holder,
        source=HoldSource(row.source),
        status=HoldStatus(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        order_ref=row.order_ref,
        listed_at=row.listed_at,
        line_ref=row.line_ref,
    )


#: What ``flush`` compares to find the holds a transaction changed.
_Loaded = tuple[HoldStatus, datetime, datetime | None, int]

# flush's two updates, built (and compiled) once and run with a list of rows (executemany): a
# statement built per hold and per SKU cost a cart webhook more Python time than its SQL.
_UPDATE_HOLD = (
    update(holds)
    .where(holds.c.id == bindparam("b_id"), holds.c.status == bindparam("b_was"))
    .values(
        status=bindparam("b_status"),
        order_ref=bindparam("b_order_ref"),
        expires_at=bindparam("b_expires_at"),
        listed_at=bindparam("b_listed_at"),
        quantity=bindparam("b_quantity"),
        updated_at=bindparam("b_now"),
    )
)
# Deltas, not absolute values: the row is locked anyway, and a delta can never overwrite a
# change this transaction did not see.
_ADD_TO_SKU = (
    update(skus)
    .where(skus.c.sku == bindparam("b_sku"))
    .values(
        on_hand=skus.c.on_hand + bindparam("b_on_hand"),
        reserved=skus.c.reserved + bindparam("b_reserved"),
        committed=skus.c.committed + bindparam("b_committed"),
        external_on_hand=skus.c.external_on_hand + bindparam("b_external"),
        updated_at=bindparam("b_now"),
    )
)


def _summed(level: StockLevel) -> pg_statements.Deltas:
    """The level's pending movements summed: what its row's counters move by."""
    pending = level.pending
    return (
        level.sku,
        sum(m.on_hand for m in pending),
        sum(m.reserved for m in pending),
        sum(m.committed for m in pending),
        sum(m.on_hand for m in pending if m.reason in FROM_OUTSIDE_SHOPIFY),
    )


def _loaded(hold: Hold) -> _Loaded:
    return (hold.status, hold.expires_at, hold.listed_at, hold.quantity)


class SqlStockRepository:
    """Loads ledger rows under lock and writes back what the domain changed, in one transaction."""

    def __init__(self, connection: Connection, now: datetime) -> None:
        self.connection = connection
        self.now = now
        self._row_locks = connection.dialect.name == "postgresql"
        self._writes: list[Statement] = []
        self._levels: dict[str, StockLevel] = {}
        # Each hold read, with the (status, expiry, listing, quantity) it had then: flush writes
        # what changed.
        self._holds: dict[uuid.UUID, tuple[Hold, _Loaded]] = {}
        self._new_holds: list[Hold] = []
        self._events: list[Event] = []
        # SKUs to mark dirty at flush for a reason other than their own figures (a variant now
        # carries them, so its metafield must be written): SKU -> changes.
        self._marked: dict[str, int] = {}

    # --- locking reads --------------------------------------------------------------------

    def lock(self, sku_list: Iterable[str], *, missing_ok: bool = False) -> dict[str, StockLevel]:
        """Lock the rows of ``sku_list`` in sorted order; UnknownSku if any is absent.

        With ``missing_ok`` unknown SKUs are left out instead (Shopify lines for products whose
        stock this service does not track).
        """
        wanted = sorted(set(sku_list))
        stmt = (
            select(skus.c.sku, skus.c.on_hand, skus.c.reserved, skus.c.committed)
            .where(skus.c.sku.in_(wanted))
            .order_by(skus.c.sku)
        )
        if self._row_locks:
            stmt = stmt.with_for_update()
        found = {
            row.sku: StockLevel(row.sku, row.on_hand, row.reserved, row.committed)
            for row in self.connection.execute(stmt)
        }
        missing = set(wanted) - found.keys()
        if missing and not missing_ok:
            raise UnknownSku(missing)
        self._levels.update(found)
        return found

    def lock_holder(self, holder: str) -> None:
        """Serialize this transaction with every other one of ``holder`` (the per-holder caps).

        PostgreSQL: a transaction-scoped advisory lock on the holder's hash, taken before any SKU
        row (the fixed order: holder, then SKUs sorted), so two requests of one cart on different
        SKUs, on any process, still see each other's holds. SQLite: BEGIN IMMEDIATE already runs
        one writer at a time.
        """
        if self._row_locks:
            pipeline.run(self.connection, [pg_statements.lock_holder(holder)])

    def lock_for_holder(
        self, holder: str, sku_list: Iterable[str]
    ) -> tuple[dict[str, StockLevel], list[Hold]]:
        """``lock_holder``, then the rows of ``sku_list`` and of the holder's active holds (sorted,
        those not tracked left out), then its active holds, oldest first: all current until the
        transaction ends. PostgreSQL: one round trip.

        A hold on a SKU outside those rows (a reservation of the holder that took no holder
        lock, with the caps off, committed in between) is left out, as if it came after."""
        if not self._row_locks:
            self.lock_holder(holder)
            holds = self.active_holds_of(holder)
            return self.lock({*sku_list, *(h.sku for h in holds)}, missing_ok=True), holds
        statements = pg_statements.lock_for_holder(holder, sku_list)
        _, rows, hold_rows = pipeline.run(self.connection, statements)
        found = {sku: StockLevel(sku, *figures) for sku, *figures in rows}
        self._levels.update(found)
        tracked = (self._track(_hold_from_row(pg_statements.HoldRow(*row))) for row in hold_rows)
        holds = [h for h in tracked if h.status is HoldStatus.ACTIVE and h.sku in found]
        return found, holds

    def lock_or_create(self, sku: str) -> StockLevel:
        """Lock one SKU's row, creating it with zero stock first if it does not exist yet."""
        self.connection.execute(
            insert_ignore(
                self.connection,
                skus,
                {
                    "sku": sku,
                    "on_hand": 0,
                    "reserved": 0,
                    "committed": 0,
                    "created_at": self.now,
                    "updated_at": self.now,
                },
                ["sku"],
            )
        )
        return self.lock([sku])[sku]

    def due_holds(self, sku: str) -> list[Hold]:
        """Active holds of ``sku`` whose time is up (call with the SKU locked)."""
        rows = self.connection.execute(
            select(holds)
            .where(holds.c.sku == sku, holds.c.status == "active", holds.c.expires_at <= self.now)
            .order_by(holds.c.expires_at)
        )
        tracked = (self._track(_hold_from_row(row)) for row in rows)
        return [hold for hold in tracked if hold.is_due(self.now)]

    def skus_with_due_holds(self, limit: int) -> list[str]:
        """SKUs with an active hold past its time (no lock: only a hint for the sweeper)."""
        rows = self.connection.execute(
            select(holds.c.sku)
            .where(holds.c.status == "active", holds.c.expires_at <= self.now)
            .group_by(holds.c.sku)
            .order_by(holds.c.sku)
            .limit(limit)
        )
        return [row.sku for row in rows]

    def holds_by_id(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Hold]:
        """Read holds by id. Lock their SKUs first when the result decides a change."""
        id_list = list(set(ids))
        rows = self.connection.execute(select(holds).where(holds.c.id.in_(id_list)))
        return {row.id: self._track(_hold_from_row(row)) for row in rows}

    def active_holds_of(self, holder: str) -> list[Hold]:
        """The holder's active holds, oldest first. Lock their SKUs before changing them."""
        rows = self.connection.execute(
            select(holds)
            .where(holds.c.holder == holder, holds.c.status == "active")
            .order_by(holds.c.created_at, holds.c.id)
        )
        tracked = (self._track(_hold_from_row(row)) for row in rows)
        return [hold for hold in tracked if hold.status is HoldStatus.ACTIVE]

    def holds_confirmed_for(self, holder: str, order_refs: Iterable[str]) -> list[Hold]:
        """The holder's holds already confirmed for one of ``order_refs`` (``POST
        /stock/confirm`` with the Shopify order's id or name)."""
        refs = [ref for ref in order_refs if ref]
        if not refs:
            return []
        rows = self.connection.execute(
            select(holds)
            .where(
                holds.c.holder == holder,
                holds.c.status == "confirmed",
                holds.c.order_ref.in_(refs),
            )
            .order_by(holds.c.created_at, holds.c.id)
        )
        return [_hold_from_row(row) for row in rows]

    def _track(self, hold: Hold) -> Hold:
        """The transaction's object for a hold read from a row: a hold this transaction already
        changed stays as changed (the row does not show it yet), any other is the row's state.
        Without this a hold expired earlier in the transaction read again as due was expired a
        second time (``reserved`` then fell below the active holds)."""
        known = self._holds.get(hold.id)
        if known is not None and _loaded(known[0]) != known[1]:
            return known[0]
        self._holds[hold.id] = (hold, _loaded(hold))
        return hold

    def add_hold(self, hold: Hold) -> None:
        self._new_holds.append(hold)

    def mark_changed(self, sku_list: Iterable[str]) -> None:
        """Have ``flush`` mark these SKUs dirty with the ledger's own changes (dirty.py)."""
        for sku in sku_list:
            self._marked[sku] = self._marked.get(sku, 0) + 1

    def forget_holders(self, holders: Iterable[str] | None) -> None:
        """Privacy: drop the holder (a shopper's cart token) from holds; None means every one."""
        stmt = update(holds).where(holds.c.holder.is_not(None))
        if holders is not None:
            stmt = stmt.where(holds.c.holder.in_(list(holders)))
        self.connection.execute(stmt.values(holder=None, updated_at=self.now))

    # --- plain reads (no lock) ------------------------------------------------------------

    def levels(self, sku: str | None = None) -> list[tuple[StockLevel, int]]:
        """Each SKU's row with the quantity of its holds that are due but not yet expired.

        Buyers are told the truth before the sweeper runs: such holds no longer count.
        """
        due = (
            select(func.coalesce(func.sum(holds.c.quantity), 0))
            .where(
                holds.c.sku == skus.c.sku,
                holds.c.status == "active",
                holds.c.expires_at <= self.now,
            )
            .scalar_subquery()
        )
        stmt = select(
            skus.c.sku, skus.c.on_hand, skus.c.reserved, skus.c.committed, due.label("due")
        )
        if sku is not None:
            stmt = stmt.where(skus.c.sku == sku)
        rows = self.connection.execute(stmt.order_by(skus.c.sku))
        return [
            (StockLevel(row.sku, row.on_hand, row.reserved, row.committed), int(row.due))
            for row in rows
        ]

    def movement_totals(self) -> dict[str, tuple[int, int, int]]:
        """Per SKU, the sums of the ledger's deltas (on_hand, reserved, committed)."""
        rows = self.connection.execute(
            select(
                stock_movements.c.sku,
                func.sum(stock_movements.c.on_hand_delta),
                func.sum(stock_movements.c.reserved_delta),
                func.sum(stock_movements.c.committed_delta),
            ).group_by(stock_movements.c.sku)
        )
        return {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in rows}

    def active_hold_totals(self) -> dict[str, int]:
        """Per SKU, the quantity of holds with status active (what ``reserved`` must equal)."""
        rows = self.connection.execute(
            select(holds.c.sku, func.sum(holds.c.quantity))
            .where(holds.c.status == "active")
            .group_by(holds.c.sku)
        )
        return {row[0]: int(row[1]) for row in rows}

    # --- writing back ---------------------------------------------------------------------

    def flush(self) -> None:
        """Write the new holds, the changed holds, the counters and the movements, and mark
        every SKU they touched dirty (its Shopify metafield is then published again).

        PostgreSQL: queued for the commit (``take_writes``), not sent."""
        changed = dict(self._marked)
        for level in self._levels.values():
            count = len(level.pending) + len(level.changes)
            if count:
                changed[level.sku] = changed.get(level.sku, 0) + count
        changed_holds = [
            (hold, loaded[0]) for hold, loaded in self._holds.values() if _loaded(hold) != loaded
        ]
        moved: list[StockLevel] = []
        for level in self._levels.values():
            self._events.extend(hold_events(level.changes))
            level.changes = []
            if level.pending:
                moved.append(level)
        movements = [m for level in moved for m in level.pending]
        deltas = [_summed(level) for level in moved]
        if not self._row_locks:
            self._execute(changed_holds, deltas, movements, changed)
        elif self._new_holds or changed_holds or moved or changed:
            self._writes.append(
                pg_statements.flush(
                    self._new_holds, changed_holds, deltas, movements, changed, self.now
                )
            )
        for level in moved:
            level.pending = []
        self._marked = {}
        self._new_holds = []
        self._holds = {k: (h, _loaded(h)) for k, (h, _) in self._holds.items()}

    def take_writes(self) -> list[Statement]:
        """PostgreSQL: what ``flush`` queued, for the unit of work's commit."""
        writes, self._writes = self._writes, []
        return writes

    def _execute(
        self,
        changed_holds: list[tuple[Hold, HoldStatus]],
        deltas: list[pg_statements.Deltas],
        movements: list[Movement],
        changed: dict[str, int],
    ) -> None:
        conn, now = self.connection, self.now
        if self._new_holds:
            conn.execute(
                insert(holds),
                [
                    {
                        "id": h.id,
                        "sku": h.sku,
                        "quantity": h.quantity,
                        "holder": h.holder,
                        "source": h.source.value,
                        "status": h.status.value,
                        "order_ref": h.order_ref,
                        "created_at": h.created_at,
                        "expires_at": h.expires_at,
                        "listed_at": h.listed_at,
                        "line_ref": h.line_ref,
                        "updated_at": now,
                    }
                    for h in self._new_holds
                ],
            )
        if changed_holds:
            conn.execute(
                _UPDATE_HOLD,
                [
                    {
                        "b_id": hold.id,
                        "b_was": was.value,
                        "b_status": hold.status.value,
                        "b_order_ref": hold.order_ref,
                        "b_expires_at": hold.expires_at,
                        "b_listed_at": hold.listed_at,
                        "b_quantity": hold.quantity,
                        "b_now": now,
                    }
                    for hold, was in changed_holds
                ],
            )
        if deltas:
            names = ("b_sku", "b_on_hand", "b_reserved", "b_committed", "b_external")
            rows = [{**dict(zip(names, d, strict=True)), "b_now": now} for d in deltas]
            conn.execute(_ADD_TO_SKU, rows)
            conn.execute(
                insert(stock_movements),
                [
                    {
                        "sku": m.sku,
                        "reason": m.reason.value,
                        "reference": m.reference,
                        "on_hand_delta": m.on_hand,
                        "reserved_delta": m.reserved,
                        "committed_delta": m.committed,
                        "created_at": now,
                    }
                    for m in movements
                ],
            )
        # Last: the SKU rows are locked already (and a mark row is locked after its SKU row).
        dirty.mark(conn, changed, now)

    def take_events(self) -> list[Event]:
        """The hold events of what was flushed (the unit of work emits them after commit)."""
        events, self._events = self._events, []
        return events


def _hold_fields(hold: Hold) -> dict[str, Any]:
    return {
        "reservation_id": str(hold.id),
        "sku": hold.sku,
        "quantity": hold.quantity,
        "source": hold.source.value,
        "holder_hash": holder_hash(hold.holder),
    }


def hold_events(changes: Iterable[HoldChange]) -> list[Event]:
    """The business events of holds' transitions (``reservation.created``, ``.released``,
    ``.expired``, ``.confirmed``), for the unit of work to emit after its commit."""
    events = []
    # Below LOG_LEVEL only the counters read them (events._count: the source, and whether an
    # expired hold was unlisted): a storefront wave then skips a digest and a dict per hold.
    detailed = logged()
    for change in changes:
        hold = change.hold
        fields: dict[str, Any] = _hold_fields(hold) if detailed else {"source": hold.source.value}
        if change.action == "expired" and hold.pending:
            fields["unlisted"] = True  # no cart webhook ever showed it in its cart
        elif detailed and change.action == "created":
            fields.update(expires_at=hold.expires_at.isoformat(), outcome="granted")
        elif detailed and change.action == "confirmed":
            fields["order"] = hold.order_ref
        events.append(Event(f"reservation.{change.action}", fields))
    return events
