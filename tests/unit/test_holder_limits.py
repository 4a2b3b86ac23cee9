"""HolderLimits, the per-cart caps of the ledger (pure domain, no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shopify_app.stock.domain import (
    Hold,
    HolderLimits,
    HoldLimitExceeded,
    HoldSource,
    HoldStatus,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def hold(
    sku: str, quantity: int, expires_in: float, status: HoldStatus = HoldStatus.ACTIVE
) -> Hold:
    return Hold(
        id=uuid.uuid4(),
        sku=sku,
        quantity=quantity,
        holder="cart",
        source=HoldSource.PROXY,
        status=status,
        created_at=NOW - timedelta(minutes=1),
        expires_at=NOW + timedelta(seconds=expires_in),
    )


def refusal(limits: HolderLimits, holds: list[Hold], demand: dict[str, int]) -> HoldLimitExceeded:
    with pytest.raises(HoldLimitExceeded) as caught:
        limits.check(holds, demand, NOW)
    return caught.value


def test_no_caps_allow_anything() -> None:
    limits = HolderLimits()
    assert not limits.enabled
    limits.check([hold("A", 100, 60)] * 50, {"A": 1000, "B": 1}, NOW)
    assert limits.grantable(100, 7) == 7


def test_units_of_one_sku_count_only_live_holds_of_that_sku() -> None:
    limits = HolderLimits(max_units_per_sku=3)
    holds = [
        hold("A", 2, 60),
        hold("A", 5, -1),  # past its time: no longer counts
        hold("A", 5, 60, HoldStatus.CONFIRMED),  # bought: not a hold any more
        hold("B", 3, 60),
    ]
    limits.check(holds, {"A": 1}, NOW)
    exc = refusal(limits, holds, {"A": 2})
    assert (exc.limit, exc.maximum, exc.held, exc.skus) == ("units_per_sku", 3, 2, ["A"])
    assert exc.retry_after == 60


def test_retry_after_is_when_enough_units_have_run_out() -> None:
    limits = HolderLimits(max_units_per_sku=4)
    holds = [hold("A", 1, 30.2), hold("A", 2, 120), hold("A", 1, 600)]
    assert refusal(limits, holds, {"A": 1}).retry_after == 31  # rounded up, the first is enough
    assert refusal(limits, holds, {"A": 3}).retry_after == 120  # needs the first two
    exc = refusal(limits, holds, {"A": 5})  # more than one cart may ever hold
    assert exc.retry_after is None


def test_active_holds_count_every_new_sku_of_the_request() -> None:
    limits = HolderLimits(max_active_holds=3)
    holds = [hold("A", 1, 90), hold("B", 1, 30), hold("C", 1, -5)]
    limits.check(holds, {"D": 1}, NOW)
    exc = refusal(limits, holds, {"D": 1, "E": 1})
    assert (exc.limit, exc.held, exc.skus) == ("active_holds", 2, ["D", "E"])
    assert exc.retry_after == 30


def test_grantable_clamps_to_what_is_left_under_the_cap() -> None:
    limits = HolderLimits(max_units_per_sku=5)
    assert limits.grantable(0, 50) == 5
    assert limits.grantable(3, 50) == 2
    assert limits.grantable(5, 1) == 0
    assert limits.grantable(7, 1) == 0
    assert limits.grantable(1, 2) == 2
