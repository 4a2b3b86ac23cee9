"""Publishing the ledger to the checkout: one round of the stock metafield publisher.

A round claims dirty SKUs (stock/dirty.py: every change to a SKU's figures or holds marked it in
its own transaction), reads each one's figures, live holds and variants in one snapshot, builds
each variant's value (shopify/stock_metafield.py), writes what changed with ``metafieldsSet``
(at most 25 a call), deletes the metafields of variants that no longer carry a tracked SKU, and
then has each mark compare-and-cleared: a change that came during the round keeps its mark, so
it is published by the next round. Nothing is ever dropped on a failure, only given back:

- THROTTLED waits what Shopify's throttle status says and retries (a few times a round); a
  bucket running low is waited for before the next call, so the bucket is not emptied;
- Shopify down, or no token for the shop: the round stops, every mark not yet published is
  given back at once, and the report asks the loop to pause (shopify/publisher.py backs off);
- an entry Shopify refuses (a userError) is left out of the call and its SKU retried a minute
  later (counted, so it alerts); one whose variant Shopify no longer has is forgotten;
- a value that breaks the function's contract is never written (counted).

Rules the store enforces in ``claim``: a SKU whose variant is not known yet waits (a payload
maps it, and marks it again), and a variant is written at most once per minimum interval, so a
hot SKU's burst costs about one write a second however many holds change.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from ..stock.dirty import Cleared, Mark
from . import client
from .ports import (
    CannotPublish,
    MetafieldWriter,
    PublicationStore,
    RoundOutcome,
    SkuSnapshot,
    VariantRef,
    Written,
)
from .stock_metafield import MAX_HOLD_ENTRIES, StockValue, contract_problems, value_of_entries

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class PublishPolicy:
    #: Dirty SKUs claimed per round.
    batch: int = 100
    #: Metafields per ``metafieldsSet`` call (Shopify's limit).
    per_call: int = 25
    #: What a mutation costs in Shopify's bucket: the bucket is let refill to this first.
    call_cost: float = 10.0
    #: THROTTLED answers one call may get in a round before its SKUs wait for the next.
    throttled_attempts: int = 5
    #: How long a refused entry's SKU waits before it is tried again.
    refused_retry: timedelta = timedelta(seconds=60)


@dataclass
class RoundReport:
    claimed: int = 0
    #: Ledger changes the round's marks stood for (coalescing: changes per write).
    changes: int = 0
    written: int = 0
    deleted: int = 0
    unchanged: int = 0
    calls: int = 0
    #: Hold entries left out of values by the 200-entry bound.
    left_out: int = 0
    #: Failure counts by reason: throttled, unavailable, rejected, refused, no_token, invalid.
    failures: dict[str, int] = field(default_factory=dict)
    #: Seconds from each published SKU's oldest unpublished change to Shopify's answer.
    lags: list[float] = field(default_factory=list)
    #: How the round's published marks were cleared (changed: a change came meanwhile).
    cleared: dict[Cleared, int] = field(default_factory=dict)
    #: Set when the round stopped on a failure the loop should back off from.
    stopped_by: str | None = None
    waited_seconds: float = 0.0

    def fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1


@dataclass
class _Plan:
    """One SKU's part of the round."""

    mark: Mark
    value: StockValue | None = None
    writes: list[VariantRef] = field(default_factory=list)
    deletes: list[VariantRef] = field(default_factory=list)
    pending: int = 0  # targets not yet done
    failed: bool = False
    refused: bool = False
    #: Tracked, and no variant carries it yet.
    waiting: bool = False
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.pending == 0 and not self.failed and not self.refused


class _Stopped(Exception):
    pass


#: ``sleep(seconds)``: wait, returning True when the worker is stopping (stop.wait's answer).
Sleep = Callable[[float], bool]


