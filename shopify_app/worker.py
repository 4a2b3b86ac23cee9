"""The Procfile's ``worker``: background jobs on a schedule, stopped gracefully by SIGTERM.

It runs the expiry sweeper, the ledger drift check, the outbox relay, the Bling
reconciliation (a full stock sync; it does nothing while Bling is not connected), the check of
each shop's Shopify webhook subscriptions (missing ones are created again) and the order
reconciliation (orders Shopify has that no webhook brought), and, in a thread of its own,
the stock publisher (the checkout function's metafields).
Heroku sends SIGTERM and kills 30 s later, so a stop request is honoured between jobs, and each
job is one short transaction: a kill at any moment rolls back at most one batch, which the next
run redoes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

import click
from flask import Flask
from prometheus_client import start_http_server

from . import outbox
from .erp.stock_sync import reconcile
from .observability import metrics
from .ratelimit import DatabaseStorage
from .runtime import Runtime, current_runtime
from .shopify.inventory_follower import InventoryFollower
from .shopify.publisher import StockPublisher
from .shopify.reconcile import reconcile_orders
from .shopify.registration import keep_subscribed
from .stock import services

log = logging.getLogger(__name__)

# The relay drains due jobs in batches, but yields to the other jobs after this long, so a flood
# of outbox work never stops holds from expiring.
RELAY_BATCH = 20
RELAY_ROUND_SECONDS = 10.0


def run_worker(runtime: Runtime, stop: threading.Event) -> None:
    """Run each job on its schedule until ``stop`` is set; a failing job never stops the others."""
    settings = runtime.settings
    jobs = [
        _Job("expiry sweep", settings.worker_sweep_interval_seconds, _sweep),
        _Job("ledger drift check", settings.worker_drift_check_seconds, _check_drift),
        _Job("outbox relay", settings.worker_outbox_interval_seconds, lambda r: _relay(r, stop)),
        _Job("bling reconciliation", settings.worker_bling_sync_seconds, reconcile),
        _Job("rate counter purge", 60.0, _purge_rate_counters),
        _Job("webhook subscriptions", settings.worker_webhook_check_seconds, keep_subscribed),
        _Job("order reconciliation", settings.worker_order_reconcile_seconds, reconcile_orders),
    ]
    # The stock publisher has a thread of its own: the loop's jobs run one after another, and a
    # slow Bling must not hold back the checkout's figures (shopify/publisher.py).
    publisher = StockPublisher(runtime).start(stop) if settings.shopify_publish_stock else None
    # So has Shopify's inventory follower, for the same reason (shopify/inventory_follower.py).
    follower = InventoryFollower(runtime).start(stop) if settings.shopify_inventory_sync else None
    names = [f"{j.name} every {j.every:g}s" for j in jobs]
    if publisher is not None:
        names.append(f"stock publisher every {settings.shopify_publish_interval_seconds:g}s")
    if follower is not None:
        names.append(f"inventory follower every {settings.shopify_inventory_interval_seconds:g}s")
    log.info("worker started: %s", ", ".join(names))
    while not stop.is_set():
        for job in jobs:
            if stop.is_set():
                break
            job.run_if_due(runtime)
        stop.wait(max(0.0, min(job.next_at for job in jobs) - time.monotonic()))
    for thread in (publisher, follower):
        if thread is not None:
            thread.join(STOP_DEADLINE_SECONDS)
    log.info("worker stopped")


class _Job:
    # An action may return something (reconcile's SyncReport): the loop ignores it.
    def __init__(self, name: str, every: float, action: Callable[[Runtime], object]) -> None:
        self.name, self.every, self.action = name, every, action
        self.next_at = time.monotonic()

    def run_if_due(self, runtime: Runtime) -> None:
        if time.monotonic() < self.next_at:
            return
        try:
            self.action(runtime)
        except Exception:  # the loop must outlive a database blip; the error is logged in full
            log.exception("%s failed; retrying next round", self.name)
        self.next_at = time.monotonic() + self.every


def _sweep(runtime: Runtime) -> None:
    expired = runtime.reservations.expire_due()
    if expired:
        log.info("reservation.expired count=%d", expired)


def _purge_rate_counters(runtime: Runtime) -> None:
    """Delete the database's request-rate rows whose window has run out (ratelimit.py)."""
    storage = runtime.rate_limits.storage
    if isinstance(storage, DatabaseStorage):
        storage.purge_expired()


def _check_drift(runtime: Runtime) -> None:
    for d in services.find_drift(runtime.uow(snapshot=True)):
        log.error(
            "ledger.drift sku=%s figure=%s counter=%d expected=%d source=%s",
            d.sku,
            d.figure,
            d.counter,
            d.expected,
            d.source,
        )


def _relay(runtime: Runtime, stop: threading.Event) -> None:
    # run_due checks ``stop`` between jobs: SIGTERM lets the running handler finish, then stops.
    deadline = time.monotonic() + RELAY_ROUND_SECONDS
    while not stop.is_set() and time.monotonic() < deadline:
        if outbox.run_due(runtime, batch=RELAY_BATCH, stop=stop) < RELAY_BATCH:
            return  # nothing more is due


#: Heroku sends SIGKILL 30 s after SIGTERM. A job still running this long after SIGTERM (a slow
#: Bling) is abandoned with the process: its lease runs out and another worker runs it again,
#: which its idempotent steps allow. The worker never outlives the platform's patience.
STOP_DEADLINE_SECONDS = 25.0


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("worker received %s; finishing the current job", signal.Signals(signum).name)
        if not stop.is_set():
            watchdog = threading.Timer(STOP_DEADLINE_SECONDS, _abandon)
            watchdog.daemon = True
            watchdog.start()
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _abandon() -> None:
    log.error(
        "worker still busy %.0fs after SIGTERM; exiting, the job's lease hands it on",
        STOP_DEADLINE_SECONDS,
    )
    logging.shutdown()
    os._exit(1)


def serve(runtime: Runtime) -> None:
    """Run the background worker (sweeper, outbox relay, Bling sync) until SIGTERM or Ctrl-C."""
    stop = threading.Event()
    _stop_on_signals(stop)
    port = runtime.settings.worker_metrics_port
    if port is not None:
        # Its own registry (multiprocess-aware): the web's /metrics is another dyno.
        start_http_server(port, registry=metrics.scrape_registry())
        log.info("worker metrics on port %d", port)
    run_worker(runtime, stop)


@click.command("worker")
def worker_command() -> None:
    """Run the background worker (sweeper, outbox relay, Bling sync) until SIGTERM or Ctrl-C."""
    serve(current_runtime())


def init_app(app: Flask) -> None:
    app.cli.add_command(worker_command)


def main() -> None:
    """``python -m shopify_app.worker``: the Procfile's worker, built without the web app."""
    from .bootstrap import build_runtime
    from .config import ConfigError

    try:
        runtime = build_runtime()
    except ConfigError as exc:
        # As wsgi.py does: one line per problem, then a clean exit, no traceback.
        print(exc, file=sys.stderr)
        sys.exit(3)
    serve(runtime)


if __name__ == "__main__":
    # Run the module under its own name, so its log lines say ``shopify_app.worker``, not
    # ``__main__`` (operators filter on the logger).
    from shopify_app.worker import main as run_as_module

    run_as_module()
