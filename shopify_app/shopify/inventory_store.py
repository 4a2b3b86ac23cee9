"""What Shopify's inventory follower keeps in the database (shopify/tables.py, "inventory"):
the SKU → inventory item map per shop, how far each SKU's outside changes reached Shopify,
the writes in flight, and each shop's location and last checks.

Writes are batches stored before they are sent (``open_*``), under a lease, with their
variables exactly as sent: a follower that died or lost Shopify's answer leaves the batch, and
the next one sends the same call under the same idempotency key. Rows join a batch only when
they are in none (``batch_key IS NULL``, taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL),
so followers on several workers never send one SKU's change twice under two keys.

Long because the map, the batches and the drift observations share the one row per SKU, and
each step's statements keep to the same rules (lock order, compare-and-set on the batch key).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, update

from ..db.dialect import insert
from ..ids import random_uuid
from ..stock.tables import skus
from .tables import inventory_batches, inventory_items, inventory_shops

if TYPE_CHECKING:
    from .catalog import ShopifyVariant

_CLEAR_DRIFT = {
    "drift_shopify": None,
    "drift_target": None,
    "drift_updated_at": None,
    "drift_seen_at": None,
}


@dataclass(frozen=True)
class ShopInventory:
    shop: str
    location_id: str | None
    location_name: str | None
    mapped_at: datetime | None
    variants_without_sku: int
    duplicate_skus: int
    drift_checked_at: datetime | None
    last_write_at: datetime | None
    problem: str | None


@dataclass(frozen=True)
class Batch:
    """A write stored before it is sent: ``input`` is the mutation's ``input`` as sent,
    ``skus`` the SKU of each of its entries, in order."""

    key: uuid.UUID
    shop: str
    kind: str
    input: dict[str, Any]
    skus: list[str]
    attempts: int


@dataclass(frozen=True)
class Mapped:
    """A mapped SKU and what the ledger says of it now."""

    sku: str
    item_id: str
    #: ``on_hand − committed``: what Shopify's ``available`` should be.
    target: int
    external: int
    sent_external: int


@dataclass(frozen=True)
class MapReport:
    mapped: int
    duplicate: list[str]
    untracked: list[str]
    missing: int
    without_sku: int
    remapped: list[str]


def shop_state(engine: Engine, shop: str) -> ShopInventory | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(inventory_shops).where(inventory_shops.c.shop == shop)
        ).first()
    if row is None:
        return None
    return ShopInventory(
        shop=row.shop,
        location_id=row.location_id,
        location_name=row.location_name,
        mapped_at=row.mapped_at,
        variants_without_sku=row.variants_without_sku,
        duplicate_skus=row.duplicate_skus,
        drift_checked_at=row.drift_checked_at,
        last_write_at=row.last_write_at,
        problem=row.problem,
    )


def save_shop(engine: Engine, shop: str, **values: Any) -> None:
    with engine.begin() as connection:
        _save_shop(connection, shop, values)


def set_location(engine: Engine, shop: str, location_id: str, name: str) -> bool:
    """Record the location written; a different one than before has every SKU aligned again
    (its counts there are another location's). True when it changed."""
    with engine.begin() as connection:
        before = connection.execute(
            select(inventory_shops.c.location_id).where(inventory_shops.c.shop == shop)
        ).scalar()
        _save_shop(
            connection, shop, {"location_id": location_id, "location_name": name, "problem": None}
        )
        if before is None or before == location_id:
            return before is None
        connection.execute(
            update(inventory_items)
            .where(inventory_items.c.shop == shop)
            .values(aligned_at=None, **_CLEAR_DRIFT)
        )
        return True


def _save_shop(connection: Connection, shop: str, values: Mapping[str, Any]) -> None:
    stmt = insert(connection, inventory_shops).values(shop=shop, **values)
    connection.execute(
        stmt.on_conflict_do_update(index_elements=["shop"], set_=dict(values))
        if values
        else stmt.on_conflict_do_nothing(index_elements=["shop"])
    )


# --- the map -------------------------------------------------------------------------------


def record_catalog(
    engine: Engine, shop: str, variants: Iterable[ShopifyVariant], now: datetime
) -> MapReport:
    """The whole catalog as Shopify listed it: every ledger SKU's row set from it."""
    by_sku: dict[str, list[ShopifyVariant]] = {}
    without_sku = 0
    for variant in variants:
        if variant.sku is None:
            without_sku += 1
        else:
            by_sku.setdefault(variant.sku, []).append(variant)
    with engine.begin() as connection:
        ledger = list(connection.execute(select(skus.c.sku).order_by(skus.c.sku)).scalars())
        report = _record(connection, shop, {sku: by_sku.get(sku, []) for sku in ledger}, now)
        _save_shop(
            connection,
            shop,
            {
                "mapped_at": now,
                "variants_without_sku": without_sku,
                "duplicate_skus": len(report.duplicate),
            },
        )
    return MapReport(
        report.mapped,
        report.duplicate,
        report.untracked,
        report.missing,
        without_sku,
        report.remapped,
    )


def record_sku(
    engine: Engine, shop: str, sku: str, variants: list[ShopifyVariant], now: datetime
) -> MapReport:
    """One SKU's variants, looked up by SKU (a SKU the ledger gained since the last walk)."""
    with engine.begin() as connection:
        return _record(connection, shop, {sku: [v for v in variants if v.sku == sku]}, now)


def _state_of(found: list[ShopifyVariant]) -> tuple[str, ShopifyVariant | None]:
    if not found:
        return "missing", None
    if len(found) > 1:
        return "duplicate", None
    variant = found[0]
    if variant.inventory_item_id is None:
        return "missing", None
    if variant.tracked is False:
        return "untracked", variant
    return "mapped", variant


def _record(
    connection: Connection, shop: str, found: Mapping[str, list[ShopifyVariant]], now: datetime
) -> MapReport:
    existing = {
        row.sku: row
        for row in connection.execute(
            select(inventory_items).where(
                inventory_items.c.shop == shop, inventory_items.c.sku.in_(sorted(found))
            )
        )
    }
    mapped, missing = 0, 0
    duplicate: list[str] = []
    untracked: list[str] = []
    remapped: list[str] = []
    for sku in sorted(found):
        state, variant = _state_of(found[sku])
        item = variant.inventory_item_id if variant is not None else None
        values: dict[str, Any] = {
            "state": state,
            "variant_id": variant.variant_id if variant is not None else None,
            "inventory_item_id": item,
            "variants": len(found[sku]),
            "mapped_at": now,
            "problem": None,
        }
        before = existing.get(sku)
        if state == "mapped":
            mapped += 1
            if before is None or before.inventory_item_id != item or before.state != "mapped":
                # First mapped, or moved: Shopify's count is aligned once more before deltas.
                values.update(aligned_at=None, **_CLEAR_DRIFT)
                if before is not None:
                    remapped.append(sku)
        else:
            values.update(aligned_at=None, **_CLEAR_DRIFT)
            if state == "duplicate":
                duplicate.append(sku)
                values["problem"] = f"{len(found[sku])} variants carry this SKU"
            elif state == "untracked":
                untracked.append(sku)
            else:
                missing += 1
        stmt = insert(connection, inventory_items).values(shop=shop, sku=sku, **values)
        connection.execute(stmt.on_conflict_do_update(index_elements=["shop", "sku"], set_=values))
    return MapReport(mapped, duplicate, untracked, missing, 0, remapped)


def unmapped_skus(engine: Engine, shop: str, limit: int) -> list[str]:
    """Ledger SKUs the map has no row for yet (gained since the last catalog walk)."""
    known = select(inventory_items.c.sku).where(
        inventory_items.c.shop == shop, inventory_items.c.sku == skus.c.sku
    )
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(skus.c.sku).where(~known.exists()).order_by(skus.c.sku).limit(limit)
            ).scalars()
        )


