"""Operations under real gunicorn and worker processes (Procfile), on PostgreSQL.

- ``/metrics`` totals are exact across several gunicorn workers, also when workers are recycled
  by ``max_requests`` (prometheus_client multiprocess mode).
- SIGTERM to ``web`` under load: every request the service took in finishes; a request it had not
  taken yet is refused without effect. SIGTERM to ``worker`` while it forwards orders: it stops
  within the platform's window, the job it was running is finished and recorded, and nothing is
  lost or run twice.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select

from shopify_app.outbox.tables import outbox_jobs
from shopify_app.stock.tables import holds
from tests.support.app import TOKEN
from tests.support.bling_standin import BlingStandIn
from tests.support.deployment import Deployment
from tests.support.procfile import ProcfileRunner, call, free_port, wait_for, wait_ready

pytestmark = pytest.mark.postgres


def web_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "APP_ENV": "development",
        "STOCK_API_TOKEN": TOKEN,
        "LOG_LEVEL": "INFO",
        **extra,
    }


@pytest.fixture
def runner_factory() -> Iterator[Any]:
    runners: list[ProcfileRunner] = []

    def make(env: dict[str, str]) -> ProcfileRunner:
        runner = ProcfileRunner(env)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.close()


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v
        for key, v in samples.get(name, {}).items()
        if all((k, want) in key for k, want in labels.items())
    )


def test_metrics_are_exact_across_gunicorn_workers_and_recycled_workers(
    postgres_url: str, runner_factory: Any
) -> None:
    port = free_port()
    runner = runner_factory(
        web_env(postgres_url, port, WEB_CONCURRENCY="3", WEB_THREADS="2", WEB_MAX_REQUESTS="25")
    )
    web = runner.start("web")
    wait_ready(port, web)
    assert call(port, "PUT", "/stock/BZ-MET", {"on_hand": 10}, token=TOKEN)[0] == 200

    def one(n: int) -> int:
        if n % 6 == 0:
            return call(port, "POST", "/stock/BZ-MET/reserve", {"quantity": 1}, token=TOKEN)[0]
        if n % 6 == 1:
            return call(port, "GET", "/stock/NOPE", token=TOKEN)[0]
        return call(port, "GET", "/stock/BZ-MET", token=TOKEN)[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = Counter(pool.map(one, range(300)))
    reserve_ok = 10
    assert statuses == Counter({200: 200 + reserve_ok, 404: 50, 409: 50 - reserve_ok})

    samples = scrape(port)
    count = "bazico_http_request_duration_seconds_count"
    assert value(samples, count, route="/stock/<sku>", method="GET", status="200") == 200
    assert value(samples, count, route="/stock/<sku>", method="GET", status="404") == 50
    assert value(samples, count, route="/stock/<sku>", method="PUT", status="200") == 1
    reserve = "/stock/<sku>/reserve"
    assert value(samples, count, route=reserve, method="POST", status="200") == reserve_ok
    assert value(samples, count, route=reserve, method="POST", status="409") == 50 - reserve_ok
    assert value(samples, "bazico_reservations_total", channel="api", outcome="granted") == 10
    assert value(samples, "bazico_reservations_total", channel="api", outcome="sold_out") == 40
    # read from the database at scrape time
    assert value(samples, "bazico_stock_available", sku="BZ-MET") == 0
    assert value(samples, "bazico_stock_reserved", sku="BZ-MET") == 10

    assert runner.stop(web) == 0
    log = runner.log_of(web)
    assert log.count("Autorestarting worker") >= 3, "workers were recycled by max_requests"
    for line in log.splitlines():
        json.loads(line)  # gunicorn's own lines are JSON too


def test_sigterm_to_web_under_load_finishes_every_request_it_took(
    postgres_url: str, runner_factory: Any
) -> None:
    port = free_port()
    runner = runner_factory(web_env(postgres_url, port, WEB_CONCURRENCY="2", WEB_THREADS="4"))
    web = runner.start("web")
    wait_ready(port, web)
    assert call(port, "PUT", "/stock/BZ-TERM", {"on_hand": 100_000}, token=TOKEN)[0] == 200

    results: dict[str, Any] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def shopper(index: int) -> None:
        n = 0
        while not stop.is_set():
            holder = f"term-{index}-{n}"
            n += 1
            try:
                status, _ = call(
                    port, "POST", "/stock/BZ-TERM/reserve", {"holder": holder}, token=TOKEN
                )
                outcome: Any = status
            except ConnectionRefusedError:
                outcome = "refused"  # the listener is closed: never taken in
            except OSError as exc:
                outcome = type(exc).__name__
            with lock:
                results[holder] = outcome
            if outcome == "refused":
                return

    threads = [threading.Thread(target=shopper, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(results) > 200, "load", 30)
    web.terminate()  # SIGTERM to gunicorn's master, as Heroku does
    started = time.monotonic()
    web.wait(30)
    stopped_in = time.monotonic() - started
    stop.set()
    for thread in threads:
        thread.join(30)

    assert web.returncode == 0
    assert stopped_in < 25
    outcomes = Counter(results.values())
    assert set(outcomes) <= {200, "refused", "ConnectionResetError", "RemoteDisconnected"}, outcomes
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            held = set(
                conn.execute(select(holds.c.holder).where(holds.c.sku == "BZ-TERM")).scalars()
            )
    finally:
        engine.dispose()
    answered = {holder for holder, outcome in results.items() if outcome == 200}
    # Each 200 is a hold that exists; a request cut off before it was taken left none.
    assert answered == held
    print(f"\nweb SIGTERM: {dict(outcomes)}; stopped in {stopped_in:.1f} s")


def test_sigterm_to_the_worker_finishes_its_job_and_loses_none(postgres_url: str) -> None:
    with BlingStandIn(products=[("BZ-W", 50)], rate_limit=None) as bling:
        bling.slow(0.25)  # each Bling call takes a while: SIGTERM lands inside a job
        deployment = Deployment(postgres_url, bling, BLING_REQUESTS_PER_SECOND="50")
        try:
            deployment.sync()
            for order_id in range(1, 13):
                deployment.sell(order_id, [("BZ-W", 1)])
            worker = deployment.start_worker()
            wait_for(lambda: deployment.forwarded() >= 2, "two orders forwarded", 60)
            worker.terminate()
            started = time.monotonic()
            worker.wait(30)
            assert worker.returncode == 0
            assert time.monotonic() - started < 25
            log = deployment.runner.log_of(worker)
            assert "worker stopped" in log

            with deployment.runtime.engine.connect() as conn:
                jobs = conn.execute(select(outbox_jobs)).all()
            # Nothing left half-done under a lease: the job that was running was recorded.
            assert all(j.status == "done" or j.attempts == 0 for j in jobs), [
                (j.key, j.status, j.attempts) for j in jobs
            ]
            done_before = sum(j.status == "done" for j in jobs)
            assert 2 <= done_before < 12

            replacement = deployment.start_worker()
            wait_for(lambda: deployment.forwarded() == 12, "the rest forwarded", 60)
            assert deployment.runner.stop(replacement) == 0
            with deployment.runtime.engine.connect() as conn:
                attempts = Counter(j.attempts for j in conn.execute(select(outbox_jobs)))
            assert attempts == Counter({1: 12}), "each job ran exactly once"
            assert Counter(o["numeroLoja"] for o in bling.sales_orders.values()) == Counter(
                {f"#C{i}": 1 for i in range(1, 13)}
            )
            assert set(bling.postings.values()) == {1}
        finally:
            deployment.close()
