"""The stock publisher's rows over SQL: the dirty SKUs it may take, the ledger and variants it
reads, and the metafields it wrote (``shopify_stock_metafields``); ``PublicationStore``.

Transactions are its own and short (the publisher runs in the worker, outside any unit of work):
a claim, a snapshot read (REPEATABLE READ on PostgreSQL, so a SKU's figures and holds come from
one instant), and a finish that records the writes and compare-and-clears the marks. Lock order
in the finish: the variant and metafield rows, then the marks in SKU order (a webhook locks a
variant row before the marks it writes at commit, so the two never wait in a cycle).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    union,
)

from ..db.dialect import insert
from ..db.engine import READ_ONLY
from ..stock import dirty
from ..stock.dirty import Cleared, Mark
from ..stock.tables import dirty_skus, holds, skus
from .ports import RoundOutcome, SkuSnapshot, VariantRef
from .stock_metafield import MAX_HOLD_ENTRIES, HoldEntries
from .tables import carts, stock_metafields, variants


def _carried() -> ColumnElement[bool]:
    return exists().where(variants.c.sku == dirty_skus.c.sku)


def _recorded() -> ColumnElement[bool]:
    return exists().where(stock_metafields.c.sku == dirty_skus.c.sku)


def _tracked() -> ColumnElement[bool]:
    return exists().where(skus.c.sku == dirty_skus.c.sku)


def publishable() -> ColumnElement[bool]:
    """A mark the publisher can act on: a variant carries the SKU, or one did (its metafield may
    have to go), or the SKU is not tracked (nothing to write: the mark is cleared). A tracked
    SKU no variant is known for waits until a payload maps one."""
    return or_(_carried(), _recorded(), not_(_tracked()))


def waiting_for_variant() -> ColumnElement[bool]:
    return and_(_tracked(), not_(_carried()), not_(_recorded()))


@dataclass(frozen=True)
class PublishFigures:
    """The publisher's state, for ``/metrics`` and ``flask shopify enforce status``."""

    backlog: dirty.Backlog
    waiting_for_variant: int
    variants_published: int
    last_published_at: datetime | None
    last_lag_seconds: float | None
    #: Lags of the writes of the last 15 minutes, sorted (p50/p99 for the status command).
    recent_lags: list[float]


