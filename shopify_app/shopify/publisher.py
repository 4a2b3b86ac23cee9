"""The stock publisher in the worker: Shopify's checkout sees the ledger's holds.

The worker runs it in a thread of its own (``start``), not as one of the loop's jobs: the loop
runs its jobs one after another, and the outbox relay may keep it busy for 10 s while Bling is
slow, which must not hold the checkout's figures back. The thread runs rounds
(shopify/publishing.py) back to back while dirty SKUs wait, polls every
SHOPIFY_PUBLISH_INTERVAL_SECONDS when none do, and backs off (1 s doubling to 60 s) while Shopify
is down or throttling hard, or the shop has no token. Every few minutes it reconciles the
metafields written with the variants known (publications.py, ``reconcile``): the first run
after install publishes every variant this way.

``ShopifyMetafieldWriter`` is the MetafieldWriter over the Admin API: ``metafieldsSet`` and
``metafieldsDelete`` on ``$app:bazico``/``stock``, with the shop's token from the token store.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..crypto import TokenUnreadable
from ..observability import metrics
from ..runtime import Runtime
from ..stock.dirty import Cleared
from . import client
from .ports import CannotPublish, MetafieldWriter, PublicationStore, SetAnswer, VariantRef
from .publications import SqlPublicationStore
from .publishing import PublishPolicy, RoundReport, publish_round
from .shops import ShopTokenError, TokenStore
from .stock_metafield import KEY, NAMESPACE, TYPE

log = logging.getLogger(__name__)

#: How long a round owns its marks (a worker that dies mid-round hands them on after this).
LEASE = timedelta(seconds=60)
MAX_BACKOFF_SECONDS = 60.0

SET_MUTATION = """
mutation bazicoStockSet($metafields: [MetafieldsSetInput!]!) {
  metafieldsSet(metafields: $metafields) {
    metafields { id }
    userErrors { field message code elementIndex }
  }
}
"""

DELETE_MUTATION = """
mutation bazicoStockDelete($metafields: [MetafieldIdentifierInput!]!) {
  metafieldsDelete(metafields: $metafields) {
    deletedMetafields { ownerId }
    userErrors { field message }
  }
}
"""


class ShopifyMetafieldWriter:
    """MetafieldWriter over the Admin GraphQL API."""

    def __init__(self, runtime: Runtime) -> None:
        self.settings = runtime.settings
        self.tokens = TokenStore.for_runtime(runtime)

    def set(self, shop: str, entries: list[tuple[VariantRef, str]]) -> SetAnswer:
        metafields = [
            {"ownerId": v.gid, "namespace": NAMESPACE, "key": KEY, "type": TYPE, "value": text}
            for v, text in entries
        ]
        answer = self._call(shop, SET_MUTATION, {"metafields": metafields})
        payload = answer.data.get("metafieldsSet") or {}
        refused: dict[int, str] = {}
        gone: set[int] = set()
        for error in payload.get("userErrors") or []:
            index = _index_of(error, len(entries))
            text = f"{error.get('field')}: {error.get('message')} ({error.get('code')})"
            if index is None:  # not tied to one entry: the whole call is refused
                raise client.ShopifyRejected(f"metafieldsSet refused: {text}", status=200)
            refused[index] = text
            if (error.get("field") or [""])[-1] == "ownerId":
                gone.add(index)
        return SetAnswer(refused, gone, answer.throttle)

    def delete(self, shop: str, variants: list[VariantRef]) -> client.ThrottleStatus | None:
        identifiers = [{"ownerId": v.gid, "namespace": NAMESPACE, "key": KEY} for v in variants]
        answer = self._call(shop, DELETE_MUTATION, {"metafields": identifiers})
        errors = (answer.data.get("metafieldsDelete") or {}).get("userErrors") or []
        if errors:
            raise client.ShopifyRejected(f"metafieldsDelete refused: {errors}", status=200)
        return answer.throttle

    def _call(self, shop: str, query: str, variables: dict[str, Any]) -> client.GraphQLAnswer:
        try:
            token = self.tokens.access_token(shop)
        except (ShopTokenError, TokenUnreadable) as exc:
            raise CannotPublish("no_token", f"{shop}: {exc}") from None
        base = client.admin_base_url(self.settings.shopify_admin_url, shop)
        return client.graphql_answer(base, token, query, variables)


def _index_of(error: dict[str, Any], count: int) -> int | None:
    """The entry a userError is about: ``elementIndex``, or the index in its ``field`` path."""
    index = error.get("elementIndex")
    if not isinstance(index, int):
        path = error.get("field") or []
        index = int(path[1]) if len(path) > 1 and str(path[1]).isdigit() else None
    return index if index is not None and 0 <= index < count else None


class StockPublisher:
    """Runs publishing rounds for a runtime; one per worker process."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        store: PublicationStore | None = None,
        writer: MetafieldWriter | None = None,
        policy: PublishPolicy | None = None,
    ) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.sql = SqlPublicationStore(
            runtime.engine,
            min_interval=timedelta(seconds=settings.shopify_publish_min_interval_seconds),
            lease=LEASE,
        )
        self.store: PublicationStore = store or self.sql
        self.writer = writer or ShopifyMetafieldWriter(runtime)
        self.policy = policy or PublishPolicy()
        self.interval = settings.shopify_publish_interval_seconds
        self.reconcile_every = settings.shopify_publish_reconcile_seconds
        self._stop = threading.Event()

    def run_round(self) -> RoundReport:
        """One round, its metrics and logs (the loop's step; tests and the bench call it)."""
        report = publish_round(
            self.store, self.writer, self.runtime.clock, self._stop.wait, self.policy
        )
        record(report)
        return report

    def reconcile(self) -> int:
        marked = self.sql.reconcile(self.runtime.clock())
        if marked:
            log.info("stock.publish.reconciled marked=%d", marked)
        return marked

    def run(self, stop: threading.Event) -> None:
        """Publish until ``stop`` is set; a failure never ends the loop."""
        self._stop = stop
        backoff = 0.0
        next_reconcile = time.monotonic()
        last_failure: str | None = None
        while not stop.is_set():
            try:
                if time.monotonic() >= next_reconcile:
                    next_reconcile = time.monotonic() + self.reconcile_every
                    self.reconcile()
                report = self.run_round()
            except SQLAlchemyError:
                log.exception("stock publisher: database error; retrying")
                metrics.PUBLISH_FAILURES.labels("database").inc()
                stop.wait(5.0)
                continue
            except Exception:  # the thread must outlive any bug: logged in full, retried
                log.exception("stock publisher: round failed; retrying")
                metrics.PUBLISH_FAILURES.labels("error").inc()
                stop.wait(5.0)
                continue
            if report.stopped_by is not None:
                backoff = min(MAX_BACKOFF_SECONDS, max(1.0, backoff * 2))
                if report.stopped_by != last_failure:
                    log.warning(
                        "stock publisher paused: %s; nothing is lost, retrying in %.0f s "
                        "(then backing off to %.0f s)",
                        report.stopped_by,
                        backoff,
                        MAX_BACKOFF_SECONDS,
                    )
                last_failure = report.stopped_by
                stop.wait(backoff * random.uniform(0.8, 1.2))  # noqa: S311 # nosec B311 # jitter
                continue
            if last_failure is not None:
                log.info("stock publisher resumed after %s", last_failure)
            backoff, last_failure = 0.0, None
            if report.claimed < self.policy.batch:
                stop.wait(self.interval)  # caught up: poll again soon

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="stock-publisher")
        thread.daemon = True
        thread.start()
        return thread


def record(report: RoundReport) -> None:
    """A round's metrics (the worker's registry)."""
    if report.written:
        metrics.PUBLISH_WRITES.labels("set").inc(report.written)
    if report.deleted:
        metrics.PUBLISH_WRITES.labels("delete").inc(report.deleted)
    if report.unchanged:
        metrics.PUBLISH_WRITES.labels("unchanged").inc(report.unchanged)
    if report.calls:
        metrics.PUBLISH_CALLS.inc(report.calls)
    if report.changes:
        metrics.PUBLISH_CHANGES.inc(report.changes)
    if report.left_out:
        metrics.PUBLISH_HOLDS_LEFT_OUT.inc(report.left_out)
    for reason, count in report.failures.items():
        metrics.PUBLISH_FAILURES.labels(reason).inc(count)
    for lag in report.lags:
        metrics.PUBLISH_LAG.observe(lag)
    changed = report.cleared.get(Cleared.CHANGED, 0) + report.cleared.get(Cleared.LOST, 0)
    if changed:
        metrics.PUBLISH_REPUBLISHED.inc(changed)