def publish_round(
    store: PublicationStore,
    writer: MetafieldWriter,
    clock: Callable[[], datetime],
    sleep: Sleep,
    policy: PublishPolicy = PublishPolicy(),
) -> RoundReport:
    """Claim, publish and clear one batch of dirty SKUs (see the module's docstring)."""
    report = RoundReport()
    marks = store.claim(clock(), policy.batch)
    if not marks:
        return report
    report.claimed = len(marks)
    report.changes = sum(m.changes for m in marks)
    read_at = clock()  # after the claim: every change the claim saw is in the snapshot
    snapshots = store.snapshot([m.sku for m in marks], read_at)
    outcome = RoundOutcome(read_at=read_at)
    plans = [_plan(m, snapshots[m.sku], report) for m in marks]
    shops = sorted({v.shop for plan in plans for v in (*plan.writes, *plan.deletes)})
    try:
        for shop in shops:
            _publish_shop(shop, plans, writer, clock, sleep, policy, report, outcome)
    except _Stopped:
        pass
    now = clock()
    for plan in plans:
        if plan.waiting:  # a tracked SKU no variant carries yet: it waits, unpublished
            outcome.retry.append((plan.mark, None))
        elif plan.done:
            outcome.done.append((plan.mark, plan.value.next_expiry if plan.value else None))
            if plan.writes and plan.finished_at is not None:
                lag = (plan.finished_at - plan.mark.first_changed_at).total_seconds()
                report.lags.append(max(0.0, lag))
        else:
            later = now + policy.refused_retry if plan.refused else None
            outcome.retry.append((plan.mark, later))
    for result in store.finish(outcome, clock()):
        report.cleared[result] = report.cleared.get(result, 0) + 1
    return report


def _plan(mark: Mark, snapshot: SkuSnapshot, report: RoundReport) -> _Plan:
    plan = _Plan(mark)
    # Written for this SKU before, carrying no tracked SKU now: the metafield goes (a stale one
    # would keep refusing checkouts).
    plan.deletes = sorted(
        v for v in snapshot.published if v not in snapshot.variants and v not in snapshot.moved
    )
    if snapshot.figures is not None:
        value = value_of_entries(*snapshot.figures, snapshot.entries)
        problems = contract_problems(value.text)
        if problems:
            log.error("stock.publish.invalid sku=%s problems=%s (not written)", mark.sku, problems)
            report.fail("invalid")
            plan.refused, plan.deletes = True, []
            return plan
        if value.left_out:
            report.left_out += value.left_out
            log.warning(
                "stock.publish.truncated sku=%s left_out=%d kept=%d: a metafield lists at most "
                "%d holds; the owners of the others fall back to the free units at checkout",
                mark.sku,
                value.left_out,
                len(value.holds),
                MAX_HOLD_ENTRIES,
            )
        plan.value = value
        for variant in sorted(snapshot.variants):
            if snapshot.published.get(variant) == value.text:
                report.unchanged += 1
            else:
                plan.writes.append(variant)
        plan.waiting = not snapshot.variants and not plan.deletes
    plan.pending = len(plan.writes) + len(plan.deletes)
    return plan


def _publish_shop(
    shop: str,
    plans: list[_Plan],
    writer: MetafieldWriter,
    clock: Callable[[], datetime],
    sleep: Sleep,
    policy: PublishPolicy,
    report: RoundReport,
    outcome: RoundOutcome,
) -> None:
    writes = [(p, v) for p in plans for v in p.writes if v.shop == shop and not p.failed]
    deletes = [(p, v) for p in plans for v in p.deletes if v.shop == shop and not p.failed]
    try:
        for start in range(0, len(writes), policy.per_call):
            chunk = writes[start : start + policy.per_call]
            _write_chunk(shop, chunk, writer, clock, sleep, policy, report, outcome)
        for start in range(0, len(deletes), policy.per_call):
            chunk = deletes[start : start + policy.per_call]
            _call(
                functools.partial(writer.delete, shop, [v for _, v in chunk]),
                [p for p, _ in chunk],
                sleep,
                policy,
                report,
            )
            if not any(p.failed for p, _ in chunk):
                for plan, variant in chunk:
                    outcome.deleted.append(variant)
                    plan.pending -= 1
                    report.deleted += 1
    except (client.ShopifyError, CannotPublish) as exc:
        reason = _reason(exc)
        report.fail(reason)
        report.stopped_by = reason
        log.warning("stock.publish.stopped shop=%s reason=%s: %s", shop, reason, exc)
        for plan in plans:
            if plan.pending and any(v.shop == shop for v in (*plan.writes, *plan.deletes)):
                plan.failed = True


