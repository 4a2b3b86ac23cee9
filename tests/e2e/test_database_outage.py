"""PostgreSQL stops under load and comes back: the service fails fast and heals by itself.

The Procfile's ``web`` (gunicorn, 2 workers x 4 threads) and ``worker`` run against a cluster of
their own (stopping it must not disturb other tests). Client threads keep reserving, confirming,
releasing, reading and posting signed ``orders/create`` webhooks while the database is stopped
twice: ``pg_ctl stop -m fast`` (sessions terminated, clean shutdown), then ``-m immediate`` (a
crash: the next start replays the WAL), each time for a few seconds, then started again on the
same port. Nobody restarts the service.

Asserted: during an outage every answer is a fast 503 with a JSON error (no hang), ``/readyz``
is 503 during and 200 after; the service answers 200 again soon after the database is back;
every 200 is in the database (no hold granted that is not there, every confirmed sale committed,
every accepted order with its outbox job); the ledger balances and nothing is oversold; the
worker lives through it and its loop runs again.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, create_engine, select

from shopify_app.orders.tables import orders
from shopify_app.outbox.kinds import FORWARD_ORDER
from shopify_app.outbox.tables import outbox_jobs
from shopify_app.stock.tables import holds
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.orders import shopify_order
from tests.support.outage import Answer, Load, Prober, json_request, percentile, request
from tests.support.pgcluster import PgCluster, find_pg_bin
from tests.support.procfile import ProcfileRunner, children_of, free_port, wait_for
from tests.support.shopify_sender import signed_headers

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TOKEN = "outage-token"
SECRET = "outage-shopify-secret"
SHOP = "bazico-outage.myshopify.com"
WEB_WORKERS = 2
SCARCE, SCARCE_STOCK = "OUT-LAST", 120  # sells out during the run: no hold beyond the stock
PLENTY = ["OUT-A", "OUT-B", "OUT-C"]
ORDERED = "OUT-ORDERED"  # what the orders/create webhooks buy
SWEPT = "OUT-SWEPT"  # short holds only the worker's sweeper expires
OUTAGE_SECONDS = 6.0
# Budgets, with room for a loaded 2-core CI machine: a request during the outage must fail
# within FAIL_FAST_S, and the service must answer 200 within RECOVERY_S of the database's return.
FAIL_FAST_S = 3.0
RECOVERY_S = 10.0


@dataclass
class Deployment:
    cluster: PgCluster
    port: int
    engine: Engine
    runner: ProcfileRunner
    web_pid: int
    worker_pid: int
    web_workers: list[int]
    resumed: float = 0.0  # when the last ``pg_ctl start`` returned


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    if find_pg_bin() is None:
        pytest.fail("PostgreSQL binaries not found")  # the suite's conftest decides skips
    # Ours alone: the session's cluster must stay up for other tests. Commits are synchronous
    # as in production: the throwaway clusters' synchronous_commit=off loses the last commits
    # of a crash (``-m immediate``) by design, which would look like granted holds vanishing.
    cluster = PgCluster(settings={"synchronous_commit": "on"})
    cluster.start()
    url = cluster.create_database("outage")
    port = free_port()
    runner = ProcfileRunner(
        {
            "DATABASE_URL": url,
            "PORT": str(port),
            "STOCK_API_TOKEN": TOKEN,
            "SHOPIFY_API_KEY": "outage-key",
            "SHOPIFY_API_SECRET": SECRET,
            "SHOPIFY_SHOP_DOMAIN": SHOP,
            "WEB_CONCURRENCY": str(WEB_WORKERS),
            "WEB_THREADS": "4",
            "APP_ENV": "test",
            "LOG_LEVEL": "INFO",  # the worker's "worker started" line
            "WORKER_SWEEP_INTERVAL_SECONDS": "0.5",
        }
    )
    engine = create_engine(url, pool_pre_ping=True)
    try:
        web = runner.release_and_serve(port, WEB_WORKERS)
        worker = runner.start("worker")
        wait_for(lambda: "worker started" in runner.log_of(worker), "worker start", 30, worker)
        for sku, units in [(SCARCE, SCARCE_STOCK), (ORDERED, 100_000), (SWEPT, 1000)] + [
            (s, 100_000) for s in PLENTY
        ]:
            answer = json_request(
                port, "PUT", f"/stock/{sku}", {"on_hand": units}, kind="put", token=TOKEN
            )
            assert answer.status == 200, answer
        workers = children_of(web.pid)
        yield Deployment(cluster, port, engine, runner, web.pid, worker.pid, workers)
        assert runner.stop(worker) == 0, runner.log_of(worker)
        assert runner.stop(web) == 0, runner.log_of(web)
    finally:
        runner.close()
        engine.dispose()
        cluster.stop()


def _client(port: int, seed: int) -> Callable[[int, Callable[[Answer], None]], None]:
    rng = random.Random(seed)
    orders_sent = itertools.count(seed * 1_000_000 + 1)

    def step(index: int, record: Callable[[Answer], None]) -> None:
        if index % 4 == 3:  # a quarter of the clients are Shopify delivering orders
            order_id = next(orders_sent)
            payload = shopify_order(order_id, [(ORDERED, 1, "59.90")], name=f"#O{order_id}")
            body = json.dumps(payload).encode()
            answer = request(
                port,
                "POST",
                "/webhooks/shopify",
                kind="webhook",
                body=body,
                headers=signed_headers(body, "orders/create", secret=SECRET, shop=SHOP),
            )
            answer.meta["order_id"] = order_id
            record(answer)
            return
        sku = SCARCE if rng.random() < 0.4 else rng.choice(PLENTY)
        reserve = json_request(
            port, "POST", f"/stock/{sku}/reserve", {"quantity": 1}, kind="reserve", token=TOKEN
        )
        record(reserve)
        if reserve.status == 200:
            hold_id = reserve.body["reservation_id"]
            roll = rng.random()
            if roll < 0.5:
                order_ref = f"api-{index}-{hold_id[:8]}"
                confirm = json_request(
                    port,
                    "POST",
                    "/stock/confirm",
                    {"reservation_id": hold_id, "order_id": order_ref},
                    kind="confirm",
                    token=TOKEN,
                )
                confirm.meta.update(hold=hold_id, order_ref=order_ref)
                record(confirm)
            elif roll < 0.75:
                released = json_request(
                    port, "DELETE", f"/stock/reservations/{hold_id}", kind="release", token=TOKEN
                )
                released.meta["hold"] = hold_id
                record(released)
        record(json_request(port, "GET", f"/stock/{sku}", kind="get", token=TOKEN))

    return step


def _outage(
    deployment: Deployment, mode: str
) -> tuple[list[Answer], list[Answer], float, float, float]:
    """Run load, stop PostgreSQL for OUTAGE_SECONDS, start it, keep the load on a while.

    Returns (answers, readiness probes, stop begun, stopped, start begun) as monotonic times.
    """
    port = deployment.port
    load = Load(8, _client(port, seed={"fast": 1, "immediate": 2}[mode])).start()
    prober = Prober(port, "/readyz", every=0.1).start()
    try:
        time.sleep(3.0)
        stop_begun = time.monotonic()
        deployment.cluster.halt(mode)
        stopped = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        # From here PostgreSQL may accept connections at any moment: the outage is measured up
        # to this instant, the recovery from it (an upper bound: it includes the server's start).
        back = time.monotonic()
        deployment.cluster.resume()
        deployment.resumed = time.monotonic()
        time.sleep(8.0)
    finally:
        answers = load.stop()
        probes = prober.stop()
    return answers, probes, stop_begun, stopped, back


def _report(
    mode: str, answers: list[Answer], probes: list[Answer], t0: float, t1: float, back: float
) -> dict[str, float]:
    during = [a for a in answers if t1 <= a.started and a.ended <= back]
    straddling = [a for a in answers if a.started < back < a.ended and a.started >= t1]
    after = [a for a in answers if a.started >= back]
    first_200 = min((a.ended for a in after if a.status == 200), default=float("nan"))
    # Steady state: from the last 5xx (or failure) whose request began after the restart.
    failed_after = [a.ended for a in after if a.status >= 500 or a.status == 0]
    steady = max(failed_after, default=back)
    ready_again = min(
        (p.ended for p in probes if p.started >= back and p.status == 200), default=float("nan")
    )
    figures_ = {
        "requests": len(answers),
        "during": len(during),
        "during_503_pct": 100.0 * sum(a.status == 503 for a in during) / max(1, len(during)),
        "during_other": len([a for a in during if a.status != 503]),
        "during_max_s": max((a.elapsed for a in during + straddling), default=0.0),
        "during_p50_s": percentile((a.elapsed for a in during), 50),
        "during_p99_s": percentile((a.elapsed for a in during), 99),
        "stop_took_s": t1 - t0,
        "first_200_after_s": first_200 - back,
        "steady_after_s": steady - back,
        "ready_after_s": ready_again - back,
        "after_errors": len(failed_after),
        "after": len(after),
    }
    statuses = Counter(a.status for a in during)
    f = figures_
    print(
        f"\ndatabase outage ({mode}): {f['requests']} requests; {f['during']} sent while the "
        f"database was down: {dict(statuses)} ({f['during_503_pct']:.1f}% 503), latency "
        f"p50 {f['during_p50_s'] * 1000:.0f} ms p99 {f['during_p99_s'] * 1000:.0f} ms "
        f"max {f['during_max_s'] * 1000:.0f} ms; pg_ctl stop took {f['stop_took_s']:.2f} s; "
        f"after the start command: first 200 in {f['first_200_after_s']:.2f} s, /readyz 200 in "
        f"{f['ready_after_s']:.2f} s, last failure {f['steady_after_s']:.2f} s after "
        f"({f['after_errors']} of {f['after']} requests failed after the start command)"
    )
    return figures_


def _check_outage(answers: list[Answer], probes: list[Answer], stopped: float, back: float) -> None:
    during = [a for a in answers if stopped <= a.started and a.ended <= back]
    assert len(during) > 20, "the load did not run during the outage"
    # Fail fast, as JSON: nothing hangs, nothing is a 500 or a dropped connection.
    bad = [a for a in during if a.status != 503 or not a.is_json_error()]
    assert not bad, bad[:5]
    assert all(
        a.elapsed < FAIL_FAST_S for a in answers if a.started >= stopped and a.started < back
    ), max(a.elapsed for a in answers if stopped <= a.started < back)
    assert {a.body["error"] for a in during} == {"unavailable"}
    # /readyz: 503 while the database is down, 200 again once it is back.
    down = [p for p in probes if stopped <= p.started and p.ended <= back]
    assert down and all(p.status == 503 and p.is_json_error() for p in down), down[:3]
    assert max(p.elapsed for p in probes) < FAIL_FAST_S
    ready = [p for p in probes if p.started >= back and p.status == 200]
    assert ready and ready[0].ended - back < RECOVERY_S
    # Heals by itself: 200s again soon, and no failure once the first 200 has come.
    after = [a for a in answers if a.started >= back]
    first_200 = min(a.ended for a in after if a.status == 200)
    assert first_200 - back < RECOVERY_S
    late_failures = [
        a for a in after if a.started > first_200 + 1.0 and (a.status >= 500 or a.status == 0)
    ]
    assert not late_failures, late_failures[:5]


def _check_database(deployment: Deployment, answers: list[Answer]) -> None:
    engine = deployment.engine
    with engine.connect() as conn:
        rows = {str(r.id): r for r in conn.execute(select(holds))}
        order_ids = {r.order_id for r in conn.execute(select(orders.c.order_id))}
        jobs = {
            json.loads(r.payload)["order_id"]
            for r in conn.execute(
                select(outbox_jobs.c.payload).where(outbox_jobs.c.kind == FORWARD_ORDER)
            )
        }
    granted = [a for a in answers if a.kind == "reserve" and a.status == 200]
    # A 200 is never given for a hold that is not in the database.
    missing = [a.body["reservation_id"] for a in granted if a.body["reservation_id"] not in rows]
    assert not missing, missing[:5]
    # Every confirmation answered 200 is committed, for its order.
    for answer in (a for a in answers if a.kind == "confirm" and a.status == 200):
        row = rows[answer.meta["hold"]]
        assert (row.status, row.order_ref) == ("confirmed", answer.meta["order_ref"]), answer
    for answer in (a for a in answers if a.kind == "release" and a.status == 204):
        assert rows[answer.meta["hold"]].status in ("released", "expired"), answer
    # Every order accepted with a 200 is stored and queued for Bling: none lost.
    accepted = {a.meta["order_id"] for a in answers if a.kind == "webhook" and a.status == 200}
    assert accepted <= order_ids, sorted(accepted - order_ids)[:5]
    assert accepted <= jobs, sorted(accepted - jobs)[:5]
    # No hold granted twice, no oversell: the scarce SKU never held or sold beyond its stock.
    scarce = [r for r in rows.values() if r.sku == SCARCE and r.status in ("active", "confirmed")]
    assert sum(r.quantity for r in scarce) <= SCARCE_STOCK
    given_back = sum(
        r.quantity for r in rows.values() if r.sku == SCARCE and r.status in ("released", "expired")
    )
    assert len([a for a in granted if a.body["sku"] == SCARCE]) <= SCARCE_STOCK + given_back
    ids = [a.body["reservation_id"] for a in granted]
    assert len(ids) == len(set(ids)), "a hold was granted twice"
    for sku in [SCARCE, ORDERED, SWEPT, *PLENTY]:
        assert figures(engine, sku)["available"] >= 0, sku
    assert_ledger_balanced(engine)


def test_postgres_stops_and_restarts_under_load(deployment: Deployment) -> None:
    results = {}
    for mode in ("fast", "immediate"):
        answers, probes, begun, stopped, back = _outage(deployment, mode)
        results[mode] = _report(mode, answers, probes, begun, stopped, back)
        results[mode]["start_took_s"] = deployment.resumed - back
        print(f"pg_ctl start took {deployment.resumed - back:.2f} s")
        _check_outage(answers, probes, stopped, back)
        _check_database(deployment, answers)

    # Both processes lived through it: the same gunicorn master and workers, the same worker.
    assert deployment.runner.processes[0][0].poll() is None
    assert children_of(deployment.web_pid) == deployment.web_workers, "a web worker was replaced"
    worker = next(p for p, _ in deployment.runner.processes if p.pid == deployment.worker_pid)
    assert worker.poll() is None, deployment.runner.log_of(worker)
    # ... and the worker's loop runs again: its sweeper expires holds made after the restart.
    port = deployment.port
    made = [
        json_request(
            port,
            "POST",
            f"/stock/{SWEPT}/reserve",
            {"quantity": 1, "ttl_seconds": 1},
            kind="reserve",
            token=TOKEN,
        )
        for _ in range(3)
    ]
    assert all(a.status == 200 for a in made), made

    def swept() -> bool:
        with deployment.engine.connect() as conn:
            statuses = (
                conn.execute(select(holds.c.status).where(holds.c.sku == SWEPT)).scalars().all()
            )
        return len(statuses) == 3 and set(statuses) == {"expired"}

    wait_for(swept, "the worker's sweeper to expire holds after the outages", 20, worker)
    assert_ledger_balanced(deployment.engine)
