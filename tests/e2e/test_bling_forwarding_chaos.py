"""Orders reach Bling exactly once through faults, with real worker processes from the Procfile.

The Bling stand-in (loopback HTTP, in this process) fails 30% of calls with 500s, answers bursts
of 429s and drops the answers of writes it has applied; the Procfile's ``worker`` runs in two
processes, each SIGKILLed once mid-work and restarted. Orders come in as signed Shopify webhooks
through the app (in this process) on PostgreSQL, while the workers forward them.

The second test keeps Bling's real 3 requests/s limit and checks, from the stand-in's own count,
that a backlog forwarded by two workers while a full sync runs never goes over it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.support.bling_standin import BlingStandIn
from tests.support.deployment import Deployment
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.procfile import wait_for

pytestmark = pytest.mark.postgres

STOCK = 100


@pytest.fixture
def chaos_bling() -> Iterator[BlingStandIn]:
    skus = [(f"BZ-CH-{n:02d}", STOCK) for n in range(12)]
    # Bling's limit is raised here (as BLING_REQUESTS_PER_SECOND is) to keep the run short; the
    # next test holds the service to the real 3 requests/s.
    with BlingStandIn(products=skus, rate_limit=40, seed=11) as bling:
        yield bling


def test_200_orders_reach_bling_exactly_once_through_faults_and_killed_workers(
    postgres_url: str, chaos_bling: BlingStandIn
) -> None:
    bling = chaos_bling
    deployment = Deployment(
        postgres_url, bling, BLING_REQUESTS_PER_SECOND="30", BLING_JOB_LEASE_SECONDS="12"
    )
    stop_bursts = threading.Event()
    try:
        deployment.sync()
        skus = sorted(p.codigo for p in bling.products.values())
        rng = random.Random(5)
        sales = {
            order_id: [(sku, rng.randint(1, 2)) for sku in rng.sample(skus, rng.randint(1, 3))]
            for order_id in range(1, 201)
        }
        sold: Counter[str] = Counter()
        for lines in sales.values():
            for sku, quantity in lines:
                sold[sku] += quantity

        bling.fail_rate = 0.30
        bling.lose_answers_rate = 0.15

        def bursts() -> None:  # another app on the account is busy now and then
            while not stop_bursts.wait(4.0):
                bling.burst_429(3)

        threading.Thread(target=bursts, daemon=True).start()
        workers = [deployment.start_worker(), deployment.start_worker()]
        started = time.monotonic()
        for order_id in range(1, 101):
            deployment.sell(order_id, sales[order_id])
        wait_for(lambda: deployment.forwarded() >= 30, "30 orders forwarded", 120)
        deployment.kill(workers[0])  # SIGKILL, mid-work: its leased job waits out the lease
        workers[0] = deployment.start_worker()
        for order_id in range(101, 201):
            deployment.sell(order_id, sales[order_id])
        wait_for(lambda: deployment.forwarded() >= 110, "110 orders forwarded", 180)
        deployment.kill(workers[1])
        workers[1] = deployment.start_worker()
        wait_for(lambda: deployment.forwarded() >= 170, "170 orders forwarded", 180)
        # Bling recovers: what is left drains (no operator, no retry command).
        stop_bursts.set()
        bling.fail_rate = bling.lose_answers_rate = 0.0
        wait_for(lambda: deployment.forwarded() == 200, "every order forwarded", 360)
        elapsed = time.monotonic() - started
        for proc in workers:
            assert deployment.runner.stop(proc) == 0

        # Bling: exactly one sales order per Shopify order, each with its stock posted once.
        by_store_number = Counter(o["numeroLoja"] for o in bling.sales_orders.values())
        assert by_store_number == Counter({f"#C{i}": 1 for i in range(1, 201)})
        assert set(bling.postings.values()) == {1}
        assert set(bling.postings) == set(bling.sales_orders)
        for order in bling.sales_orders.values():
            order_id = int(order["numeroLoja"][2:])
            assert {(i["codigo"], i["quantidade"]) for i in order["itens"]} == {
                (sku, float(qty)) for sku, qty in sales[order_id]
            }
        # The outbox: no job lost, none dead.
        assert deployment.jobs() == Counter({"done": 200})
        # The ledger: every commitment acknowledged. Each worker start ran a reconciliation
        # while orders were in flight; a balance read between Bling's posting and our
        # acknowledgement is taken minus that order again (stock_sync.py: we cannot tell when
        # inside that window Bling posted), so on_hand may be low, never high, until the next
        # reconciliation, which then agrees with Bling exactly.
        engine = deployment.runtime.engine
        undercounted = 0
        for sku in skus:
            level = figures(engine, sku)
            assert (level["reserved"], level["committed"]) == (0, 0), sku
            assert level["on_hand"] <= STOCK - sold[sku], sku
            undercounted += STOCK - sold[sku] - level["on_hand"]
            physical, _virtual = bling.balance(bling.product_id(sku))
            assert physical == STOCK - sold[sku], sku
        deployment.sync()
        for sku in skus:
            assert figures(engine, sku)["on_hand"] == STOCK - sold[sku], sku
        assert_ledger_balanced(engine)

        statuses = Counter(c.status for c in bling.calls)
        print(
            f"\nchaos: 200 orders forwarded in {elapsed:.1f} s through {len(bling.calls)} Bling "
            f"calls ({len(bling.calls) / 200:.1f} per order); answers {dict(statuses)}; "
            f"{undercounted} units undercounted until the final reconciliation"
        )
    finally:
        stop_bursts.set()
        deployment.close()


def test_a_backlog_never_exceeds_blings_three_requests_per_second(postgres_url: str) -> None:
    skus = [(f"BZ-RL-{n:03d}", 50) for n in range(120)]  # two pages for the sync
    with BlingStandIn(products=skus, rate_limit=3, seed=3) as bling:
        deployment = Deployment(postgres_url, bling)
        try:
            deployment.sync()
            orders_count = 12
            for order_id in range(1, orders_count + 1):
                deployment.sell(order_id, [(f"BZ-RL-{order_id:03d}", 1)])
            first_call = len(bling.calls)
            workers = [deployment.start_worker(), deployment.start_worker()]
            started = time.monotonic()
            syncing = threading.Thread(target=deployment.sync)  # a third client, same account
            syncing.start()
            wait_for(lambda: deployment.forwarded() == orders_count, "the backlog", 120)
            syncing.join(60)
            elapsed = time.monotonic() - started
            for proc in workers:
                assert deployment.runner.stop(proc) == 0

            calls = bling.calls[first_call:]
            assert bling.rate_violations == 0, "the stand-in refused a call for the rate"
            assert bling.max_calls_in_any_second <= 3
            assert deployment.jobs() == Counter({"done": orders_count})
            forwarding = [c for c in calls if c.path.startswith(("/pedidos", "/contatos"))]
            span = calls[-1].at - calls[0].at
            print(
                f"\nrate: {len(calls)} calls in {span:.1f} s = {len(calls) / span:.2f} req/s "
                f"(max {bling.max_calls_in_any_second} in any second); "
                f"{len(forwarding) / orders_count:.2f} calls per forwarded order; "
                f"backlog of {orders_count} done in {elapsed:.1f} s"
            )
        finally:
            deployment.close()
