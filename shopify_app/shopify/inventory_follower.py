"""Shopify's inventory follows the ledger: ``available`` at the store's location equals
``on_hand − committed`` for every mapped SKU (holds are not subtracted: that would block the
holder too; the checkout function enforces them).

The race it must not lose: Shopify takes a sold unit off its own count the moment it sells,
seconds before ``orders/create`` reaches the ledger, so an absolute write computed from the
ledger in that window would hand the unit back. So:

- **What Shopify counted itself is never sent back.** Its sales, cancellations and restocks
  move the ledger through the webhooks, and Shopify's figure moved already. Only changes from
  outside Shopify are sent (Bling balances from other channels, manual ``PUT``s: the movements
  of stock/domain.py ``FROM_OUTSIDE_SHOPIFY``, summed per SKU in ``skus.external_on_hand`` in
  the transaction that makes them), and as **deltas** (``inventoryAdjustQuantities``): a delta
  commutes with a sale, so no sale is ever undone by one.
- **Exactly once.** The growth of ``external_on_hand`` since the last delta Shopify confirmed
  is the next delta, one per SKU however many movements it stands for (coalesced). The call is
  stored with its idempotency key before it is sent (shopify/inventory_store.py); after a lost
  answer, an outage or a crash the very same call is sent again under the same key, and Shopify
  applies it once. A refused call applied nothing: its SKUs are free for the next batch.
- **Absolute writes only with compare-and-set**, in two cases: once when a SKU is first mapped
  (or its inventory item or the location changes), and to repair a drift. Each expects the
  figure Shopify showed (``changeFromQuantity``): a sale between the read and the write makes
  Shopify refuse it, and it is tried again later. Each waits until Shopify's count has not moved
  for SHOPIFY_INVENTORY_SETTLE_SECONDS (a recent sale may still be on its way to the ledger).
- **Drift** (a cancellation Shopify did not restock, an oversold unit Bling's zero floor gave
  back, a hand edit in Shopify's admin): every SHOPIFY_INVENTORY_DRIFT_SECONDS the settled SKUs
  (aligned, nothing left to send) are compared. A difference is noted; it is reported and
  repaired only when the next check finds the very same one (same figures on both sides, Shopify's
  count not moved since). An order in flight is gone by then: its webhook (or the order
  reconciliation, every 300 s) has moved the ledger.
- **The map** SKU → variant → inventory item is Shopify's catalog (``productVariants``, walked
  every SHOPIFY_INVENTORY_MAP_SECONDS; a SKU the ledger gains in between is looked up with
  ``query: "sku:…"``). A SKU no variant carries, or several do, or whose variant Shopify does not
  track, is reported (``flask shopify inventory``) and never written: nothing is guessed.
- **Within the limits**: reads of 50 items and writes of 100 entries a call; the bucket is let
  refill before it runs low (``extensions.cost.throttleStatus``); THROTTLED, an outage or a
  missing token pause the follower (1 s doubling to 60 s) and lose nothing.

The worker runs it in a thread of its own (``start``), beside the stock publisher.

Long because the round's steps (location, map, writes in flight, alignment, deltas, drift) and
the one place that turns Shopify's answers into outcomes belong together, in this order.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from ..crypto import TokenUnreadable
from ..observability import metrics
from ..runtime import Runtime
from . import catalog, client, inventory_api, inventory_store
from .inventory_api import Level
from .inventory_store import Batch
from .shops import ShopTokenError, TokenStore, installed_shops

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BACKOFF_SECONDS = 60.0
#: SKUs looked up by SKU per round (ledger SKUs the last catalog walk did not know).
LOOKUPS_PER_ROUND = 20
#: SKUs aligned per round, and delta batches sent per round.
ALIGN_PER_ROUND = 50
ADJUST_CALLS_PER_ROUND = 10
#: Points the bucket should hold before a call (a write costs 10, a read of 50 items ~150).
RESERVE_POINTS = 200.0

#: Per-entry userError codes, and the state they put a SKU in (re-checked at the next walk).
_ENTRY_STATES = {
    "ITEM_NOT_STOCKED_AT_LOCATION": "not_stocked",
    "INVALID_INVENTORY_ITEM": "missing",
    "NON_MUTABLE_INVENTORY_ITEM": "untracked",
}
#: Codes that say "not now" rather than "never": the SKU is tried again next round.
_TRANSIENT = {"CHANGE_FROM_QUANTITY_STALE", "IDEMPOTENCY_CONCURRENT_REQUEST"}


@dataclass
class RoundReport:
    shops: int = 0
    mapped: int = 0
    aligned: int = 0
    adjusted: int = 0
    repaired: int = 0
    calls: int = 0
    #: SKUs whose Shopify figure differed at a drift check (noted / persisting).
    drift_noted: int = 0
    drift_persisting: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    #: Set when a shop's part stopped on a failure the loop should back off from.
    stopped_by: str | None = None

    def fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1
        metrics.INVENTORY_FAILURES.labels(reason).inc()


class _Paused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class InventoryFollower:
    """Runs the follower's rounds for a runtime; one per worker process."""

    def __init__(self, runtime: Runtime, *, sleep: Callable[[float], bool] | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.engine = runtime.engine
        self.tokens = TokenStore.for_runtime(runtime)
        self._stop = threading.Event()
        self._sleep = sleep

    # --- one round ---------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.runtime.clock()

    def wait(self, seconds: float) -> bool:
        """Sleep (True when the worker is stopping)."""
        if self._sleep is not None:
            return self._sleep(seconds)
        return self._stop.wait(seconds)

    def run_round(self) -> RoundReport:
        report = RoundReport()
        for shop in installed_shops(self.engine, self.settings):
            report.shops += 1
            try:
                self.follow(shop, report)
            except _Paused as exc:
                report.fail(exc.reason)
                report.stopped_by = exc.reason
                inventory_store.save_shop(self.engine, shop, problem=str(exc)[:500])
                log.warning("shopify.inventory.paused shop=%s reason=%s: %s", shop, exc.reason, exc)
        return report

    def follow(self, shop: str, report: RoundReport) -> None:
        """One shop's part: the location, the map, the writes in flight, the alignments, the
        deltas, and the drift check when due."""
        try:
            token = self.tokens.access_token(shop)
        except (ShopTokenError, TokenUnreadable) as exc:
            raise _Paused("no_token", f"{shop}: {exc}") from None
        base = client.admin_base_url(self.settings.shopify_admin_url, shop)
        call = _Caller(self, base, token)
        state = inventory_store.shop_state(self.engine, shop)
        now = self.now()
        map_due = (
            state is None
            or state.mapped_at is None
            or now - state.mapped_at
            >= timedelta(seconds=self.settings.shopify_inventory_map_seconds)
        )
        location = state.location_id if state is not None else None
        if map_due or location is None:
            location = call.run(lambda: self._location(shop, base, token))
            self._map(shop, call, report)
        else:
            self._look_up_new(shop, call, report)
        for stored in inventory_store.in_flight(self.engine, shop):
            self._send(stored, call, report)
        self._align(shop, location, call, report)
        build = lambda entries: inventory_api.adjust_input(location, entries)  # noqa: E731
        for _ in range(ADJUST_CALLS_PER_ROUND):
            batch = inventory_store.open_adjust(
                self.engine, shop, build, self.now(), inventory_api.WRITE_BATCH
            )
            if batch is None:
                break
            self._send(batch, call, report)
        state = inventory_store.shop_state(self.engine, shop)
        drift_every = timedelta(seconds=self.settings.shopify_inventory_drift_seconds)
        if state is not None and (
            state.drift_checked_at is None or self.now() - state.drift_checked_at >= drift_every
        ):
            self.check_drift(shop, location, call, report)

    def _location(self, shop: str, base: str, token: str) -> str:
        configured = self.settings.shopify_location_id
        if configured:
            found = inventory_api.location(base, token, inventory_api.location_gid(configured))
            if found is None or not found.active:
                raise _Paused(
                    "no_location",
                    f"SHOPIFY_LOCATION_ID={configured} is not an active location of {shop}",
                )
            chosen = found
        else:
            online = [
                loc
                for loc in inventory_api.locations(base, token)
                if loc.active and loc.fulfills_online_orders
            ]
            if len(online) != 1:
                names = ", ".join(f"{loc.name} ({loc.id})" for loc in online) or "none"
                raise _Paused(
                    "no_location",
                    f"{shop}: {len(online)} active locations fulfil online orders ({names}); "
                    "set SHOPIFY_LOCATION_ID to the one whose stock Bling holds",
                )
            chosen = online[0]
        if inventory_store.set_location(self.engine, shop, chosen.id, chosen.name):
            log.info(
                "shopify.inventory.location shop=%s location=%s (%s)", shop, chosen.id, chosen.name
            )
        return chosen.id

    def _map(self, shop: str, call: _Caller, report: RoundReport) -> None:
        variants = call.run(lambda: catalog.fetch_variants(call.base, call.token))
        result = inventory_store.record_catalog(self.engine, shop, variants, self.now())
        report.mapped += result.mapped
        log.info(
            "shopify.inventory.mapped shop=%s mapped=%d duplicate=%d untracked=%d missing=%d "
            "variants_without_sku=%d remapped=%d",
            shop,
            result.mapped,
            len(result.duplicate),
            len(result.untracked),
            result.missing,
            result.without_sku,
            len(result.remapped),
        )
        if result.duplicate:
            log.warning(
                "shopify.inventory.duplicate_skus shop=%s skus=%s: several variants carry each; "
                "their inventory is not written until one does",
                shop,
                ",".join(result.duplicate[:20]),
            )

    def _look_up_new(self, shop: str, call: _Caller, report: RoundReport) -> None:
        for sku in inventory_store.unmapped_skus(self.engine, shop, LOOKUPS_PER_ROUND):
            found = call.run(functools.partial(catalog.variants_of_sku, call.base, call.token, sku))
            result = inventory_store.record_sku(self.engine, shop, sku, found, self.now())
            report.mapped += result.mapped

    def _align(self, shop: str, location: str, call: _Caller, report: RoundReport) -> None:
        rows = inventory_store.to_align(self.engine, shop, ALIGN_PER_ROUND)
        if not rows:
            return
        seen = call.run(
            lambda: inventory_api.levels(call.base, call.token, location, [r.item_id for r in rows])
        )
        shown: dict[str, int] = {}
        settle = timedelta(seconds=self.settings.shopify_inventory_settle_seconds)
        with self.engine.begin() as connection:
            for row in rows:
                level = seen.get(row.item_id) or Level(row.item_id, None, None, None)
                if level.tracked is None:
                    inventory_store.mark_state(
                        connection, shop, row.sku, "missing", "Shopify has no such inventory item"
                    )
                elif not level.tracked:
                    inventory_store.mark_state(
                        connection, shop, row.sku, "untracked", "Shopify does not track it"
                    )
                elif level.available is None:
                    inventory_store.mark_state(
                        connection, shop, row.sku, "not_stocked", f"not stocked at {location}"
                    )
                elif self._moved_lately(level, settle):
                    continue  # a sale may be on its way to the ledger: next round
                else:
                    shown[row.sku] = level.available
        if not shown:
            return
        build = lambda entries: inventory_api.set_input(location, entries)  # noqa: E731
        batch = inventory_store.open_set(self.engine, shop, "align", build, shown, self.now())
        if batch is not None:
            self._send(batch, call, report)

    def _moved_lately(self, level: Level, settle: timedelta) -> bool:
        moved = _parse_time(level.updated_at)
        return moved is not None and self.now() - moved < settle

    def check_drift(self, shop: str, location: str, call: _Caller, report: RoundReport) -> None:
        """Compare the settled SKUs with Shopify; repair what the previous check saw too."""
        rows = inventory_store.settled(self.engine, shop)
        seen = (
            call.run(
                lambda: inventory_api.levels(
                    call.base, call.token, location, [r.item_id for r in rows]
                )
            )
            if rows
            else {}
        )
        figures: dict[str, tuple[int, str | None]] = {}
        for row in rows:
            level = seen.get(row.item_id)
            if level is not None and level.available is not None:
                figures[row.sku] = (level.available, level.updated_at)
        gap = timedelta(seconds=self.settings.shopify_inventory_drift_seconds / 2)
        drifts = inventory_store.observe(self.engine, shop, figures, self.now(), min_gap=gap)
        persisting = {d.sku: d.shopify for d in drifts if d.persisting}
        noted = [d for d in drifts if not d.persisting]
        report.drift_noted += len(noted)
        report.drift_persisting += len(persisting)
        if noted:
            metrics.INVENTORY_DRIFT.labels("noted").inc(len(noted))
        if not persisting:
            return
        metrics.INVENTORY_DRIFT.labels("persisting").inc(len(persisting))
        for drift in (d for d in drifts if d.persisting):
            log.warning(
                "shopify.inventory.drift shop=%s sku=%s shopify=%d ledger=%d: the same "
                "difference two checks apart; setting Shopify to the ledger's figure",
                shop,
                drift.sku,
                drift.shopify,
                drift.target,
            )
        build = lambda entries: inventory_api.set_input(location, entries)  # noqa: E731
        batch = inventory_store.open_set(self.engine, shop, "repair", build, persisting, self.now())
        if batch is not None:
            self._send(batch, call, report)

    # --- one write -----------------------------------------------------------------------------

    def _send(self, batch: Batch, call: _Caller, report: RoundReport) -> None:
        try:
            answer = call.run(
                lambda: inventory_api.write(
                    call.base, call.token, batch.kind, str(batch.key), batch.input
                )
            )
        except _Paused as exc:
            inventory_store.attempted(self.engine, batch, str(exc))
            raise
        report.calls += 1
        if answer.done:
            inventory_store.complete(self.engine, batch, self.now())
            count = len(batch.skus)
            metrics.INVENTORY_WRITES.labels(batch.kind).inc(count)
            if batch.kind == "adjust":
                report.adjusted += count
            elif batch.kind == "align":
                report.aligned += count
            else:
                report.repaired += count
            log.info(
                "shopify.inventory.written shop=%s kind=%s skus=%d key=%s",
                batch.shop,
                batch.kind,
                count,
                batch.key,
            )
            return
        codes = {e.code for e in answer.errors}
        if codes & {"IDEMPOTENCY_CONCURRENT_REQUEST"}:
            inventory_store.attempted(self.engine, batch, "another call with this key is running")
            return  # the same call again next round
        states: dict[str, tuple[str, str]] = {}
        whole: list[str] = []
        for error in answer.errors:
            if error.index is None:
                whole.append(f"{error.code}: {error.message}")
                continue
            sku = batch.skus[error.index]
            if error.code in _TRANSIENT:
                report.fail("stale")
                continue
            states[sku] = (
                _ENTRY_STATES.get(error.code or "", "missing"),
                f"Shopify refused the write: {error.code}: {error.message}",
            )
        inventory_store.refuse(self.engine, batch, states)
        if states:
            report.fail("refused")
            log.warning(
                "shopify.inventory.refused shop=%s kind=%s skus=%s (not written until the next "
                "catalog walk finds them writable)",
                batch.shop,
                batch.kind,
                ",".join(f"{sku}:{s[1]}" for sku, s in states.items()),
            )
        if whole:
            raise _Paused("refused", f"{batch.kind} refused as a whole: {'; '.join(whole)}")

    # --- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Follow until ``stop`` is set; a failure never ends the loop."""
        self._stop = stop
        backoff = 0.0
        while not stop.is_set():
            try:
                report = self.run_round()
            except SQLAlchemyError:
                log.exception("inventory follower: database error; retrying")
                metrics.INVENTORY_FAILURES.labels("database").inc()
                stop.wait(5.0)
                continue
            except Exception:  # the thread must outlive any bug: logged in full, retried
                log.exception("inventory follower: round failed; retrying")
                metrics.INVENTORY_FAILURES.labels("error").inc()
                stop.wait(5.0)
                continue
            if report.stopped_by is not None:
                backoff = min(MAX_BACKOFF_SECONDS, max(1.0, backoff * 2))
                stop.wait(backoff * random.uniform(0.8, 1.2))  # noqa: S311 # nosec B311 # jitter
                continue
            backoff = 0.0
            stop.wait(self.settings.shopify_inventory_interval_seconds)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="inventory-follower")
        thread.daemon = True
        thread.start()
        return thread


