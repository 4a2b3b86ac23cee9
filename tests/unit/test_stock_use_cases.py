"""The stock use cases (stock/services.py, stock/reservations.py) over in-memory fakes: every rule
and refusal, in milliseconds. The same use cases run on SQLite and PostgreSQL in tests/integration
and through HTTP in tests/e2e; these pin the logic alone."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from shopify_app.stock import services
from shopify_app.stock.domain import (
    AlreadyConfirmed,
    Hold,
    HolderLimits,
    HoldGone,
    HoldLimitExceeded,
    HoldNotFound,
    HoldSource,
    HoldStatus,
    Line,
    OutOfStock,
    UnknownSku,
)
from shopify_app.stock.reservations import LockedReservations
from tests.support.clock import FakeClock
from tests.support.fakes import FakeUnitOfWork, StockStore

TTL = timedelta(minutes=15)


def reserve(
    uow: FakeUnitOfWork, *lines: tuple[str, int], holder: str | None = "cart", **kw: Any
) -> list[Hold]:
    return services.reserve(
        uow, [Line(s, q) for s, q in lines], holder=holder, source=HoldSource.API, ttl=TTL, **kw
    )


def balanced(store: StockStore) -> None:
    """Counters equal the movements' sums, and reserved equals the active holds."""
    totals = {}
    for m in store.movements:
        a, b, c = totals.get(m.sku, (0, 0, 0))
        totals[m.sku] = (a + m.on_hand, b + m.reserved, c + m.committed)
    active: dict[str, int] = {}
    for h in store.holds.values():
        if h.status is HoldStatus.ACTIVE:
            active[h.sku] = active.get(h.sku, 0) + h.quantity
    for sku, row in store.rows.items():
        assert totals.get(sku, (0, 0, 0)) == row, sku
        assert active.get(sku, 0) == row[1], sku


# --- reserve ------------------------------------------------------------------------------------


def test_reserve_holds_every_line_and_records_a_movement_each(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=3, CAP=1)
    holds = reserve(uow, ("TEE", 2), ("CAP", 1), ("TEE", 1))
    assert sorted((h.sku, h.quantity) for h in holds) == [("CAP", 1), ("TEE", 3)]
    assert store.figures("TEE")["available"] == 0 and store.figures("CAP")["available"] == 0
    assert uow.commits == 1
    balanced(store)


def test_a_short_line_refuses_all_of_them_and_names_each_shortfall(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=3, CAP=1)
    before = (dict(store.rows), dict(store.holds))
    with pytest.raises(OutOfStock) as refused:
        reserve(uow, ("TEE", 2), ("CAP", 2))
    assert refused.value.available == {"CAP": 1}
    assert (store.rows, store.holds) == before, "all or nothing"


def test_an_unknown_sku_is_refused_and_changes_nothing(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=3)
    with pytest.raises(UnknownSku) as refused:
        reserve(uow, ("TEE", 1), ("NOPE", 1))
    assert refused.value.skus == ["NOPE"]
    assert store.holds == {}


def test_a_short_sku_first_expires_holds_whose_time_is_up(
    uow: FakeUnitOfWork, store: StockStore, clock: FakeClock
) -> None:
    store.stock(LAST=1)
    (old,) = reserve(uow, ("LAST", 1), holder="a")
    clock.advance(TTL.total_seconds())
    (new,) = reserve(uow, ("LAST", 1), holder="b")
    assert store.holds[old.id].status is HoldStatus.EXPIRED
    assert store.holds[new.id].status is HoldStatus.ACTIVE
    balanced(store)


def test_sold_out_keeps_the_expiries_it_made(
    uow: FakeUnitOfWork, store: StockStore, clock: FakeClock
) -> None:
    store.stock(LAST=2)
    (old,) = reserve(uow, ("LAST", 1), holder="a")
    reserve(uow, ("LAST", 1), holder="c")
    clock.advance(TTL.total_seconds())
    with pytest.raises(OutOfStock):
        reserve(uow, ("LAST", 3), holder="d")
    assert store.holds[old.id].status is HoldStatus.EXPIRED, "true whatever the request got"
    balanced(store)


def test_per_holder_caps_refuse_before_any_stock_is_touched(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=100)
    caps = HolderLimits(max_units_per_sku=2, max_active_holds=5)
    reserve(uow, ("TEE", 2), holder="bot", limits=caps)
    rows = dict(store.rows)
    with pytest.raises(HoldLimitExceeded) as refused:
        reserve(uow, ("TEE", 1), holder="bot", limits=caps)
    assert (refused.value.limit, refused.value.maximum, refused.value.held) == (
        "units_per_sku",
        2,
        2,
    )
    assert store.rows == rows
    assert store.locked_holders == ["bot", "bot"], "the holder is locked before its holds are read"
    reserve(uow, ("TEE", 2), holder="honest", limits=caps)  # another cart is not affected


