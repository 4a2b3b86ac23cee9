"""The service as Heroku runs it: `release`, then `web` and `worker`, configured by env only."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine

from tests.support.ledger import assert_ledger_balanced, hold_count
from tests.support.procfile import ProcfileRunner, call, free_port, wait_ready

pytestmark = pytest.mark.slow
TOKEN = "procfile-token"


def test_release_web_and_worker_from_the_procfile(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/procfile.db"
    port = free_port()
    runner = ProcfileRunner(
        {
            "DATABASE_URL": url,
            "PORT": str(port),
            "STOCK_API_TOKEN": TOKEN,
            "WEB_CONCURRENCY": "2",
            "APP_ENV": "development",
            "WORKER_SWEEP_INTERVAL_SECONDS": "0.2",
        }
    )
    engine = create_engine(url)
    try:
        release = runner.run("release")
        assert release.returncode == 0, release.stderr
        assert runner.run("release").returncode == 0, "release must be safe to repeat"

        web = runner.start("web")
        worker = runner.start("worker")
        wait_ready(port, web)
        assert call(port, "PUT", "/stock/TEE", {"on_hand": 2}, token=TOKEN)[0] == 200
        status, hold = call(port, "POST", "/stock/TEE/reserve", {"ttl_seconds": 1}, token=TOKEN)
        assert status == 200

        # The worker's sweeper expires the hold with no buyer asking for the unit.
        deadline = time.monotonic() + 15
        while hold_count(engine, "TEE", "expired") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert hold_count(engine, "TEE", "expired") == 1, runner.log_of(worker)
        status, body = call(port, "GET", "/stock/TEE", token=TOKEN)
        assert body["reserved"] == 0 and body["available"] == 2
        status, body = call(port, "POST", "/stock/confirm", hold, token=TOKEN)
        assert status == 410
        assert_ledger_balanced(engine)

        started = time.monotonic()
        assert runner.stop(worker) == 0
        assert time.monotonic() - started < 25, "SIGTERM must stop the worker within Heroku's 30 s"
        assert "worker stopped" in runner.log_of(worker)
        assert '"log.logger": "shopify_app.worker"' in runner.log_of(worker), "not __main__"
        assert runner.stop(web) == 0
    finally:
        runner.close()
        engine.dispose()


def test_a_bad_environment_stops_the_start_with_one_line_per_problem(tmp_path: object) -> None:
    runner = ProcfileRunner(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
            "PORT": str(free_port()),
            "APP_ENV": "production",
            "RESERVATION_TTL_SECONDS": "soon",
        }
    )
    try:
        result = runner.run("release", timeout=60)
        assert result.returncode != 0
        problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
        assert problems == [
            "  - RESERVATION_TTL_SECONDS must be an integer, got 'soon'",
            "  - SECRET_KEY is required when APP_ENV=production",
            "  - SHOPIFY_API_KEY is required when APP_ENV=production",
            "  - SHOPIFY_API_SECRET is required when APP_ENV=production",
        ]
        web = runner.start("web")
        assert web.wait(60) != 0
        assert "SECRET_KEY is required" in runner.log_of(web)
        # The worker (python -m shopify_app.worker, no web app) says the same, without a traceback.
        worker = runner.start("worker")
        assert worker.wait(60) == 3
        log = runner.log_of(worker)
        assert "  - SECRET_KEY is required when APP_ENV=production" in log
        assert "Traceback" not in log
    finally:
        runner.close()