def _write_chunk(
    shop: str,
    chunk: list[tuple[_Plan, VariantRef]],
    writer: MetafieldWriter,
    clock: Callable[[], datetime],
    sleep: Sleep,
    policy: PublishPolicy,
    report: RoundReport,
    outcome: RoundOutcome,
) -> None:
    while chunk:
        entries = [(v, _text(p)) for p, v in chunk]
        answer = _call(
            functools.partial(writer.set, shop, entries),
            [p for p, _ in chunk],
            sleep,
            policy,
            report,
        )
        if answer is None:
            return  # throttled too often: those SKUs wait for the next round
        if not answer.refused:
            finished = clock()
            for plan, variant in chunk:
                lag = (finished - plan.mark.first_changed_at).total_seconds()
                outcome.written.append(Written(variant, plan.mark.sku, _text(plan), max(0.0, lag)))
                plan.pending -= 1
                plan.finished_at = finished
                report.written += 1
            _pace(answer.throttle, sleep, policy, report)
            return
        # Shopify wrote nothing (atomic): drop the refused entries and send the rest again.
        kept = []
        for index, (plan, variant) in enumerate(chunk):
            if index in answer.gone:
                log.warning(
                    "stock.publish.variant_gone shop=%s variant=%s sku=%s: forgotten",
                    shop,
                    variant.variant_id,
                    plan.mark.sku,
                )
                outcome.forgotten.append(variant)
                plan.pending -= 1
            elif index in answer.refused:
                log.error(
                    "stock.publish.refused shop=%s variant=%s sku=%s: %s",
                    shop,
                    variant.variant_id,
                    plan.mark.sku,
                    answer.refused[index],
                )
                report.fail("refused")
                plan.refused = True
            else:
                kept.append((plan, variant))
        chunk = kept


def _text(plan: _Plan) -> str:
    if plan.value is None:
        raise RuntimeError(f"{plan.mark.sku}: a write planned without a value")
    return plan.value.text


def _call(
    make: Callable[[], T],
    plans: list[_Plan],
    sleep: Sleep,
    policy: PublishPolicy,
    report: RoundReport,
) -> T | None:
    """One Shopify call, retried on THROTTLED after the wait Shopify's status gives."""
    for _ in range(policy.throttled_attempts):
        report.calls += 1
        try:
            return make()
        except client.ShopifyThrottled as exc:
            report.fail("throttled")
            report.waited_seconds += exc.retry_after
            if sleep(exc.retry_after):
                raise _Stopped() from None
    for plan in plans:
        plan.failed = True
    return None


def _pace(
    throttle: client.ThrottleStatus | None, sleep: Sleep, policy: PublishPolicy, report: RoundReport
) -> None:
    """Let the bucket refill to one call's cost before the next call, instead of draining it
    and being THROTTLED."""
    if throttle is None:
        return
    wait = throttle.seconds_until(policy.call_cost)
    if wait > 0:
        report.waited_seconds += wait
        if sleep(wait):
            raise _Stopped()


def _reason(exc: Exception) -> str:
    if isinstance(exc, CannotPublish):
        return exc.reason
    if isinstance(exc, client.ShopifyUnavailable):
        return "unavailable"
    return "rejected"  # a document or credentials Shopify refuses: a bug or a config problem