class SqlPublicationStore:
    def __init__(self, engine: Engine, *, min_interval: timedelta, lease: timedelta) -> None:
        self.engine = engine
        self.min_interval = min_interval
        self.lease = lease

    # --- PublicationStore --------------------------------------------------------------------

    def claim(self, now: datetime, limit: int) -> list[Mark]:
        # NOT IN a set (hashed once by PostgreSQL) rather than NOT EXISTS per mark: with the
        # marks' count misestimated the latter became a nested loop over the metafields for
        # every mark (0.3 s a claim under a flash sale's load).
        recent = select(stock_metafields.c.sku).where(
            stock_metafields.c.published_at > now - self.min_interval
        )
        eligible = and_(publishable(), dirty_skus.c.sku.not_in(recent))
        with self._read() as conn:  # a read first: most polls find nothing to take
            found = conn.execute(
                select(dirty_skus.c.sku).where(dirty.due(now), eligible).limit(1)
            ).first()
        if found is None:
            return []
        with self._write() as conn:
            return dirty.claim(conn, now, limit=limit, lease=self.lease, eligible=eligible)

    def snapshot(self, sku_list: list[str], now: datetime) -> dict[str, SkuSnapshot]:
        found = {sku: SkuSnapshot(sku, None) for sku in sku_list}
        m, v = stock_metafields, variants
        entries = _hold_entries(sku_list, now)
        moved = (
            select(m.c.shop, m.c.variant_id, m.c.sku)
            .join(v, and_(v.c.shop == m.c.shop, v.c.variant_id == m.c.variant_id))
            .where(
                m.c.sku.in_(sku_list),
                v.c.sku != m.c.sku,
                exists().where(skus.c.sku == v.c.sku),
            )
        )
        figures = select(skus.c.sku, skus.c.on_hand, skus.c.reserved, skus.c.committed)
        with self._snapshot() as conn:  # one snapshot: the figures and the holds agree
            for level in conn.execute(figures.where(skus.c.sku.in_(sku_list))):
                found[level.sku].figures = (
                    int(level.on_hand),
                    int(level.reserved),
                    int(level.committed),
                )
            for entry in conn.execute(entries):
                found[entry.sku].entries = HoldEntries(
                    _units_of(entry.units), entry.next_expiry, int(entry.line_count)
                )
            carrying = select(v.c.shop, v.c.variant_id, v.c.sku).where(v.c.sku.in_(sku_list))
            for variant in conn.execute(carrying):
                found[variant.sku].variants.append(
                    VariantRef(variant.shop, int(variant.variant_id))
                )
            written = select(m.c.shop, m.c.variant_id, m.c.sku, m.c.value).where(
                m.c.sku.in_(sku_list)
            )
            for record in conn.execute(written):
                ref = VariantRef(record.shop, int(record.variant_id))
                found[record.sku].published[ref] = record.value
            for other in conn.execute(moved):
                found[other.sku].moved.add(VariantRef(other.shop, int(other.variant_id)))
        return found

    def finish(self, outcome: RoundOutcome, now: datetime) -> list[Cleared]:
        with self._write() as conn:
            written = [
                {
                    "shop": w.variant.shop,
                    "variant_id": w.variant.variant_id,
                    "sku": w.sku,
                    "value": w.value,
                    "published_at": now,
                    "lag_seconds": w.lag_seconds,
                }
                for w in sorted(outcome.written, key=lambda w: w.variant)
            ]
            if written:  # executemany: one compiled (cached) statement, whatever the count
                stmt = insert(conn, stock_metafields)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["shop", "variant_id"],
                        set_={
                            k: stmt.excluded[k]
                            for k in ("sku", "value", "published_at", "lag_seconds")
                        },
                    ),
                    written,
                )
            for variant in sorted({*outcome.deleted, *outcome.forgotten}):
                conn.execute(delete(stock_metafields).where(*_is(stock_metafields, variant)))
            for variant in sorted(set(outcome.forgotten)):
                conn.execute(delete(variants).where(*_is(variants, variant)))
            # The marks last (a webhook locks a variant row before its marks), in SKU order.
            dirty.lock(conn, [m.sku for m, _ in (*outcome.done, *outcome.retry)])
            cleared = dirty.clear(
                conn, sorted(outcome.done, key=lambda d: d[0].sku), read_at=outcome.read_at, now=now
            )
            dirty.release(conn, sorted(outcome.retry, key=lambda r: r[0].sku))
        return list(cleared.values())

    # --- reconciliation and figures ----------------------------------------------------------

    def reconcile(self, now: datetime) -> int:
        """Mark every SKU whose published metafields do not match the variants as they are now:
        a tracked SKU's variant with nothing written for it (the first run, a lost write), a
        record whose variant moved or went, a record of a SKU no longer tracked. The net under
        the marks the transactions write; returns how many SKUs it marked."""
        v, m = variants, stock_metafields
        unwritten = select(v.c.sku).where(
            exists().where(skus.c.sku == v.c.sku),
            not_(
                exists().where(
                    m.c.shop == v.c.shop, m.c.variant_id == v.c.variant_id, m.c.sku == v.c.sku
                )
            ),
        )
        moved = select(m.c.sku).where(
            not_(
                exists().where(
                    v.c.shop == m.c.shop, v.c.variant_id == m.c.variant_id, v.c.sku == m.c.sku
                )
            )
        )
        untracked = select(m.c.sku).where(not_(exists().where(skus.c.sku == m.c.sku)))
        with self._write() as conn:
            found = sorted({row[0] for row in conn.execute(union(unwritten, moved, untracked))})
            already = set(
                conn.execute(select(dirty_skus.c.sku).where(dirty_skus.c.sku.in_(found))).scalars()
            )
            todo = [sku for sku in found if sku not in already]
            dirty.mark(conn, dict.fromkeys(todo, 1), now)
        return len(todo)

    def republish_all(self, now: datetime) -> int:
        """Mark every tracked SKU a variant carries (``flask shopify enforce --republish``)."""
        carried = select(variants.c.sku).where(exists().where(skus.c.sku == variants.c.sku))
        with self._write() as conn:
            found = sorted(set(conn.execute(carried.distinct()).scalars()))
            dirty.mark(conn, dict.fromkeys(found, 1), now)
        return len(found)

    def figures(self, now: datetime) -> PublishFigures:
        with self._snapshot() as conn:
            backlog, waiting = backlog_of(conn, now)
            count, last = conn.execute(
                select(func.count(), func.max(stock_metafields.c.published_at))
            ).one()
            last_lag = None
            if last is not None:
                last_lag = conn.execute(
                    select(stock_metafields.c.lag_seconds)
                    .where(stock_metafields.c.published_at == last)
                    .limit(1)
                ).scalar()
            recent = sorted(
                float(lag)
                for lag in conn.execute(
                    select(stock_metafields.c.lag_seconds)
                    .where(stock_metafields.c.published_at > now - timedelta(minutes=15))
                    .limit(100_000)
                ).scalars()
            )
        return PublishFigures(backlog, waiting, int(count), last, last_lag, recent)

    # --- transactions ------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """One statement's read: autocommit on PostgreSQL, a deferred read on SQLite."""
        with self.engine.connect() as conn:
            options: dict[str, object] = {READ_ONLY: True}
            if conn.dialect.name == "postgresql":
                options["isolation_level"] = "AUTOCOMMIT"
            conn = conn.execution_options(**options)
            with conn.begin():
                yield conn

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            options: dict[str, object] = {READ_ONLY: True}
            if conn.dialect.name == "postgresql":
                options["isolation_level"] = "REPEATABLE READ"
            conn = conn.execution_options(**options)
            with conn.begin():
                yield conn