def mark_state(
    connection: Connection, shop: str, sku: str, state: str, problem: str | None
) -> None:
    connection.execute(
        update(inventory_items)
        .where(inventory_items.c.shop == shop, inventory_items.c.sku == sku)
        .values(state=state, problem=problem, aligned_at=None, **_CLEAR_DRIFT)
    )


# --- reading the rows ------------------------------------------------------------------------

_MAPPED = and_(inventory_items.c.state == "mapped", inventory_items.c.batch_key.is_(None))


def _mapped_rows(connection: Connection, shop: str, where: Any, limit: int | None) -> list[Mapped]:
    stmt = (
        select(
            inventory_items.c.sku,
            inventory_items.c.inventory_item_id,
            (skus.c.on_hand - skus.c.committed).label("target"),
            skus.c.external_on_hand,
            inventory_items.c.sent_external,
        )
        .join(skus, skus.c.sku == inventory_items.c.sku)
        .where(inventory_items.c.shop == shop, _MAPPED, where)
        .order_by(inventory_items.c.sku)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        Mapped(r.sku, r.inventory_item_id, int(r.target), int(r.external_on_hand), r.sent_external)
        for r in connection.execute(stmt)
    ]


def to_align(engine: Engine, shop: str, limit: int) -> list[Mapped]:
    """Mapped SKUs whose count was never set to the ledger's (nothing in flight for them)."""
    with engine.connect() as connection:
        return _mapped_rows(connection, shop, inventory_items.c.aligned_at.is_(None), limit)


