"""The stock publisher's rows over SQL: the dirty SKUs it may take, the ledger and variants it
reads, and the metafields it wrote (``shopify_stock_metafields``); ``PublicationStore``.

Transactions are its own and short (the publisher runs in the worker, outside any unit of work):
a claim, a snapshot read (REPEATABLE READ on PostgreSQL, so a SKU's figures and holds come from
one instant), and a finish that records the writes and compare-and-clears the marks. Lock order
in the finish: the variant and metafield rows, then the marks in SKU order (a webhook locks a
variant row before the marks it writes at commit, so the two never wait in a cycle).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    union,
)

from ..db.dialect import upsert
from ..db.engine import READ_ONLY
from ..stock import dirty
from ..stock.dirty import Cleared, Mark
from ..stock.tables import dirty_skus, holds, skus
from .ports import RoundOutcome, SkuSnapshot, VariantRef
from .stock_metafield import LiveHold
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
        recent = exists().where(
            stock_metafields.c.sku == dirty_skus.c.sku,
            stock_metafields.c.published_at > now - self.min_interval,
        )
        eligible = and_(publishable(), not_(recent))
        with self._snapshot() as conn:  # a read first: most polls find nothing to take
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
        at_checkout = or_(
            holds.c.source == "checkout",
            exists().where(carts.c.token == holds.c.holder, carts.c.checkout_token.is_not(None)),
        )
        live = select(
            holds.c.sku,
            func.coalesce(holds.c.line_ref, holds.c.id).label("line_id"),
            holds.c.quantity,
            holds.c.expires_at,
            at_checkout.label("at_checkout"),
        ).where(holds.c.sku.in_(sku_list), holds.c.status == "active", holds.c.expires_at > now)
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
            for hold in conn.execute(live):
                found[hold.sku].holds.append(
                    LiveHold(
                        hold.line_id, int(hold.quantity), hold.expires_at, bool(hold.at_checkout)
                    )
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
        results: list[Cleared] = []
        with self._write() as conn:
            for written in sorted(outcome.written, key=lambda w: w.variant):
                values = {
                    "shop": written.variant.shop,
                    "variant_id": written.variant.variant_id,
                    "sku": written.sku,
                    "value": written.value,
                    "published_at": now,
                    "lag_seconds": written.lag_seconds,
                }
                conn.execute(upsert(conn, stock_metafields, values, ["shop", "variant_id"]))
            for variant in sorted({*outcome.deleted, *outcome.forgotten}):
                conn.execute(delete(stock_metafields).where(*_is(stock_metafields, variant)))
            for variant in sorted(set(outcome.forgotten)):
                conn.execute(delete(variants).where(*_is(variants, variant)))
            steps = [(m, t, True) for m, t in outcome.done]
            steps += [(m, t, False) for m, t in outcome.retry]
            for claimed, when, published in sorted(steps, key=lambda step: step[0].sku):
                if published:
                    results.append(
                        dirty.clear(conn, claimed, read_at=outcome.read_at, now=now, follow_up=when)
                    )
                else:
                    dirty.release(conn, claimed, not_before=when)
        return results

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
    def _snapshot(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            options: dict[str, object] = {READ_ONLY: True}
            if conn.dialect.name == "postgresql":
                options["isolation_level"] = "REPEATABLE READ"
            conn = conn.execution_options(**options)
            with conn.begin():
                yield conn


def backlog_of(conn: Connection, now: datetime) -> tuple[dirty.Backlog, int]:
    """The marks the publisher can act on (and the oldest change among them), and the tracked
    SKUs waiting for a variant to be known (``/metrics`` reads these at scrape time)."""
    waiting = conn.execute(
        select(func.count()).select_from(dirty_skus).where(waiting_for_variant())
    ).scalar_one()
    return dirty.backlog(conn, now, publishable()), int(waiting)


def _is(table: Table, variant: VariantRef) -> list[ColumnElement[bool]]:
    return [table.c.shop == variant.shop, table.c.variant_id == variant.variant_id]
