"""A request waiting on PostgreSQL leaves the rest of its gunicorn worker serving.

The web workers are gevent's (gunicorn.conf.py), and gevent only helps if every wait of the app
yields to the other greenlets. psycopg picks its wait function once, at import: imported before
gevent patched ``select`` (gunicorn's logging config imports the app's package in the master),
it blocks the whole process on every statement, and then a reservation stuck behind a row lock
stalls every other request of the worker until the lock times out. Measured so, the storefront
ran at half speed with a p99 of five seconds (the database's lock timeout).
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from tests.support.procfile import WebOnPostgres, call, wait_for

pytestmark = pytest.mark.postgres

TOKEN = "test-token-web-workers"


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_a_request_stuck_on_a_row_lock_does_not_stall_its_worker(
    web_on_postgres: WebOnPostgres, worker_class: str
) -> None:
    env = {
        "STOCK_API_TOKEN": TOKEN,
        "WEB_CONCURRENCY": "1",
        "WEB_WORKER_CLASS": worker_class,
        "APP_ENV": "test",
        "DB_LOCK_TIMEOUT_MS": "8000",
    }
    database = f"workers_{worker_class}_{time.monotonic_ns() % 10**8}"
    with web_on_postgres(database, env) as served:
        for sku in ("STUCK", "FREE"):
            status, body = call(served.port, "PUT", f"/stock/{sku}", {"on_hand": 5}, token=TOKEN)
            assert status == 200, body
        stuck: dict[str, object] = {}

        def reserve_the_locked_sku() -> None:
            stuck["answer"] = call(
                served.port, "POST", "/stock/STUCK/reserve", {"quantity": 1}, token=TOKEN
            )

        with served.engine.connect() as locker, served.engine.connect() as watcher:
            locker.execute(text("SELECT sku FROM skus WHERE sku = 'STUCK' FOR UPDATE"))
            reserving = threading.Thread(target=reserve_the_locked_sku)
            reserving.start()

            def waiting_on_the_lock() -> bool:
                found = watcher.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
                watcher.rollback()
                return bool(found)

            wait_for(waiting_on_the_lock, "the reservation to wait on the row lock")
            started = time.monotonic()
            status, body = call(served.port, "GET", "/stock/FREE", token=TOKEN, timeout=10)
            answered_in = time.monotonic() - started
            assert "answer" not in stuck, "the row lock held the reservation"
            locker.rollback()
        reserving.join(timeout=10)
        assert status == 200 and body["available"] == 5, body
        assert answered_in < 2, f"another SKU's read waited {answered_in:.1f} s for the lock"
        assert stuck["answer"][0] == 200, stuck