def settled(engine: Engine, shop: str) -> list[Mapped]:
    """Aligned SKUs with nothing left to send: the ones the drift check compares."""
    where = and_(
        inventory_items.c.aligned_at.is_not(None),
        skus.c.external_on_hand == inventory_items.c.sent_external,
    )
    with engine.connect() as connection:
        return _mapped_rows(connection, shop, where, None)


# --- batches -------------------------------------------------------------------------------


def _lock_rows(connection: Connection, shop: str, where: Any, limit: int | None) -> list[Any]:
    """Rows free to join a batch, locked (PostgreSQL: the ones another follower holds are
    skipped), in SKU order, each with the ledger's figures."""
    stmt = (
        select(
            inventory_items.c.sku,
            inventory_items.c.inventory_item_id,
            inventory_items.c.sent_external,
            inventory_items.c.aligned_at,
        )
        .where(inventory_items.c.shop == shop, _MAPPED, where)
        .order_by(inventory_items.c.sku)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    if connection.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=inventory_items)
    rows = connection.execute(stmt).all()
    if not rows:
        return []
    figures = {
        r.sku: r
        for r in connection.execute(
            select(
                skus.c.sku,
                (skus.c.on_hand - skus.c.committed).label("target"),
                skus.c.external_on_hand,
            ).where(skus.c.sku.in_([r.sku for r in rows]))
        )
    }
    return [(row, figures[row.sku]) for row in rows if row.sku in figures]


def _store(
    connection: Connection,
    shop: str,
    kind: str,
    input_: dict[str, Any],
    entries: list[tuple[str, int]],
    now: datetime,
) -> Batch:
    """Store the batch and stamp its rows (SKU, the external total it brings them to)."""
    key = random_uuid()
    sku_list = [sku for sku, _ in entries]
    connection.execute(
        insert(connection, inventory_batches).values(
            key=key,
            shop=shop,
            kind=kind,
            body=json.dumps({"input": input_, "skus": sku_list}, sort_keys=True),
            attempts=0,
            created_at=now,
        )
    )
    for sku, external in entries:
        connection.execute(
            update(inventory_items)
            .where(inventory_items.c.shop == shop, inventory_items.c.sku == sku)
            .values(batch_key=key, batch_external=external)
        )
    return Batch(key, shop, kind, input_, sku_list, 0)


#: Builds a write's ``input`` from its entries (shopify/inventory_api.py knows the shape).
BuildAdjust = Callable[[list[tuple[str, str, int]]], dict[str, Any]]
BuildSet = Callable[[list[tuple[str, str, int, int | None]]], dict[str, Any]]


def open_adjust(
    engine: Engine, shop: str, build: BuildAdjust, now: datetime, limit: int
) -> Batch | None:
    """The outside changes not yet in Shopify, coalesced per SKU into one delta each (entries:
    SKU, inventory item, delta)."""

    pending = inventory_items.c.aligned_at.is_not(None) & (
        select(skus.c.external_on_hand).where(skus.c.sku == inventory_items.c.sku).scalar_subquery()
        != inventory_items.c.sent_external
    )
    with engine.begin() as connection:
        rows = _lock_rows(connection, shop, pending, limit)
        entries = [
            (row.sku, row.inventory_item_id, int(fig.external_on_hand) - row.sent_external)
            for row, fig in rows
            if int(fig.external_on_hand) != row.sent_external
        ]
        if not entries:
            return None
        externals = {row.sku: int(fig.external_on_hand) for row, fig in rows}
        input_ = build(entries)
        return _store(
            connection, shop, "adjust", input_, [(s, externals[s]) for s, _, _ in entries], now
        )


