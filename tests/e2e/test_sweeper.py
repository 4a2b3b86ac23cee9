"""The sweeper's set-based expiry on PostgreSQL (``fast_path.expire_due_batch``, used by the
worker through ``Reservations.expire_due``) does what the domain's expiry does: every due hold
of every SKU expired once, the counters, movements and marks with it, live and confirmed holds
left alone, in batches of SKUs or of holds, while buyers keep reserving the same SKUs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import Engine, text

from shopify_app.config import load_settings
from shopify_app.db.engine import make_engine
from shopify_app.stock import services
from shopify_app.stock.domain import HoldSource, Line
from shopify_app.stock.reservations import reservations_for
from shopify_app.unit_of_work import SqlAlchemyUnitOfWork
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(load_settings({"DATABASE_URL": postgres_url, "DB_POOL_SIZE": "20"}))
    yield engine
    engine.dispose()


# Batches of 3 SKUs, then batches of 2 holds (a hot SKU's wave expires in several statements).
@pytest.mark.parametrize(("batch_skus", "batch_holds"), [(3, 500), (50, 2)])
def test_the_set_based_sweep_expires_every_due_hold_once_in_batches(
    engine: Engine, batch_skus: int, batch_holds: int
) -> None:
    clock = FakeClock()
    uow = partial(SqlAlchemyUnitOfWork, engine, clock=clock)
    skus = [f"BZ-SW-{n:02d}" for n in range(7)]
    for sku in skus:
        services.set_on_hand(uow(), sku, 100, reference="count")
    reservations = reservations_for(engine, clock, uow)
    short, long = timedelta(seconds=60), timedelta(hours=1)
    due = 0
    for n, sku in enumerate(skus):
        for k in range(n + 1):
            reservations.reserve(
                [Line(sku, 1 + k % 2)],
                holder=f"cart-{n}-{k}",
                source=HoldSource.PROXY if k % 2 else HoldSource.API,
                ttl=short,
            )
            due += 1
        reservations.reserve([Line(sku, 3)], holder=None, source=HoldSource.API, ttl=long)
    clock.advance(61)
    # Buyers keep reserving the same SKUs while the sweep runs.
    stop = threading.Event()

    def buyer() -> None:
        while not stop.is_set():
            reservations.reserve([Line(skus[0], 1)], holder=None, source=HoldSource.API, ttl=long)

    thread = threading.Thread(target=buyer)
    thread.start()
    try:
        assert reservations.expire_due(batch_skus=batch_skus, batch_holds=batch_holds) == due
    finally:
        stop.set()
        thread.join(10)
    assert reservations.expire_due(batch_skus=batch_skus, batch_holds=batch_holds) == 0
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM holds WHERE status = 'active' AND expires_at <= :now"),
            {"now": clock.now},
        ).scalar_one()
        expired = conn.execute(
            text("SELECT count(*) FROM stock_movements WHERE reason = 'expire'")
        ).scalar_one()
        marks = conn.execute(text("SELECT count(*) FROM dirty_skus")).scalar_one()
    assert (left, expired) == (0, due)
    assert marks == len(skus)
    for sku in skus[1:]:
        assert figures(engine, sku)["reserved"] == 3  # the long hold only
    assert_ledger_balanced(engine)
