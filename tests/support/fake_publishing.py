"""In-memory ports of the stock publisher (shopify/publishing.py): the dirty SKUs with the same
compare-and-clear rules as stock/dirty.py, the ledger and variants it reads, and a Shopify that
writes metafields, throttles, goes down and refuses entries on cue. The SQL store and the real
Shopify stand-in are tested against the same scenarios in tests/integration/test_publisher.py.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shopify_app.shopify import client
from shopify_app.shopify.ports import RoundOutcome, SetAnswer, SkuSnapshot, VariantRef
from shopify_app.shopify.stock_metafield import HoldEntries, LiveHold, hold_lines
from shopify_app.stock.dirty import Cleared, Mark


@dataclass
class FakeMark:
    change_id: uuid.UUID
    changes: int
    first_changed_at: datetime
    not_before: datetime | None = None
    claim_id: uuid.UUID | None = None
    claimed_until: datetime | None = None


@dataclass
class Record:
    sku: str
    value: str
    published_at: datetime
    lag_seconds: float


@dataclass
class FakePublicationStore:
    """The database side. ``change(sku)`` is what a ledger transaction does (mark the SKU)."""

    min_interval: timedelta = timedelta(seconds=1)
    lease: timedelta = timedelta(seconds=60)
    marks: dict[str, FakeMark] = field(default_factory=dict)
    figures: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    holds: dict[str, list[LiveHold]] = field(default_factory=dict)
    variants: dict[VariantRef, str] = field(default_factory=dict)
    records: dict[VariantRef, Record] = field(default_factory=dict)
    #: Called after each snapshot is read: a change "during the publish".
    after_snapshot: Callable[[], None] | None = None

    # --- what writers do ---------------------------------------------------------------------

    def change(self, sku: str, now: datetime, count: int = 1) -> None:
        found = self.marks.get(sku)
        if found is None:
            self.marks[sku] = FakeMark(uuid.uuid4(), count, now)
        else:
            found.change_id = uuid.uuid4()
            found.changes += count
            found.not_before = None
            found.first_changed_at = min(found.first_changed_at, now)

    # --- PublicationStore --------------------------------------------------------------------

    def _publishable(self, sku: str) -> bool:
        carried = any(s == sku for s in self.variants.values())
        recorded = any(r.sku == sku for r in self.records.values())
        return carried or recorded or sku not in self.figures

    def _due(self, mark: FakeMark, now: datetime) -> bool:
        unclaimed = mark.claimed_until is None or mark.claimed_until <= now
        return unclaimed and (mark.not_before is None or mark.not_before <= now)

    def claim(self, now: datetime, limit: int) -> list[Mark]:
        recent = {r.sku for r in self.records.values() if r.published_at > now - self.min_interval}
        chosen = sorted(
            (
                (m.first_changed_at, sku)
                for sku, m in self.marks.items()
                if self._due(m, now) and self._publishable(sku) and sku not in recent
            )
        )[:limit]
        claim_id = uuid.uuid4()
        claimed = []
        for _, sku in sorted(chosen, key=lambda pair: pair[1]):
            mark = self.marks[sku]
            mark.claim_id, mark.claimed_until = claim_id, now + self.lease
            claimed.append(Mark(sku, mark.change_id, mark.changes, mark.first_changed_at, claim_id))
        return claimed

    def snapshot(self, skus: list[str], now: datetime) -> dict[str, SkuSnapshot]:
        found = {}
        for sku in skus:
            published = {v: r.value for v, r in self.records.items() if r.sku == sku}
            moved = {
                v
                for v in published
                if self.variants.get(v) not in (None, sku) and self.variants[v] in self.figures
            }
            lines = hold_lines(self.holds.get(sku, []), now)
            found[sku] = SkuSnapshot(
                sku,
                self.figures.get(sku),
                HoldEntries.of(lines),
                sorted(v for v, s in self.variants.items() if s == sku),
                published,
                moved,
            )
        if self.after_snapshot is not None:
            self.after_snapshot()
        return found

    def finish(self, outcome: RoundOutcome, now: datetime) -> list[Cleared]:
        for written in outcome.written:
            self.records[written.variant] = Record(
                written.sku, written.value, now, written.lag_seconds
            )
        for variant in {*outcome.deleted, *outcome.forgotten}:
            self.records.pop(variant, None)
        for variant in outcome.forgotten:
            self.variants.pop(variant, None)
        results = []
        for claimed, follow_up in outcome.done:
            results.append(self._clear(claimed, follow_up, outcome.read_at, now))
        for claimed, not_before in outcome.retry:
            mark = self.marks.get(claimed.sku)
            if mark is not None and mark.claim_id == claimed.claim_id:
                mark.claim_id = mark.claimed_until = None
                mark.not_before = not_before
        return results

    def _clear(
        self, claimed: Mark, follow_up: datetime | None, read_at: datetime, now: datetime
    ) -> Cleared:
        mark = self.marks.get(claimed.sku)
        if mark is not None and mark.claim_id == claimed.claim_id:
            if mark.change_id == claimed.change_id:
                if follow_up is None:
                    del self.marks[claimed.sku]
                else:
                    self.marks[claimed.sku] = FakeMark(uuid.uuid4(), 0, follow_up, follow_up)
                return Cleared.CLEARED
            mark.claim_id = mark.claimed_until = None
            mark.first_changed_at = read_at
            return Cleared.CHANGED
        self.change(claimed.sku, now)
        return Cleared.LOST


@dataclass
class FakeMetafieldWriter:
    """Shopify's metafields: written per variant, with failures on cue."""

    metafields: dict[VariantRef, str] = field(default_factory=dict)
    #: (operation, shop, entries) of every call that reached Shopify.
    calls: list[tuple[str, str, int]] = field(default_factory=list)
    #: Each call pops one: raise THROTTLED with that retry_after.
    throttled: list[float] = field(default_factory=list)
    down: bool = False
    refuse: dict[VariantRef, str] = field(default_factory=dict)
    gone: set[VariantRef] = field(default_factory=set)
    #: What each answer reports of the bucket (None: no cost extension).
    bucket: client.ThrottleStatus | None = None
    writes: int = 0

    def _arrive(self, operation: str, shop: str, count: int) -> None:
        if self.down:
            raise client.ShopifyUnavailable("Shopify unreachable (ConnectionError)")
        self.calls.append((operation, shop, count))
        if self.throttled:
            raise client.ShopifyThrottled("GraphQL throttled", retry_after=self.throttled.pop(0))

    def set(self, shop: str, entries: list[tuple[VariantRef, str]]) -> SetAnswer:
        assert len(entries) <= 25, "Shopify takes at most 25 metafields a call"
        self._arrive("set", shop, len(entries))
        refused = {i: self.refuse[v] for i, (v, _) in enumerate(entries) if v in self.refuse}
        gone = {i for i, (v, _) in enumerate(entries) if v in self.gone}
        for index in gone:
            refused[index] = "Owner does not exist"
        if refused:
            return SetAnswer(refused, gone, self.bucket)
        for variant, value in entries:
            self.metafields[variant] = value
            self.writes += 1
        return SetAnswer(throttle=self.bucket and dataclasses.replace(self.bucket))

    def delete(self, shop: str, variants: list[VariantRef]) -> client.ThrottleStatus | None:
        self._arrive("delete", shop, len(variants))
        for variant in variants:
            self.metafields.pop(variant, None)
        return self.bucket
