"""Group commit (stock/combiner.py) on real PostgreSQL.

1. Threads of one process racing for few units form real batches, and no batch ever holds a unit
   it cannot cover: exactly the stock is held, never more, the ledger balances.
2. A gunicorn worker killed after it combined requests and sent their transaction, but before
   COMMIT, leaves no hold, and none of those clients got a 200.
3. Under the per-cart caps (the storefront's path), carts racing on two engines (two processes'
   combiners) each get exactly their cap, in batches, and the rest is refused by the cap.
4. The rate counters counted inside those batches (one statement with the stock): a bot rotating
   carts from one address on two processes gets exactly its address's rate, and every request
   is counted once, the refused ones included.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, text

from shopify_app.clock import utc_now
from shopify_app.config import load_settings
from shopify_app.db.engine import make_engine
from shopify_app.ratelimit import RateLimited, RateLimits, rate_limit_counters
from shopify_app.stock import combiner as combiner_module
from shopify_app.stock import services
from shopify_app.stock.domain import (
    HolderLimits,
    HoldLimitExceeded,
    HoldSource,
    Line,
    OutOfStock,
)
from shopify_app.stock.reservations import reservations_for
from shopify_app.stock.tables import holds
from shopify_app.unit_of_work import SqlAlchemyUnitOfWork
from tests.support.app import TOKEN
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.procfile import ProcfileRunner, call, children_of, free_port, wait_ready

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(load_settings({"DATABASE_URL": postgres_url, "DB_POOL_SIZE": "40"}))
    yield engine
    engine.dispose()


def test_batches_form_and_never_hold_more_than_the_stock(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.set_on_hand(SqlAlchemyUnitOfWork(engine), "BZ-GC", 50, reference="count")
    batch_sizes: list[int] = []
    real_batch = combiner_module.reserve_batch

    def counting_batch(*args: Any, **kw: Any) -> bool:  # a spy: the real statement runs
        batch_sizes.append(len(args[1]))
        return real_batch(*args, **kw)

    monkeypatch.setattr(combiner_module, "reserve_batch", counting_batch)
    rng = random.Random(7)
    wanted = [rng.randint(1, 3) for _ in range(60)]  # ~120 units asked for 50 on hand
    start = threading.Barrier(len(wanted))
    granted: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()

    reservations = reservations_for(engine, utc_now, partial(SqlAlchemyUnitOfWork, engine))

    def buyer(quantity: int) -> None:
        start.wait()
        try:
            reservations.reserve(
                [Line("BZ-GC", quantity)],
                holder=None,
                source=HoldSource.API,
                ttl=timedelta(minutes=15),
            )
        except OutOfStock:
            with lock:
                refused.append(quantity)
            return
        with lock:
            granted.append(quantity)

    threads = [threading.Thread(target=buyer, args=(q,)) for q in wanted]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert max(batch_sizes, default=0) >= 2, "concurrent requests were combined"
    level = figures(engine, "BZ-GC")
    assert level["reserved"] == sum(granted) <= 50
    assert level["available"] >= 0
    # Every refusal was true when it was made: what it asked for did not fit in what was left.
    assert all(q > 50 - sum(granted) for q in refused)
    assert len(granted) + len(refused) == len(wanted)
    assert 50 - sum(granted) < 3, "the stock was sold down to less than the largest request"
    assert_ledger_balanced(engine)


def test_carts_racing_across_processes_get_exactly_their_caps_in_batches(
    postgres_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.set_on_hand(SqlAlchemyUnitOfWork(engine), "BZ-CAP-A", 1000, reference="count")
    services.set_on_hand(SqlAlchemyUnitOfWork(engine), "BZ-CAP-B", 1000, reference="count")
    other = make_engine(load_settings({"DATABASE_URL": postgres_url, "DB_POOL_SIZE": "40"}))
    batch_sizes: list[int] = []
    real_batch = combiner_module.reserve_capped_batch

    def counting_batch(*args: Any, **kw: Any) -> Any:  # a spy: the real transaction runs
        batch_sizes.append(len(args[1]))
        return real_batch(*args, **kw)

    monkeypatch.setattr(combiner_module, "reserve_capped_batch", counting_batch)
    limits = HolderLimits(max_units_per_sku=3, max_active_holds=4)
    sides = [
        reservations_for(e, utc_now, partial(SqlAlchemyUnitOfWork, e)) for e in (engine, other)
    ]
    carts = [f"cart-{n}" for n in range(4)]
    # Each cart asks 12 times for 1 unit of A and 6 times for 1 of B, from both processes.
    asks = [(cart, sku) for cart in carts for sku in ["BZ-CAP-A"] * 12 + ["BZ-CAP-B"] * 6]
    random.Random(3).shuffle(asks)
    start = threading.Barrier(len(asks))
    granted: Counter[tuple[str, str]] = Counter()
    refused: Counter[str] = Counter()
    lock = threading.Lock()

    def shopper(n: int, cart: str, sku: str) -> None:
        start.wait()
        try:
            sides[n % 2].reserve(
                [Line(sku, 1)],
                holder=cart,
                source=HoldSource.PROXY,
                ttl=timedelta(minutes=15),
                limits=limits,
            )
        except HoldLimitExceeded as exc:
            with lock:
                refused[exc.limit] += 1
            return
        with lock:
            granted[(cart, sku)] += 1

    threads = [
        threading.Thread(target=shopper, args=(n, cart, sku)) for n, (cart, sku) in enumerate(asks)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        other.dispose()
    assert max(batch_sizes, default=0) >= 2, "capped requests were combined"
    for cart in carts:  # 3 of A (the units cap), then 1 of B (4 live holds at most)
        per_cart = granted[(cart, "BZ-CAP-A")] + granted[(cart, "BZ-CAP-B")]
        assert granted[(cart, "BZ-CAP-A")] <= 3 and per_cart == 4, granted
    assert sum(granted.values()) + sum(refused.values()) == len(asks)
    with engine.connect() as conn:
        live = conn.execute(
            text("SELECT holder, count(*) FROM holds WHERE status = 'active' GROUP BY holder")
        ).all()
    assert {holder: n for holder, n in live} == dict.fromkeys(carts, 4)
    assert_ledger_balanced(engine)


def test_a_worker_killed_between_combine_and_commit_leaves_no_hold(
    postgres_url: str,
) -> None:
    port = free_port()
    runner = ProcfileRunner(
        {
            "DATABASE_URL": postgres_url,
            "PORT": str(port),
            "APP_ENV": "development",
            "STOCK_API_TOKEN": TOKEN,
            "WEB_CONCURRENCY": "1",
            "WEB_THREADS": "8",
            "LOG_LEVEL": "WARNING",
        }
    )
    blocker = create_engine(postgres_url)
    try:
        web = runner.start("web")
        wait_ready(port, web)
        assert call(port, "PUT", "/stock/BZ-KILL", {"on_hand": 100}, token=TOKEN)[0] == 200
        worker_pid = _only_worker(web.pid)

        with blocker.connect() as conn:
            lock = conn.begin()
            conn.execute(text("SELECT 1 FROM skus WHERE sku = 'BZ-KILL' FOR UPDATE"))
            answers: dict[int, Any] = {}

            def shopper(index: int) -> None:
                try:
                    answers[index] = call(
                        port, "POST", "/stock/BZ-KILL/reserve", {"quantity": 1}, token=TOKEN
                    )[0]
                except OSError as exc:
                    answers[index] = type(exc).__name__

            first = threading.Thread(target=shopper, args=(0,))
            first.start()
            lone = _wait_for_waiting_statement(blocker, "RETURNING sku\n), hold")
            others = [threading.Thread(target=shopper, args=(i,)) for i in range(1, 8)]
            for thread in others:
                thread.start()
            time.sleep(1.0)  # the seven queue behind the first, in the worker's combiner
            # Cancel the lone first statement: its request fails (503), and the seven, combined,
            # go to PostgreSQL as one transaction, which waits on the test's lock.
            with blocker.connect() as admin:
                admin.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": lone})
            _wait_for_waiting_statement(blocker, "unnest")  # the combined transaction

            signal_worker(worker_pid, signal.SIGKILL)  # combined and sent, never committed
            time.sleep(0.5)
            lock.rollback()  # the batch's statement may run now; its COMMIT never comes

        first.join(30)
        for thread in others:
            thread.join(30)
        assert answers[0] == 503
        assert 200 not in answers.values(), answers
        assert Counter(a for i, a in answers.items() if i > 0).keys() <= {
            "RemoteDisconnected",
            "ConnectionResetError",
            "IncompleteRead",
        }
        time.sleep(1.0)  # let PostgreSQL notice the dead client and roll back
        with blocker.connect() as conn:
            held = conn.execute(select(holds).where(holds.c.sku == "BZ-KILL")).all()
        assert held == []
        assert figures(blocker, "BZ-KILL")["reserved"] == 0
        # The master replaced the worker: the service goes on.
        wait_ready(port, web)
        assert call(port, "POST", "/stock/BZ-KILL/reserve", {"quantity": 1}, token=TOKEN)[0] == 200
    finally:
        runner.close()
        blocker.dispose()


def _only_worker(master_pid: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        workers = children_of(master_pid)
        if len(workers) == 1:
            return workers[0]
        time.sleep(0.1)
    raise AssertionError("expected exactly one gunicorn worker")


def signal_worker(pid: int, sig: signal.Signals) -> None:
    os.kill(pid, sig)


def _wait_for_waiting_statement(engine: Engine, fragment: str, timeout: float = 15) -> int:
    """The pid of the backend whose query contains ``fragment`` and waits on a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pid, query FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).all()
        for pid, query in rows:
            if fragment in (query or ""):
                return int(pid)
        time.sleep(0.05)
    raise AssertionError(f"no statement with {fragment!r} waiting on the lock")