def _hold_entries(sku_list: list[str], now: datetime) -> Select[Any]:
    """Each SKU's live holds summed per cart line id, ranked as the metafield's bound ranks them
    (stock_metafield.ranked: at checkout first, then the latest expiry, then the id), the first
    MAX_HOLD_ENTRIES of each, with the count of all, in one row per SKU: ``units`` lists them as
    ``line id:units`` (``_units_of``), with their earliest expiry. A SKU with thousands of holds
    costs one aggregate in the database, not thousands of rows here: read a row per line, a
    flash sale's 200 lines a SKU made the publisher's snapshot 64% of the worker's time."""
    reached_checkout = select(carts.c.token).where(carts.c.checkout_token.is_not(None))
    checkout = case(
        (or_(holds.c.source == "checkout", holds.c.holder.in_(reached_checkout)), 1), else_=0
    )
    line_id = func.coalesce(holds.c.line_ref, holds.c.id)
    per_line = (
        select(
            holds.c.sku,
            line_id.label("line_id"),
            func.sum(holds.c.quantity).label("units"),
            func.max(checkout).label("at_checkout"),
            func.max(holds.c.expires_at).label("latest_expiry"),
            func.min(holds.c.expires_at).label("earliest_expiry"),
        )
        .where(holds.c.sku.in_(sku_list), holds.c.status == "active", holds.c.expires_at > now)
        .group_by(holds.c.sku, line_id)
        .subquery()
    )
    order = (per_line.c.at_checkout.desc(), per_line.c.latest_expiry.desc(), per_line.c.line_id)
    ranked = select(
        per_line,
        func.row_number().over(partition_by=per_line.c.sku, order_by=order).label("position"),
        func.count().over(partition_by=per_line.c.sku).label("line_count"),
    ).subquery()
    kept = select(ranked).where(ranked.c.position <= MAX_HOLD_ENTRIES).subquery()
    pair = cast(kept.c.line_id, String) + ":" + cast(kept.c.units, String)
    return select(
        kept.c.sku,
        func.aggregate_strings(pair, ",").label("units"),
        func.min(kept.c.earliest_expiry).label("next_expiry"),
        func.max(kept.c.line_count).label("line_count"),
    ).group_by(kept.c.sku)


def _units_of(pairs: str) -> dict[str, int]:
    """``line id:units,…`` as ``_hold_entries`` aggregates them: units by the id's text (SQLite
    keeps a UUID as 32 hex digits, PostgreSQL prints it with hyphens, as ``str(uuid)`` does)."""
    units = {}
    for pair in pairs.split(","):
        line_id, _, count = pair.partition(":")
        units[line_id if len(line_id) == 36 else str(uuid.UUID(line_id))] = int(count)
    return units


def backlog_of(conn: Connection, now: datetime) -> tuple[dirty.Backlog, int]:
    """The marks the publisher can act on (and the oldest change among them), and the tracked
    SKUs waiting for a variant to be known (``/metrics`` reads these at scrape time)."""
    waiting = conn.execute(
        select(func.count()).select_from(dirty_skus).where(waiting_for_variant())
    ).scalar_one()
    return dirty.backlog(conn, now, publishable()), int(waiting)


def _is(table: Table, variant: VariantRef) -> list[ColumnElement[bool]]:
    return [table.c.shop == variant.shop, table.c.variant_id == variant.variant_id]
