"""The storefront's batch statement, and the cart webhook's, read only their carts' holds,
whatever the statistics say.

Statistics can lag the live holds: a new store's first sale starts with statistics gathered
when none was live. The capped batch once let the planner pick the active holds' index for
its holders' live holds (``status = 'active' AND expires_at > now``), and then read every live
hold of the store for each batch; the statement took 5.6 ms instead of 1.4 in bench/run.py's
proxy_spread.
Here the statistics are gathered on an empty ``holds`` before 20,000 live holds arrive, and
the plan is checked as PostgreSQL makes it both for one execution and once prepared (generic).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from shopify_app.clock import utc_now
from shopify_app.stock import fast_path, pg_statements
from shopify_app.stock.domain import (
    Hold,
    HolderLimits,
    HoldSource,
    HoldStatus,
    StockLevel,
    new_hold_id,
)

pytestmark = pytest.mark.postgres

LIVE_HOLDS = 20_000


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _reads_of_holds(plan: dict[str, Any]) -> list[str]:
    """How each scan of ``holds`` in ``plan`` reads it: its node type and index."""
    return [
        f"{node['Node Type']} {node.get('Index Name', '')}".strip()
        for node in _nodes(plan)
        if node["Node Type"] != "ModifyTable"
        and (
            node.get("Relation Name") == "holds"
            or node.get("Index Name", "").startswith("ix_holds")
        )
    ]


def _live_holds_after_statistics(engine: Engine, now: datetime) -> None:
    """50 SKUs, their statistics gathered with no hold yet (as before a sale), then
    LIVE_HOLDS live holds of as many carts."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO skus (sku, on_hand, reserved, committed, external_on_hand,"
                " created_at, updated_at) SELECT 'BZ-PLAN-' || g, 1000000, 0, 0, 0, now(),"
                " now() FROM generate_series(1, 50) AS g"
            )
        )
        conn.execute(text("ANALYZE"))
        conn.execute(
            text(
                "INSERT INTO holds (id, sku, quantity, holder, source, status, created_at,"
                " expires_at, updated_at) SELECT gen_random_uuid(), 'BZ-PLAN-' || (1 + g % 50),"
                " 1, md5(g::text), 'cart', 'active', :now, :later, :now"
                " FROM generate_series(1, :n) AS g"
            ),
            {"now": now, "later": now + timedelta(minutes=10), "n": LIVE_HOLDS},
        )


def _hold(i: int, holder: str, source: HoldSource, now: datetime) -> Hold:
    """A new live hold of one unit of BZ-PLAN-``i``."""
    return Hold(
        id=new_hold_id(),
        sku=f"BZ-PLAN-{i}",
        quantity=1,
        holder=holder,
        source=source,
        status=HoldStatus.ACTIVE,
        created_at=now,
        expires_at=now + timedelta(minutes=10),
    )


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_the_capped_batch_reads_its_holders_holds_by_the_holder_index(
    postgres_url: str, plan_cache_mode: str
) -> None:
    engine = create_engine(postgres_url)
    now = utc_now()
    try:
        _live_holds_after_statistics(engine, now)
        holds = [_hold(i, uuid.uuid4().hex, HoldSource.PROXY, now) for i in range(1, 10)]
        counters = [[(f"ip:{h.holder}", 60, 300), (f"cart:{h.holder}", 60, 30)] for h in holds]
        limits = HolderLimits(max_units_per_sku=5, max_active_holds=25)
        (_, _), (sql, params) = fast_path.capped_statements(holds, limits, now, counters)
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute(f"SET plan_cache_mode = {plan_cache_mode}")
            (plan,) = driver.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()
            driver.rollback()
        document = json.loads(plan) if isinstance(plan, str) else plan
        reads = _reads_of_holds(document[0]["Plan"])
        by_holder = {"Index Scan ix_holds_holder", "Bitmap Index Scan ix_holds_holder"}
        assert reads and set(reads) <= by_holder | {"Bitmap Heap Scan"}, reads
    finally:
        engine.dispose()


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_the_cart_webhooks_statements_find_holds_by_index(
    postgres_url: str, plan_cache_mode: str
) -> None:
    """stock/pg_statements.py: a cart's locks and holds, and the flush that changes some of
    them, read ``holds`` by an index, not a scan of the store's live holds."""
    engine = create_engine(postgres_url)
    now = utc_now()
    try:
        _live_holds_after_statistics(engine, now)
        mine = [_hold(i, "the-cart", HoldSource.CART, now) for i in range(1, 4)]
        levels = {h.sku: StockLevel(h.sku, 1000000, 1, 0) for h in mine}
        changed = [(h, HoldStatus.ACTIVE) for h in mine[:2]]
        for hold in mine[:2]:
            levels[hold.sku].release(hold)
        statements = [
            *pg_statements.lock_for_holder("the-cart", [h.sku for h in mine]),
            pg_statements.flush(
                mine[2:],
                changed,
                [(h.sku, 0, -1, 0, 0) for h in mine[:2]],
                [m for level in levels.values() for m in level.pending],
                {"BZ-PLAN-1": 1},
                now,
            ),
        ]
        reads = []
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute(f"SET plan_cache_mode = {plan_cache_mode}")
            for statement in statements:
                explain = f"EXPLAIN (FORMAT JSON) {statement.sql}"
                (plan,) = driver.execute(explain, statement.params).fetchone()
                document = json.loads(plan) if isinstance(plan, str) else plan
                reads.append(_reads_of_holds(document[0]["Plan"]))
            driver.rollback()
        assert all("Seq Scan" not in read for found in reads for read in found), reads
    finally:
        engine.dispose()