def test_an_address_rotating_carts_across_processes_gets_exactly_its_rate_in_batches(
    postgres_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.set_on_hand(SqlAlchemyUnitOfWork(engine), "BZ-RATE", 1000, reference="count")
    settings = load_settings(
        {
            "DATABASE_URL": postgres_url,
            "RATE_LIMIT_PER_IP": "10/minute",
            "RATE_LIMIT_PER_CART": "2/minute",
        }
    )
    other = make_engine(load_settings({"DATABASE_URL": postgres_url, "DB_POOL_SIZE": "40"}))
    counted_in_batch: list[int] = []
    real_batch = combiner_module.reserve_capped_batch

    def counting_batch(*args: Any, **kw: Any) -> Any:  # a spy: the real transaction runs
        counted_in_batch.append(sum(1 for c in args[4] if c))
        return real_batch(*args, **kw)

    monkeypatch.setattr(combiner_module, "reserve_capped_batch", counting_batch)
    limits = HolderLimits(max_units_per_sku=5, max_active_holds=25)
    sides = [
        (reservations_for(e, utc_now, partial(SqlAlchemyUnitOfWork, e)), RateLimits(settings, e))
        for e in (engine, other)
    ]
    # 40 requests from one address, 20 carts asking twice each: the address allows 10.
    asks = [f"bot-cart-{n % 20}" for n in range(40)]
    start = threading.Barrier(len(asks))
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def bot(n: int, cart: str) -> None:
        reservations, rates = sides[n % 2]
        counting = rates.counting("reserve", ip="203.0.113.9", cart=cart)
        assert counting is not None
        start.wait()
        try:
            reservations.reserve(
                [Line("BZ-RATE", 1)],
                holder=cart,
                source=HoldSource.PROXY,
                ttl=timedelta(minutes=15),
                limits=limits,
                counting=counting,
            )
            outcome = "held"
        except RateLimited as exc:
            outcome = f"limited:{exc.key}"
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=bot, args=(n, cart)) for n, cart in enumerate(asks)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        other.dispose()
    assert max(counted_in_batch, default=0) >= 2, "rate counters were counted in batches"
    assert outcomes["held"] == 10, outcomes
    assert sum(outcomes.values()) == 40
    with engine.connect() as conn:
        hits = dict(
            conn.execute(select(rate_limit_counters.c.key, rate_limit_counters.c.hits)).all()
        )
        live = conn.execute(
            text("SELECT count(*) FROM holds WHERE status = 'active' AND sku = 'BZ-RATE'")
        ).scalar_one()
    by_ip = [n for key, n in hits.items() if "203.0.113.9" in key]
    by_cart = [n for key, n in hits.items() if "bot-cart-" in key]
    assert by_ip == [40], hits  # every request counted once against the address
    assert sorted(by_cart) == [2] * 20, hits  # and once against its cart
    assert live == 10 == figures(engine, "BZ-RATE")["reserved"]
    assert_ledger_balanced(engine)