def open_set(
    engine: Engine, shop: str, kind: str, build: BuildSet, shown: Mapping[str, int], now: datetime
) -> Batch | None:
    """An absolute write of the ledger's figure for each SKU of ``shown`` (SKU → the figure
    Shopify showed, which the write expects still to find). ``align``: SKUs not aligned yet;
    ``repair``: aligned ones with nothing left to send. The ledger's figure and its external
    total are read together, so the deltas carry on exactly from what this write sets
    (entries: SKU, inventory item, the ledger's figure, the figure Shopify showed)."""
    aligned = inventory_items.c.aligned_at
    where = and_(
        aligned.is_(None) if kind == "align" else aligned.is_not(None),
        inventory_items.c.sku.in_(sorted(shown)),
    )
    with engine.begin() as connection:
        rows = _lock_rows(connection, shop, where, None)
        chosen = [
            (row, fig)
            for row, fig in rows
            if kind == "align" or int(fig.external_on_hand) == row.sent_external
        ]
        if kind == "align":
            # Shopify shows the ledger's figure already: aligned, with nothing to write.
            same = [(row, fig) for row, fig in chosen if int(fig.target) == shown[row.sku]]
            for row, fig in same:
                connection.execute(
                    update(inventory_items)
                    .where(inventory_items.c.shop == shop, inventory_items.c.sku == row.sku)
                    .values(sent_external=int(fig.external_on_hand), aligned_at=now, **_CLEAR_DRIFT)
                )
            chosen = [pair for pair in chosen if pair not in same]
        if not chosen:
            return None
        entries: list[tuple[str, str, int, int | None]] = [
            (row.sku, row.inventory_item_id, int(fig.target), shown[row.sku]) for row, fig in chosen
        ]
        input_ = build(entries)
        stamped = [(row.sku, int(fig.external_on_hand)) for row, fig in chosen]
        return _store(connection, shop, kind, input_, stamped, now)


