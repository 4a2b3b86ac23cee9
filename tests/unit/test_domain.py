"""The ledger's rules on plain objects: no database, no Flask."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shopify_app.stock.domain import (
    AlreadyConfirmed,
    Hold,
    HoldGone,
    HoldSource,
    HoldStatus,
    Line,
    Movement,
    OutOfStock,
    Reason,
    StockLevel,
    check_confirmable,
    merge_lines,
)

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
TTL = timedelta(minutes=15)


def hold_of(level: StockLevel, quantity: int = 1) -> Hold:
    return level.reserve(quantity, holder="cart", source=HoldSource.API, now=NOW, ttl=TTL)


def test_available_is_derived_from_the_three_figures() -> None:
    level = StockLevel("A", on_hand=10, reserved=3, committed=2)
    assert level.available == 5


def test_reserve_records_a_movement_and_refuses_past_available() -> None:
    level = StockLevel("A", 3, 0, 0)
    hold = hold_of(level, 2)
    assert (level.reserved, level.available) == (2, 1)
    assert hold.expires_at == NOW + TTL and hold.status is HoldStatus.ACTIVE
    assert level.pending == [Movement("A", Reason.RESERVE, str(hold.id), reserved=2)]
    with pytest.raises(OutOfStock) as caught:
        hold_of(level, 2)
    assert caught.value.available == {"A": 1}
    assert len(level.pending) == 1


def test_confirm_moves_reserved_to_committed() -> None:
    level = StockLevel("A", 3, 0, 0)
    hold = hold_of(level, 2)
    level.confirm(hold, "#1")
    assert (level.on_hand, level.reserved, level.committed) == (3, 0, 2)
    assert hold.status is HoldStatus.CONFIRMED and hold.order_ref == "#1"


def test_release_and_expire_give_units_back_once() -> None:
    level = StockLevel("A", 3, 0, 0)
    first, second = hold_of(level), hold_of(level)
    level.release(first)
    level.expire(second)
    assert level.available == 3
    with pytest.raises(RuntimeError):
        level.release(first)  # an ended hold cannot be ended twice
    sums = [sum(getattr(m, f) for m in level.pending) for f in ("on_hand", "reserved", "committed")]
    assert sums == [0, 0, 0]


def test_set_on_hand_records_the_difference_only() -> None:
    level = StockLevel("A", 3, 1, 1)
    level.set_on_hand(7, "count")
    level.set_on_hand(7, "count")  # no change, no movement
    assert [m.on_hand for m in level.pending] == [4]
    with pytest.raises(ValueError):
        level.set_on_hand(-1, "count")


def test_repeated_lines_are_summed() -> None:
    assert merge_lines([Line("A", 1), Line("B", 2), Line("A", 3)]) == {"A": 4, "B": 2}
    with pytest.raises(ValueError):
        Line("A", 0)


def test_check_confirmable_decides_conflicts_before_expiry() -> None:
    level = StockLevel("A", 10, 0, 0)
    active, confirmed, due = hold_of(level), hold_of(level), hold_of(level)
    level.confirm(confirmed, "#1")
    due.expires_at = NOW
    assert check_confirmable([active, confirmed], "#1", NOW) == [active]
    with pytest.raises(AlreadyConfirmed):
        check_confirmable([confirmed, due], "#2", NOW)
    with pytest.raises(HoldGone) as caught:
        check_confirmable([active, due], "#1", NOW)
    assert caught.value.ids == [str(due.id)]
    assert not due.is_due(NOW - timedelta(seconds=1)) and due.is_due(NOW)


def test_hold_ids_are_random_uuids() -> None:
    level = StockLevel("A", 10, 0, 0)
    ids = {hold_of(level).id for _ in range(5)}
    assert len(ids) == 5 and all(isinstance(i, uuid.UUID) and i.version == 4 for i in ids)


def test_acknowledge_turns_committed_into_a_smaller_on_hand() -> None:
    level = StockLevel("A", 5, 1, 2)
    level.acknowledge(2, "bling:1")
    assert (level.on_hand, level.reserved, level.committed, level.available) == (3, 1, 0, 2)
    with pytest.raises(ValueError):
        level.acknowledge(1, "bling:2")  # nothing committed is left to acknowledge


def test_acknowledging_an_oversold_order_leaves_on_hand_at_zero() -> None:
    # Bling had 0 (or 1): Shopify sold 2 anyway, Bling posted them and is below zero now.
    level = StockLevel("A", 1, 0, 2)
    level.acknowledge(2, "bling:1")
    assert (level.on_hand, level.committed, level.available) == (0, 0, 0)
    assert (level.pending[-1].on_hand, level.pending[-1].committed) == (-1, -2)


def test_a_balance_read_before_an_acknowledgement_never_resurrects_the_unit() -> None:
    # Bling had 5; we sold 1 and Bling acknowledged it after our sync read the balance.
    level = StockLevel("A", 5, 0, 1)
    level.acknowledge(1, "bling:1")
    assert level.on_hand == 4
    level.apply_balance(5, offset=1, reference="sync")  # stale read: still 5
    assert level.on_hand == 4 and level.available == 4
    level.apply_balance(4, offset=0, reference="sync")  # a later read agrees
    assert [m.reason for m in level.pending] == [Reason.ACKNOWLEDGE]
    level.apply_balance(7, offset=0, reference="sync")  # restocked in Bling
    assert level.on_hand == 7 and level.pending[-1].on_hand == 3
    level.apply_balance(0, offset=2, reference="sync")
    assert level.on_hand == 0, "never below zero"


def test_each_hold_transition_is_recorded_as_the_change_it_is() -> None:
    level = StockLevel("TEE", 5, 0, 0)
    now = datetime(2026, 12, 2, tzinfo=UTC)
    a = level.reserve(1, holder="c1", source=HoldSource.API, now=now, ttl=timedelta(minutes=1))
    b = level.reserve(2, holder="c2", source=HoldSource.API, now=now, ttl=timedelta(minutes=1))
    c = level.reserve(1, holder="c3", source=HoldSource.API, now=now, ttl=timedelta(minutes=1))
    level.release_part(b, 1)  # a smaller hold, still active: no transition
    level.confirm(b, "shopify:1")
    level.release(a)
    level.expire(c)
    assert [(ch.action, ch.hold.id) for ch in level.changes] == [
        ("created", a.id),
        ("created", b.id),
        ("created", c.id),
        ("confirmed", b.id),
        ("released", a.id),
        ("expired", c.id),
    ]
