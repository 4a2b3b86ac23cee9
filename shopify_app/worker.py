"""The Procfile's ``worker``: background jobs on a schedule, stopped gracefully by SIGTERM.

For now it runs the expiry sweeper; the outbox relay and Bling reconciliation join this loop.
Heroku sends SIGTERM and kills 30 s later, so a stop request is honoured between jobs, and each
job is one short transaction: a kill at any moment rolls back at most one batch, which the next
run redoes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import click
from flask import Flask

from .runtime import Runtime, current_runtime
from .stock import services

log = logging.getLogger(__name__)


def run_worker(runtime: Runtime, stop: threading.Event) -> None:
    """Sweep expired holds every ``WORKER_SWEEP_INTERVAL_SECONDS`` until ``stop`` is set."""
    interval = runtime.settings.worker_sweep_interval_seconds
    log.info("worker started (sweep every %.2fs)", interval)
    while not stop.is_set():
        started = time.monotonic()
        try:
            expired = services.expire_due(runtime.uow())
            if expired:
                log.info("reservation.expired count=%d", expired)
        except Exception:  # the loop must outlive a database blip; the error is logged in full
            log.exception("expiry sweep failed; retrying next round")
        stop.wait(max(0.0, interval - (time.monotonic() - started)))
    log.info("worker stopped")


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("worker received %s; finishing the current job", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@click.command("worker")
def worker_command() -> None:
    """Run the background worker (expiry sweeper) until SIGTERM or Ctrl-C."""
    stop = threading.Event()
    _stop_on_signals(stop)
    run_worker(current_runtime(), stop)


def init_app(app: Flask) -> None:
    app.cli.add_command(worker_command)