class _Caller:
    """Runs a shop's calls: paces them by Shopify's bucket, turns failures into a pause."""

    def __init__(self, follower: InventoryFollower, base: str, token: str) -> None:
        self.follower = follower
        self.base = base
        self.token = token

    def run(self, fn: Callable[[], T]) -> T:
        try:
            result = fn()
        except client.ShopifyThrottled as exc:
            raise _Paused("throttled", f"throttled: {exc}") from None
        except client.ShopifyUnauthorized as exc:
            raise _Paused("rejected", f"Shopify refused the token: {exc}") from None
        except client.ShopifyRejected as exc:
            raise _Paused("rejected", f"Shopify refused the call: {exc}") from None
        except client.GraphQLError as exc:
            raise _Paused("rejected", f"Shopify refused the query: {exc}") from None
        except client.ShopifyUnavailable as exc:
            raise _Paused("unavailable", f"Shopify unavailable: {exc}") from None
        throttle = getattr(result, "throttle", None)
        if isinstance(throttle, client.ThrottleStatus):
            wait = throttle.seconds_until(RESERVE_POINTS)
            if wait > 0:
                self.follower.wait(min(wait, 10.0))
        return result


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def follow_once(runtime: Runtime) -> RoundReport:
    """One round now (the CLI's ``sync``, tests)."""
    return InventoryFollower(runtime).run_round()
