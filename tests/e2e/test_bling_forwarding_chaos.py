"""Orders reach Bling exactly once through faults, with real worker processes from the Procfile.

The Bling stand-in (loopback HTTP, in this process) fails 30% of calls with 500s, answers bursts
of 429s and drops the answers of writes it has applied; the Procfile's ``worker`` runs in two
processes, each SIGKILLed once mid-work and restarted. Orders come in as signed Shopify webhooks
through the app (in this process) on PostgreSQL, while the workers forward them; some are
cancelled before, during or after their forward (their Bling sales order must end "Cancelado",
its stock reversed once), some are paid later, some never (boleto), some are test orders. Some
webhooks are lost (an order, a payment, a cancellation that only Shopify's stand-in has): the
workers' order reconciliation must bring them, through the same faults.

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

from tests.support.app import SHOPIFY_SECRET
from tests.support.bling_standin import BlingStandIn
from tests.support.deployment import Deployment
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.procfile import wait_for
from tests.support.shopify_standin import ShopifyStandIn

pytestmark = pytest.mark.postgres

STOCK = 100


@pytest.fixture
def chaos_bling() -> Iterator[BlingStandIn]:
    skus = [(f"BZ-CH-{n:02d}", STOCK) for n in range(12)]
    # Bling's limit is raised here (as BLING_REQUESTS_PER_SECOND is) to keep the run short; the
    # next test holds the service to the real 3 requests/s.
    with BlingStandIn(products=skus, rate_limit=40, seed=11) as bling:
        yield bling


#: What becomes of an order in the chaos run (points 4 and 5 of issue 13 besides forwarding).
KEPT = "kept"  # paid at once, stays sold: in Bling once, posted once, still "Em aberto"
CANCELLED = "cancelled"  # paid, cancelled at some point of its forward: nothing left in Bling
PAID_LATER = "paid_later"  # boleto/PIX paid later (orders/paid): as KEPT once paid
EXPIRED = "expired"  # boleto/PIX never paid, then cancelled: never in Bling
TEST = "test"  # a test order: never in Bling


def fates(rng: random.Random) -> dict[int, str]:
    kinds = [KEPT] * 150 + [CANCELLED] * 24 + [PAID_LATER] * 12 + [EXPIRED] * 8 + [TEST] * 6
    rng.shuffle(kinds)
    return dict(enumerate(kinds, start=1))


def test_200_orders_reach_bling_exactly_once_through_faults_and_killed_workers(
    postgres_url: str, chaos_bling: BlingStandIn
) -> None:
    """Forwarded, cancelled (before, during and after their forward), paid later, never paid
    and test orders, with 30% 500s, 15% lost answers, 429 bursts and two SIGKILLed workers:
    each order's sales order exists in Bling once or not at all, as its fate says, every
    posting is made once and reversed once at most, and every cancelled order's sales order
    is moved to "Cancelado" exactly once, after its reversal."""
    bling = chaos_bling
    # The account's transition to "Cancelado" reverses a posted order's stock by itself: the
    # service's own reversal must come first, or the units would come back twice.
    bling.cancelling_reverses_stock = True
    shopify = ShopifyStandIn(client_id="test-shopify-key", client_secret=SHOPIFY_SECRET)
    shopify.__enter__()
    deployment = Deployment(
        postgres_url,
        bling,
        shopify=shopify,
        BLING_REQUESTS_PER_SECOND="30",
        BLING_JOB_LEASE_SECONDS="12",
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
        fate = fates(rng)
        # Webhooks Shopify never delivers: the orders, payments and cancellations only the
        # reconciliation can bring (point 7 of issue 13).
        lost_sale = set(rng.sample([o for o, f in fate.items() if f == KEPT], 10))
        lost_news = set(rng.sample([o for o, f in fate.items() if f in (CANCELLED, PAID_LATER)], 6))
        sold: Counter[str] = Counter()  # what stays sold in the end
        for order_id, lines in sales.items():
            if fate[order_id] in (KEPT, PAID_LATER):
                for sku, quantity in lines:
                    sold[sku] += quantity

        def sell(order_id: int) -> None:
            if fate[order_id] in (PAID_LATER, EXPIRED):
                deployment.sell(
                    order_id, sales[order_id], expect="awaiting_payment", financial_status="pending"
                )
            elif fate[order_id] == TEST:
                deployment.sell(order_id, sales[order_id], expect="test_order", test=True)
            else:
                deployment.sell(order_id, sales[order_id], lost=order_id in lost_sale)

        # Shopify's later news of an order (its payment, cancellation or expiry) comes some
        # orders after its sale: at once (before its forward), or while or after it is forwarded.
        news_after = {order_id: rng.choice([0, 4, 30, 100, 160]) for order_id in sales}
        unsettled = [o for o in sales if fate[o] in (CANCELLED, PAID_LATER, EXPIRED)]
        # Three cancellations wait until their order's stock is posted in Bling, whatever the
        # timing: the run always cancels some orders after their forward.
        late = rng.sample([o for o in unsettled if fate[o] == CANCELLED and o not in lost_news], 3)
        unsettled = [o for o in unsettled if o not in late]

        def posted(order_id: int) -> bool:
            return any(
                int(o["numeroLoja"][2:]) == order_id and bling.postings[o["id"]] >= 1
                for o in list(bling.sales_orders.values())
            )

        def settle(up_to: int) -> None:
            """Deliver the news due once order ``up_to`` is sold."""
            for order_id in [o for o in unsettled if o + news_after[o] <= up_to]:
                unsettled.remove(order_id)
                lost = order_id in lost_news
                if fate[order_id] == PAID_LATER:
                    deployment.pay(order_id, lost=lost)
                else:
                    deployment.cancel(order_id, lost=lost)

        bling.fail_rate = 0.30
        bling.lose_answers_rate = 0.15

        def bursts() -> None:  # another app on the account is busy now and then
            while not stop_bursts.wait(4.0):
                bling.burst_429(3)

        def done() -> int:
            return deployment.jobs(None)["done"]

        threading.Thread(target=bursts, daemon=True).start()
        workers = [deployment.start_worker(), deployment.start_worker()]
        started = time.monotonic()
        for order_id in range(1, 101):
            sell(order_id)
            settle(order_id)
        wait_for(lambda: done() >= 30, "30 jobs done", 120)
        deployment.kill(workers[0])  # SIGKILL, mid-work: its leased job waits out the lease
        workers[0] = deployment.start_worker()
        for order_id in range(101, 201):
            sell(order_id)
            settle(order_id)
        wait_for(lambda: done() >= 110, "110 jobs done", 180)
        deployment.kill(workers[1])
        workers[1] = deployment.start_worker()
        settle(10**6)  # the last news, while forwards, reversals and cancellations run
        assert unsettled == []
        wait_for(lambda: all(posted(o) for o in late), "the late cancellations' forwards", 240)
        for order_id in late:
            deployment.cancel(order_id)
        wait_for(lambda: done() >= 170, "170 jobs done", 180)
        # Bling recovers: what is left drains (no operator, no retry command), the lost
        # webhooks' orders included, once the reconciliation has brought them.
        stop_bursts.set()
        bling.fail_rate = bling.lose_answers_rate = 0.0
        expected = sum(1 for w in fate.values() if w in (KEPT, PAID_LATER))
        wait_for(lambda: deployment.forwarded() == expected, "the lost orders forwarded", 360)
        lost_cancels = {o for o in lost_news if fate[o] == CANCELLED}
        wait_for(lambda: deployment.cancelled() >= lost_cancels, "the lost cancellations", 120)
        wait_for(lambda: deployment.jobs(None)["pending"] == 0, "every job done", 360)
        elapsed = time.monotonic() - started
        for proc in workers:
            assert deployment.runner.stop(proc) == 0

        # Bling: one sales order per order that reached it, never two.
        by_store_number = Counter(o["numeroLoja"] for o in bling.sales_orders.values())
        assert set(by_store_number.values()) == {1}, "a sales order made twice"
        in_bling = {int(o["numeroLoja"][2:]): o for o in bling.sales_orders.values()}
        for order_id, what in fate.items():
            order = in_bling.get(order_id)
            if what in (KEPT, PAID_LATER):
                assert order is not None, (order_id, what)
                assert (bling.postings[order["id"]], bling.reversals[order["id"]]) == (1, 0)
                assert bling.situation_of(order["id"]) == "Em aberto", order_id
                assert {(i["codigo"], i["quantidade"]) for i in order["itens"]} == {
                    (sku, float(qty)) for sku, qty in sales[order_id]
                }
            elif what == CANCELLED and order is not None:
                # Posted at most once, and whatever was posted reversed once, by us.
                postings, reversals = bling.postings[order["id"]], bling.reversals[order["id"]]
                assert postings == reversals and postings <= 1, (order_id, postings, reversals)
                assert bling.situation_of(order["id"]) == "Cancelado", order_id
                changes = [c for c in bling.situation_changes if c[0] == order["id"]]
                assert len(changes) == 1, (order_id, changes)
            else:
                assert order is None or what == CANCELLED, (order_id, what)
        assert sum(bling.situation_reversals.values()) == 0, "the reversal always came first"
        # The outbox: no job lost, none dead.
        jobs = deployment.jobs(None)
        assert set(jobs) == {"done"}, jobs
        paid = sum(1 for what in fate.values() if what in (KEPT, CANCELLED, PAID_LATER))
        assert deployment.jobs()["done"] == paid, "one forward per paid order"
        assert deployment.forwarded() == sum(1 for w in fate.values() if w in (KEPT, PAID_LATER))
        # The ledger: every commitment acknowledged or given back. Each worker start ran a
        # reconciliation while orders were in flight; a balance read between Bling's posting and
        # our acknowledgement is taken minus that order again (stock_sync.py: we cannot tell when
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
        cancelled_in_bling = len(bling.situation_changes)
        reversed_first = sum(
            1 for order_id, _, _ in bling.situation_changes if bling.reversals[order_id]
        )
        assert reversed_first >= 1, "no cancellation came after a forward: the run proved little"
        print(
            f"\nchaos: 200 orders ({dict(Counter(fate.values()))}) settled in {elapsed:.1f} s "
            f"through {len(bling.calls)} Bling calls ({len(bling.calls) / 200:.1f} per order); "
            f"{cancelled_in_bling} sales orders cancelled in Bling ({reversed_first} after their "
            f"posting was reversed); answers {dict(statuses)}; "
            f"{undercounted} units undercounted until the final reconciliation; "
            f"{len(lost_sale)} orders and {len(lost_news)} payments or cancellations brought by "
            f"the order reconciliation alone"
        )
    finally:
        stop_bursts.set()
        deployment.close()
        shopify.__exit__(None, None, None)


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