def in_flight(engine: Engine, shop: str) -> list[Batch]:
    """Batches stored and not settled (a lost answer, an outage, a follower that died)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(inventory_batches)
            .where(inventory_batches.c.shop == shop)
            .order_by(inventory_batches.c.created_at)
        ).all()
    batches = []
    for row in rows:
        body = json.loads(row.body)
        batches.append(
            Batch(row.key, row.shop, row.kind, body["input"], body["skus"], row.attempts)
        )
    return batches


def attempted(engine: Engine, batch: Batch, error: str | None = None) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(inventory_batches)
            .where(inventory_batches.c.key == batch.key)
            .values(
                attempts=inventory_batches.c.attempts + 1,
                last_error=error[:500] if error else None,
            )
        )


def complete(engine: Engine, batch: Batch, now: datetime) -> int:
    """Shopify applied the batch: its rows are where it brought them. Returns the rows moved
    (0: another follower recorded it already)."""
    values: dict[str, Any] = {
        "sent_external": inventory_items.c.batch_external,
        "batch_key": None,
        "batch_external": None,
    }
    if batch.kind != "adjust":
        values.update(aligned_at=now, **_CLEAR_DRIFT)
    if batch.kind == "repair":
        values["repaired_at"] = now
    with engine.begin() as connection:
        moved = connection.execute(
            update(inventory_items)
            .where(inventory_items.c.shop == batch.shop, inventory_items.c.batch_key == batch.key)
            .values(**values)
        ).rowcount
        connection.execute(delete(inventory_batches).where(inventory_batches.c.key == batch.key))
        if moved:
            _save_shop(connection, batch.shop, {"last_write_at": now})
    return int(moved or 0)


def refuse(engine: Engine, batch: Batch, states: Mapping[str, tuple[str, str]]) -> None:
    """Shopify applied none of the batch: its rows are free again, those ``states`` names
    (SKU → (state, problem)) put in that state."""
    with engine.begin() as connection:
        connection.execute(
            update(inventory_items)
            .where(inventory_items.c.shop == batch.shop, inventory_items.c.batch_key == batch.key)
            .values(batch_key=None, batch_external=None)
        )
        for sku, (state, problem) in sorted(states.items()):
            mark_state(connection, batch.shop, sku, state, problem[:500])
        connection.execute(delete(inventory_batches).where(inventory_batches.c.key == batch.key))


# --- drift ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    sku: str
    shopify: int
    target: int
    #: The same difference was seen by the previous check: report and repair it.
    persisting: bool


def observe(
    engine: Engine,
    shop: str,
    seen: Mapping[str, tuple[int, str | None]],
    now: datetime,
    *,
    min_gap: timedelta,
) -> list[Drift]:
    """Compare what Shopify showed (SKU → (available, updatedAt)) with the ledger, for rows
    that are still settled. A difference is noted; found again by a later check (at least
    ``min_gap`` later) with the very same figures on both sides and Shopify's count not moved
    since, it persists. No difference clears the note."""
    drifts: list[Drift] = []
    with engine.begin() as connection:
        rows = connection.execute(
            select(
                inventory_items.c.sku,
                inventory_items.c.sent_external,
                inventory_items.c.drift_shopify,
                inventory_items.c.drift_target,
                inventory_items.c.drift_updated_at,
                inventory_items.c.drift_seen_at,
                (skus.c.on_hand - skus.c.committed).label("target"),
                skus.c.external_on_hand,
            )
            .join(skus, skus.c.sku == inventory_items.c.sku)
            .where(
                inventory_items.c.shop == shop,
                _MAPPED,
                inventory_items.c.aligned_at.is_not(None),
                inventory_items.c.sku.in_(sorted(seen)),
            )
            .order_by(inventory_items.c.sku)
        ).all()
        for row in rows:
            if int(row.external_on_hand) != row.sent_external:
                continue  # a delta is due: not settled
            shopify, updated_at = seen[row.sku]
            target = int(row.target)
            where = and_(inventory_items.c.shop == shop, inventory_items.c.sku == row.sku)
            if shopify == target:
                if row.drift_seen_at is not None:
                    connection.execute(update(inventory_items).where(where).values(_CLEAR_DRIFT))
                continue
            same = (
                row.drift_seen_at is not None
                and row.drift_shopify == shopify
                and row.drift_target == target
                and row.drift_updated_at == updated_at
            )
            if same and now - row.drift_seen_at >= min_gap:
                drifts.append(Drift(row.sku, shopify, target, persisting=True))
                continue
            if not same:
                connection.execute(
                    update(inventory_items)
                    .where(where)
                    .values(
                        drift_shopify=shopify,
                        drift_target=target,
                        drift_updated_at=updated_at,
                        drift_seen_at=now,
                    )
                )
            drifts.append(Drift(row.sku, shopify, target, persisting=False))
        _save_shop(connection, shop, {"drift_checked_at": now})
    return drifts


# --- the status ----------------------------------------------------------------------------


def counts(engine: Engine, shop: str) -> dict[str, int]:
    """Rows per state, plus ``pending`` (mapped SKUs with an outside change not yet sent or a
    write in flight), ``unaligned`` and ``drifting`` (a difference noted)."""
    with engine.connect() as connection:
        found = {
            state: int(n)
            for state, n in connection.execute(
                select(inventory_items.c.state, func.count())
                .where(inventory_items.c.shop == shop)
                .group_by(inventory_items.c.state)
            )
        }
        pending = connection.execute(
            select(func.count())
            .select_from(inventory_items.join(skus, skus.c.sku == inventory_items.c.sku))
            .where(
                inventory_items.c.shop == shop,
                inventory_items.c.state == "mapped",
                or_(
                    inventory_items.c.batch_key.is_not(None),
                    skus.c.external_on_hand != inventory_items.c.sent_external,
                ),
            )
        ).scalar_one()
        unaligned = connection.execute(
            select(func.count()).where(
                inventory_items.c.shop == shop,
                inventory_items.c.state == "mapped",
                inventory_items.c.aligned_at.is_(None),
            )
        ).scalar_one()
        drifting = connection.execute(
            select(func.count()).where(
                inventory_items.c.shop == shop, inventory_items.c.drift_seen_at.is_not(None)
            )
        ).scalar_one()
    return {
        **found,
        "pending": int(pending),
        "unaligned": int(unaligned),
        "drifting": int(drifting),
    }


def problems(engine: Engine, shop: str, limit: int = 20) -> list[tuple[str, str, str | None]]:
    """SKUs the follower does not write, with why: (SKU, state, problem)."""
    with engine.connect() as connection:
        return [
            (r.sku, r.state, r.problem)
            for r in connection.execute(
                select(inventory_items.c.sku, inventory_items.c.state, inventory_items.c.problem)
                .where(inventory_items.c.shop == shop, inventory_items.c.state != "mapped")
                .order_by(inventory_items.c.state, inventory_items.c.sku)
                .limit(limit)
            )
        ]
