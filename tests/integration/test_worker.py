"""The worker loop: jobs on their schedule, errors survived, stop honoured between jobs."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from flask import Flask
from sqlalchemy import Engine, text

from shopify_app.runtime import EXTENSION_KEY, Runtime
from shopify_app.worker import run_worker
from tests.support.app import ApiClient
from tests.support.clock import FakeClock
from tests.support.ledger import hold_count


def fast(runtime: Runtime) -> Runtime:
    settings = runtime.settings.__class__(
        **{
            **runtime.settings.__dict__,
            "worker_sweep_interval_seconds": 0.05,
            "worker_drift_check_seconds": 0.05,
        }
    )
    return Runtime(settings, runtime.engine, runtime.clock)


def run_for(runtime: Runtime, until: object, timeout: float = 10) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(runtime, stop))
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not until() and time.monotonic() < deadline:  # type: ignore[operator]
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive(), "the worker must stop when asked"


def test_worker_sweeps_and_reports_drift(
    app: Flask, api: ApiClient, engine: Engine, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = fast(app.extensions[EXTENSION_KEY])
    api.put("/stock/A", json={"on_hand": 3})
    api.post("/stock/A/reserve", json={"ttl_seconds": 10})
    clock.advance(11)
    with engine.begin() as conn:
        conn.execute(text("UPDATE skus SET on_hand = on_hand + 4 WHERE sku = 'A'"))

    caplog.set_level(logging.INFO, logger="shopify_app.worker")
    run_for(
        runtime,
        lambda: hold_count(engine, "A", "expired") == 1 and "ledger.drift" in caplog.text,
    )
    assert hold_count(engine, "A", "expired") == 1
    assert "reservation.expired count=1" in caplog.text
    assert "ledger.drift sku=A figure=on_hand counter=7 expected=3 source=movements" in caplog.text


def test_worker_survives_a_failing_job(
    app: Flask, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = fast(app.extensions[EXTENSION_KEY])
    with engine.begin() as conn:  # the sweeper's table disappears under it
        conn.execute(text("ALTER TABLE holds RENAME TO holds_gone"))
    try:
        caplog.set_level(logging.INFO, logger="shopify_app.worker")
        run_for(runtime, lambda: caplog.text.count("expiry sweep failed") >= 2)
        assert caplog.text.count("expiry sweep failed") >= 2, "it must keep trying"
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE holds_gone RENAME TO holds"))


def test_the_worker_entry_point_builds_no_web_app() -> None:
    """python -m shopify_app.worker starts from bootstrap.py: Flask's app factory, the blueprints
    and the OpenAPI document are never built (nor their modules imported) to run the loop."""
    import subprocess
    import sys

    probe = (
        "import sys, shopify_app.worker as w, shopify_app.bootstrap as b\n"
        "b.build_runtime({'APP_ENV': 'test', 'DATABASE_URL': 'sqlite://'})\n"
        "web = [m for m in ('shopify_app.stock.views', 'shopify_app.web.openapi',"
        " 'shopify_app.shopify.webhooks', 'shopify_app.ops.metrics') if m in sys.modules]\n"
        "print(web)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
