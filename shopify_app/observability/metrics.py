"""Prometheus metrics, exact across gunicorn workers (``prometheus_client`` multiprocess mode).

``gunicorn.conf.py`` gives every web process one ``PROMETHEUS_MULTIPROC_DIR`` (made fresh when
the master starts): each worker writes its samples to files there, ``/metrics`` sums them, and a
worker recycled by ``max_requests`` leaves its counts behind (``mark_process_dead`` only drops its
live gauges). Without that variable (a single process: tests, ``flask run``, the CLI) the
default in-memory registry is used.

The ``worker`` process is another dyno on Heroku and cannot share that directory: it serves its
own registry on ``WORKER_METRICS_PORT`` when set. The figures that matter across dynos (outbox
depth and age, dead jobs, available stock of the hottest SKUs) are read from the database at
scrape time by ``DatabaseCollector``, so the web's ``/metrics`` has them whichever dyno did
the work.

Every name below is part of the contract with ``deploy/`` (dashboard and alert rules): a test
checks that each query there names a metric listed in ``EXPORTED``.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Latency buckets around what a reservation costs (ms) up to Shopify's 5 s webhook deadline.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUEST_DURATION = Histogram(
    "bazico_http_request_duration_seconds",
    "HTTP requests by route template, method and status, with their latency.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
RESERVATIONS = Counter(
    "bazico_reservations_total",
    "Reservation requests by channel (api, proxy, cart) and outcome (granted, sold_out, "
    "unknown_sku, rate_limited, hold_limit).",
    ["channel", "outcome"],
)
LIMIT_REFUSALS = Counter(
    "bazico_limit_refusals_total",
    "Reservations refused by a denial-of-inventory limit, by channel and limit (ip, cart: "
    "request rates; units_per_sku, active_holds: per-cart caps).",
    ["channel", "limit"],
)
CONFIRMATIONS = Counter(
    "bazico_confirmations_total",
    "Sales confirmed, by channel (api, shopify) and outcome (confirmed, expired, duplicate).",
    ["channel", "outcome"],
)
WEBHOOK_SUBSCRIPTIONS_RECREATED = Counter(
    "bazico_shopify_webhook_subscriptions_recreated_total",
    "Webhook subscriptions the worker found missing and created again, by topic: Shopify deletes "
    "API-created subscriptions after repeated failed deliveries.",
    ["topic"],
)
ORDERS_RECONCILED = Counter(
    "bazico_shopify_orders_reconciled_total",
    "Orders (or cancellations) the worker's reconciliation applied because no webhook brought "
    "them, by topic and outcome: deliveries are being lost.",
    ["topic", "outcome"],
)
WEBHOOK_TOPICS_REFUSED = Counter(
    "bazico_shopify_webhook_topics_refused_total",
    "Topics Shopify refused to subscribe, counted at each check, for lack of protected customer "
    "data access (orders, checkouts): no order reaches the ledger by webhook until it is granted.",
    ["topic"],
)
EXPIRATIONS = Counter(
    "bazico_expirations_total", "Holds that ran out of time and gave their units back."
)
UNLISTED_HOLDS = Counter(
    "bazico_storefront_holds_unlisted_total",
    "Storefront (App Proxy) holds that ran out before any cart webhook listed them: the theme "
    "did not add the item after its hold, or cart webhooks are not arriving.",
)
OVERSOLD_UNITS = Counter(
    "bazico_oversold_units_total",
    "Units Shopify sold that the ledger could not cover (must stay 0).",
)
WEBHOOKS = Counter(
    "bazico_webhooks_total",
    "Webhook deliveries by source (shopify, bling), topic and outcome (the handler's outcome, "
    "duplicate, unauthorized, invalid).",
    ["source", "topic", "outcome"],
)
OUTBOX_JOBS = Counter(
    "bazico_outbox_jobs_total",
    "Outbox job runs by kind and outcome (done, retry, dead, paused).",
    ["kind", "outcome"],
)
BLING_REQUESTS = Counter(
    "bazico_bling_requests_total",
    "Calls to Bling's API by method and outcome (ok, rate_limited, daily_limit, server_error, "
    "client_error, unauthorized, no_answer) and HTTP status (0 when none came).",
    ["method", "outcome", "status"],
)
FOREIGN_SALES_ORDERS = Counter(
    "bazico_bling_foreign_sales_orders_total",
    "Shopify orders not forwarded because Bling already had a sales order under their number "
    "that this service did not create (Bling's own Shopify order import?): nothing posted, "
    "their units stay committed until someone settles them (must stay 0).",
)
SALES_ORDER_CANCELLATIONS = Counter(
    "bazico_bling_cancellations_total",
    "Bling sales orders of orders cancelled in Shopify, by outcome: cancelled (moved to "
    "Bling's Cancelado) or refused (Bling would not: the warehouse may still ship it).",
    ["outcome"],
)
TOKEN_REFRESHES = Counter(
    "bazico_token_refreshes_total",
    "OAuth access-token refreshes by provider (bling, shopify) and outcome (ok, failed).",
    ["provider", "outcome"],
)

# The stock publisher (shopify/publisher.py): the checkout function's metafields.
PUBLISH_LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)
PUBLISH_LAG = Histogram(
    "bazico_stock_publish_lag_seconds",
    "From a SKU's oldest unpublished ledger change to Shopify's answer to the metafield write "
    "that carried it: how long the checkout's figures trailed the ledger.",
    buckets=PUBLISH_LAG_BUCKETS,
)
PUBLISH_WRITES = Counter(
    "bazico_stock_publish_writes_total",
    "Variant stock metafields by operation: set (written), delete (the variant no longer "
    "carries a tracked SKU), unchanged (the value was already there: no write).",
    ["operation"],
)
PUBLISH_CALLS = Counter(
    "bazico_stock_publish_calls_total",
    "Admin API calls the stock publisher made (metafieldsSet / metafieldsDelete, up to 25 "
    "variants each), throttled ones included.",
)
PUBLISH_CHANGES = Counter(
    "bazico_stock_publish_changes_total",
    "Ledger changes the published marks stood for (changes / writes: how much bursts coalesce).",
)
PUBLISH_FAILURES = Counter(
    "bazico_stock_publish_failures_total",
    "Stock publisher failures by reason (throttled, unavailable, rejected, refused, no_token, "
    "invalid, database, error); each delays a publish, none loses one.",
    ["reason"],
)
PUBLISH_HOLDS_LEFT_OUT = Counter(
    "bazico_stock_publish_holds_left_out_total",
    "Hold entries left out of a variant's metafield by the 200-entry bound (their owners fall "
    "back to the free units at checkout).",
)
PUBLISH_REPUBLISHED = Counter(
    "bazico_stock_publish_kept_marks_total",
    "Published SKUs whose dirty mark was kept because the ledger changed during the publish "
    "(published again next round).",
)
INVENTORY_WRITES = Counter(
    "bazico_shopify_inventory_writes_total",
    "Inventory writes Shopify applied, by kind: adjust (outside changes sent as deltas), align "
    "(a SKU's first compare-and-set write), repair (a persisting drift set right).",
    ["kind"],
)
INVENTORY_FAILURES = Counter(
    "bazico_shopify_inventory_failures_total",
    "Inventory follower failures by reason (unavailable, throttled, rejected, refused, stale, "
    "no_token, no_location, database, error); each delays a write, none loses one.",
    ["reason"],
)
INVENTORY_DRIFT = Counter(
    "bazico_shopify_inventory_drift_total",
    "SKUs whose Shopify figure differed from the ledger's at a drift check: noted (the first "
    "sighting, maybe an order in flight) or persisting (the same at the next check: repaired).",
    ["outcome"],
)

#: Read from the database at scrape time (``DatabaseCollector``).
OUTBOX_DEPTH = "bazico_outbox_jobs"
OUTBOX_OLDEST_AGE = "bazico_outbox_oldest_pending_age_seconds"
STOCK_AVAILABLE = "bazico_stock_available"
STOCK_RESERVED = "bazico_stock_reserved"
PUBLISH_BACKLOG = "bazico_stock_publish_backlog"
PUBLISH_OLDEST_AGE = "bazico_stock_publish_oldest_change_age_seconds"

#: Every metric family name /metrics can show (histograms and counters add their suffixes).
EXPORTED = frozenset(
    {
        "bazico_http_request_duration_seconds",
        "bazico_reservations_total",
        "bazico_limit_refusals_total",
        "bazico_confirmations_total",
        "bazico_expirations_total",
        "bazico_storefront_holds_unlisted_total",
        "bazico_oversold_units_total",
        "bazico_webhooks_total",
        "bazico_outbox_jobs_total",
        "bazico_bling_requests_total",
        "bazico_bling_foreign_sales_orders_total",
        "bazico_bling_cancellations_total",
        "bazico_token_refreshes_total",
        "bazico_shopify_webhook_subscriptions_recreated_total",
        "bazico_shopify_webhook_topics_refused_total",
        "bazico_shopify_orders_reconciled_total",
        "bazico_stock_publish_lag_seconds",
        "bazico_stock_publish_writes_total",
        "bazico_stock_publish_calls_total",
        "bazico_stock_publish_changes_total",
        "bazico_stock_publish_failures_total",
        "bazico_stock_publish_holds_left_out_total",
        "bazico_stock_publish_kept_marks_total",
        "bazico_shopify_inventory_writes_total",
        "bazico_shopify_inventory_failures_total",
        "bazico_shopify_inventory_drift_total",
        PUBLISH_BACKLOG,
        PUBLISH_OLDEST_AGE,
        OUTBOX_DEPTH,
        OUTBOX_OLDEST_AGE,
        STOCK_AVAILABLE,
        STOCK_RESERVED,
    }
)

#: How many SKUs the stock gauges show: the hottest (most units held or sold, not yet in Bling).
HOT_SKUS = 20


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def scrape_registry() -> CollectorRegistry:
    """This process's metrics, or every web process's under gunicorn (multiprocess mode)."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def mark_process_dead(pid: int) -> None:
    """gunicorn's ``child_exit``: drop a dead worker's live gauges (its counts stay)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)