def test_new_units_join_the_line_of_a_live_hold_of_the_same_cart_and_sku(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=5, CAP=5)
    (first,) = reserve(uow, ("TEE", 1), holder="a")
    (joined,) = reserve(uow, ("TEE", 1), holder="a", line_ref=first.id)
    assert joined.line_id == first.id and joined.id != first.id
    (cap,) = reserve(uow, ("CAP", 1), holder="a", line_ref=first.id)  # another SKU
    (theirs,) = reserve(uow, ("TEE", 1), holder="b", line_ref=first.id)  # another cart
    (made_up,) = reserve(uow, ("TEE", 1), holder="a", line_ref=uuid.uuid4())
    assert [h.line_id for h in (cap, theirs, made_up)] == [cap.id, theirs.id, made_up.id]


# --- release and confirm ----------------------------------------------------------------------


def test_release_gives_the_units_back_and_repeating_it_is_a_no_op(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=2)
    (hold,) = reserve(uow, ("TEE", 2))
    services.release(uow, hold.id)
    assert store.figures("TEE")["available"] == 2
    commits = uow.commits
    services.release(uow, hold.id)
    assert uow.commits == commits, "nothing to write"
    with pytest.raises(HoldNotFound):
        services.release(uow, uuid.uuid4())
    balanced(store)


def test_confirm_commits_once_per_order_and_refuses_a_second_order(
    uow: FakeUnitOfWork, store: StockStore
) -> None:
    store.stock(TEE=2)
    (hold,) = reserve(uow, ("TEE", 2))
    services.confirm(uow, [hold.id], order_ref="#1001")
    services.confirm(uow, [hold.id], order_ref="#1001")  # the same order again: 200, no change
    assert store.figures("TEE") == {"on_hand": 2, "reserved": 0, "committed": 2, "available": 0}
    with pytest.raises(AlreadyConfirmed):
        services.confirm(uow, [hold.id], order_ref="#1002")
    with pytest.raises(AlreadyConfirmed):
        services.release(uow, hold.id)
    assert [e.action for e in uow.committed_events].count("order.confirmed") == 1
    balanced(store)


def test_an_expired_hold_cannot_be_confirmed_and_nothing_changes(
    uow: FakeUnitOfWork, store: StockStore, clock: FakeClock
) -> None:
    store.stock(TEE=2)
    (a,) = reserve(uow, ("TEE", 1))
    (b,) = reserve(uow, ("TEE", 1))
    clock.advance(TTL.total_seconds())
    rows = dict(store.rows)
    with pytest.raises(HoldGone):
        services.confirm(uow, [a.id, b.id], order_ref="#1")
    assert store.rows == rows


# --- set on hand, the sweeper, drift ---------------------------------------------------------


def test_set_on_hand_creates_the_sku_and_is_audited(uow: FakeUnitOfWork, store: StockStore) -> None:
    view = services.set_on_hand(uow, "NEW", 7, reference="count")
    assert (view.on_hand, view.available) == (7, 7)
    assert [(m.sku, m.reason.value, m.on_hand) for m in store.movements] == [("NEW", "adjust", 7)]


def test_the_sweeper_expires_due_holds_in_batches(
    uow: FakeUnitOfWork, store: StockStore, clock: FakeClock
) -> None:
    store.stock(A=5, B=5, C=5)
    for sku in "ABC":
        reserve(uow, (sku, 2))
    clock.advance(TTL.total_seconds())
    assert services.expire_due(uow, batch_skus=2) == 3
    assert services.expire_due(uow) == 0
    assert all(store.figures(s)["reserved"] == 0 for s in "ABC")
    balanced(store)


def test_drift_is_found_where_a_counter_disagrees(uow: FakeUnitOfWork, store: StockStore) -> None:
    store.stock(TEE=3)
    reserve(uow, ("TEE", 1))
    assert services.find_drift(uow) == []
    on_hand, reserved, committed = store.rows["TEE"]
    store.rows["TEE"] = (on_hand, reserved + 1, committed)  # a bug wrote the counter
    drift = services.find_drift(uow)
    assert {(d.figure, d.source) for d in drift} == {
        ("reserved", "movements"),
        ("reserved", "holds"),
    }


# --- the seam ------------------------------------------------------------------------------------


def test_the_locked_reservations_are_the_use_cases_on_a_new_unit_of_work(
    store: StockStore, clock: FakeClock
) -> None:
    store.stock(TEE=1)
    made: list[FakeUnitOfWork] = []

    def new_uow(**_: object) -> FakeUnitOfWork:
        made.append(FakeUnitOfWork(store, clock))
        return made[-1]

    seam = LockedReservations(new_uow)
    (hold,) = seam.reserve([Line("TEE", 1)], holder=None, source=HoldSource.API, ttl=TTL)
    view = seam.level("TEE")
    assert view is not None and (view.reserved, view.available) == (1, 0)
    assert seam.level("NOPE") is None
    with pytest.raises(OutOfStock):
        seam.reserve([Line("TEE", 1)], holder=None, source=HoldSource.API, ttl=TTL)
    assert len(made) == 4, "one unit of work per call"
    assert store.holds[hold.id].status is HoldStatus.ACTIVE
