"""The stock metafield's value (shopify/stock_metafield.py) and the publisher's rules
(shopify/publishing.py) over in-memory fakes: coalescing, compare-and-clear, the 25-a-call and
once-a-second limits, the 200-entry bound, untracked variants, throttling and outages."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from shopify_app.shopify import client
from shopify_app.shopify.ports import VariantRef
from shopify_app.shopify.publishing import PublishPolicy, RoundReport, publish_round
from shopify_app.shopify.stock_metafield import (
    MAX_HOLD_ENTRIES,
    MAX_VALUE_BYTES,
    LiveHold,
    contract_problems,
    encode,
    stock_value,
)
from shopify_app.stock.dirty import Cleared
from tests.support.clock import FakeClock
from tests.support.fake_publishing import FakeMetafieldWriter, FakePublicationStore

SHOP = "fake-shop.myshopify.com"
V1, V2 = VariantRef(SHOP, 101), VariantRef(SHOP, 102)


def line(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


# --- the value ---------------------------------------------------------------------------------


def test_free_is_the_ledgers_available_and_holds_sum_by_line(clock: FakeClock) -> None:
    now = clock()
    holds = [
        LiveHold(line(1), 2, now + timedelta(minutes=10)),
        LiveHold(line(1), 1, now + timedelta(minutes=5)),  # joined the same cart line
        LiveHold(line(2), 1, now + timedelta(minutes=1)),
        LiveHold(line(3), 4, now),  # past its time: the function would count it forever
    ]
    value = stock_value(10, 8, 3, holds, now)
    assert value.free == -1, "negative as the ledger has it (more held than on hand)"
    assert value.holds == {str(line(1)): 3, str(line(2)): 1}
    assert value.next_expiry == now + timedelta(minutes=1)
    assert json.loads(value.text) == {"v": 1, "free": -1, "h": value.holds}
    assert " " not in value.text, "compact JSON"
    assert contract_problems(value.text) == []


def test_no_holds_is_an_empty_map(clock: FakeClock) -> None:
    value = stock_value(3, 0, 0, [], clock())
    assert value.text == '{"v":1,"free":3,"h":{}}' and value.next_expiry is None


def test_the_bound_keeps_checkout_carts_then_the_latest_expiries(clock: FakeClock) -> None:
    now = clock()
    holds = [LiveHold(line(i), 1, now + timedelta(seconds=i)) for i in range(1, 251)]
    holds.append(LiveHold(line(999), 1, now + timedelta(seconds=1), at_checkout=True))
    value = stock_value(251, 251, 0, holds, now)
    assert len(value.holds) == MAX_HOLD_ENTRIES and value.left_out == 51
    assert str(line(999)) in value.holds, "a cart at checkout is kept whatever its expiry"
    kept = {uuid.UUID(k).int for k in value.holds} - {999}
    assert kept == set(range(52, 251)), "then the newest expiries"
    assert value.free == 0, "left-out holds' units are never added to free"
    assert contract_problems(value.text) == []


def test_two_hundred_entries_of_999_units_fit_what_shopify_reads() -> None:
    entries = {str(uuid.uuid4()): 999 for _ in range(MAX_HOLD_ENTRIES)}
    text = encode(-99_999, entries)
    assert len(text.encode()) < MAX_VALUE_BYTES
    assert contract_problems(text) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("nope", "not JSON"),
        ("[1]", "not an object"),
        ('{"v":2,"free":1,"h":{}}', '"v"'),
        ('{"v":1,"free":"1","h":{}}', '"free"'),
        ('{"v":1,"free":1,"h":[]}', '"h" is not an object'),
        ('{"v":1,"free":1,"h":{"a":-1}}', "integer >= 0"),
        ('{"v":1,"free":1,"h":{"a":true}}', "integer >= 0"),
        (encode(1, {str(i): 1 for i in range(201)}), "over 200"),
        (encode(1, {"x" * 20_000: 1}), "bytes"),
    ],
)
def test_a_value_outside_the_contract_is_named(text: str, problem: str) -> None:
    assert any(problem in p for p in contract_problems(text))


# --- rounds --------------------------------------------------------------------------------


class Harness:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.store = FakePublicationStore()
        self.shopify = FakeMetafieldWriter()
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        self.clock.advance(seconds)
        return False

    def round(self, policy: PublishPolicy | None = None) -> RoundReport:
        return publish_round(
            self.store, self.shopify, self.clock, self.sleep, policy or PublishPolicy()
        )

    def tracked(self, sku: str, on_hand: int, *variants: VariantRef) -> None:
        self.store.figures[sku] = (on_hand, 0, 0)
        for variant in variants:
            self.store.variants[variant] = sku
        self.store.change(sku, self.clock())

    def value(self, variant: VariantRef) -> dict[str, object]:
        return dict(json.loads(self.shopify.metafields[variant]))


@pytest.fixture
def harness(clock: FakeClock) -> Harness:
    return Harness(clock)


def test_a_burst_of_changes_costs_one_write(harness: Harness, clock: FakeClock) -> None:
    harness.tracked("TEE", 5, V1)
    for _ in range(49):
        clock.advance(0.01)
        harness.store.change("TEE", clock())
    clock.advance(0.2)
    report = harness.round()
    assert (report.claimed, report.changes, report.written, report.calls) == (1, 50, 1, 1)
    assert harness.value(V1) == {"v": 1, "free": 5, "h": {}}
    assert report.lags == [pytest.approx(0.69)], "from the oldest change to Shopify's answer"
    assert harness.store.marks == {}, "cleared: nothing changed during the publish"
    assert harness.round().claimed == 0


def test_a_change_during_the_publish_keeps_the_mark(harness: Harness, clock: FakeClock) -> None:
    harness.tracked("TEE", 5, V1)

    def a_hold_comes_in() -> None:
        harness.store.figures["TEE"] = (5, 1, 0)
        harness.store.change("TEE", clock())
        harness.store.after_snapshot = None

    harness.store.after_snapshot = a_hold_comes_in
    first = harness.round()
    assert first.written == 1 and first.cleared == {Cleared.CHANGED: 1}
    assert harness.value(V1)["free"] == 5, "what was read"
    assert "TEE" in harness.store.marks, "the change is not lost"
    assert harness.round().claimed == 0, "once a second per variant, however hot"
    clock.advance(1.0)
    second = harness.round()
    assert second.written == 1 and second.cleared == {Cleared.CLEARED: 1}
    assert harness.value(V1)["free"] == 4


def test_an_unchanged_value_is_not_written_again(harness: Harness, clock: FakeClock) -> None:
    harness.tracked("TEE", 5, V1)
    harness.round()
    clock.advance(2)
    harness.store.change("TEE", clock())  # e.g. a hold extended: the value is the same
    report = harness.round()
    assert (report.written, report.unchanged, report.calls) == (0, 1, 0)
    assert harness.store.marks == {}


def test_twenty_five_variants_a_call(harness: Harness, clock: FakeClock) -> None:
    for n in range(60):
        harness.tracked(f"SKU{n:02}", n, VariantRef(SHOP, 1000 + n))
    report = harness.round()
    assert report.written == 60
    assert [n for _, _, n in harness.shopify.calls] == [25, 25, 10]


def test_a_sku_whose_variant_is_unknown_waits(harness: Harness, clock: FakeClock) -> None:
    harness.tracked("NEW", 3)  # in the ledger, no payload has shown its variant yet
    assert harness.round().claimed == 0
    assert "NEW" in harness.store.marks, "it waits, it is not dropped"
    harness.store.variants[V1] = "NEW"  # a cart webhook maps it (and marks it again)
    harness.store.change("NEW", clock())
    assert harness.round().written == 1
    assert harness.value(V1)["free"] == 3


def test_a_variant_that_stops_being_tracked_loses_its_metafield(
    harness: Harness, clock: FakeClock
) -> None:
    harness.tracked("TEE", 5, V1, V2)
    harness.round()
    clock.advance(2)
    harness.store.variants[V2] = "NOT-IN-LEDGER"  # its SKU changed to one not tracked
    harness.store.change("TEE", clock())
    harness.store.change("NOT-IN-LEDGER", clock())
    report = harness.round()
    assert report.deleted == 1 and V2 not in harness.shopify.metafields
    assert V1 in harness.shopify.metafields and V2 not in harness.store.records
    assert harness.store.marks == {}, "the untracked SKU's mark is cleared too"


def test_a_variant_moved_to_another_tracked_sku_follows_it(
    harness: Harness, clock: FakeClock
) -> None:
    harness.tracked("TEE", 5, V1)
    harness.tracked("CAP", 2)
    harness.round()
    clock.advance(2)
    harness.store.variants[V1] = "CAP"
    harness.store.change("TEE", clock())
    harness.store.change("CAP", clock())
    report = harness.round()
    assert report.deleted == 0 and report.written == 1
    assert harness.value(V1)["free"] == 2


def test_throttled_waits_what_shopify_says_then_writes(harness: Harness, clock: FakeClock) -> None:
    harness.tracked("TEE", 5, V1)
    harness.shopify.throttled = [2.5, 1.0]
    report = harness.round()
    assert harness.slept == [2.5, 1.0] and report.failures == {"throttled": 2}
    assert report.written == 1 and report.lags == [pytest.approx(3.5)]


def test_throttled_too_often_gives_the_marks_back(harness: Harness, clock: FakeClock) -> None:
    harness.tracked("TEE", 5, V1)
    harness.shopify.throttled = [1.0] * 5
    report = harness.round()
    assert report.written == 0 and report.failures == {"throttled": 5}
    assert harness.store.marks["TEE"].claim_id is None, "released, due again at once"
    assert harness.round().written == 1


def test_a_low_bucket_is_let_refill_before_the_next_call(
    harness: Harness, clock: FakeClock
) -> None:
    harness.tracked("A", 1, V1)
    harness.shopify.bucket = client.ThrottleStatus(2000.0, 4.0, 100.0)
    harness.round()
    assert harness.slept == [pytest.approx(0.06)], "(10 - 4) points at 100 a second"


def test_an_outage_delays_and_loses_nothing(harness: Harness, clock: FakeClock) -> None:
    harness.tracked("TEE", 5, V1)
    changed_at = clock()
    harness.shopify.down = True
    for _ in range(3):
        report = harness.round()
        assert report.stopped_by == "unavailable" and report.written == 0
        clock.advance(10)
    assert harness.store.marks["TEE"].first_changed_at == changed_at, "the lag keeps counting"
    harness.shopify.down = False
    report = harness.round()
    assert report.written == 1 and report.lags == [pytest.approx(30.0)]


def test_a_refused_entry_waits_a_minute_and_the_rest_is_written(
    harness: Harness, clock: FakeClock
) -> None:
    harness.tracked("TEE", 5, V1)
    harness.tracked("CAP", 2, V2)
    harness.shopify.refuse[V2] = "Value is invalid"
    report = harness.round()
    assert report.written == 1 and report.failures == {"refused": 1}
    assert V1 in harness.shopify.metafields and V2 not in harness.shopify.metafields
    assert harness.store.marks["CAP"].not_before == clock() + timedelta(seconds=60)
    assert harness.round().claimed == 0
    del harness.shopify.refuse[V2]
    clock.advance(60)
    assert harness.round().written == 1


def test_a_variant_shopify_no_longer_has_is_forgotten(harness: Harness, clock: FakeClock) -> None:
    harness.tracked("TEE", 5, V1, V2)
    harness.shopify.gone.add(V2)
    report = harness.round()
    assert report.written == 1 and V2 not in harness.store.variants
    assert harness.store.marks == {}


def test_a_follow_up_at_the_first_expiry_drops_the_hold(harness: Harness, clock: FakeClock) -> None:
    harness.tracked("TEE", 1, V1)
    expiry = clock() + timedelta(minutes=15)
    harness.store.figures["TEE"] = (1, 1, 0)
    harness.store.holds["TEE"] = [LiveHold(line(7), 1, expiry)]
    harness.round()
    assert harness.value(V1) == {"v": 1, "free": 0, "h": {str(line(7)): 1}}
    mark = harness.store.marks["TEE"]
    assert mark.not_before == expiry and mark.changes == 0, "a follow-up, not a change"
    clock.advance(14 * 60)
    assert harness.round().claimed == 0
    clock.advance(60)
    report = harness.round()
    assert report.written == 1 and harness.value(V1) == {"v": 1, "free": 0, "h": {}}, (
        "the hold is gone from the checkout at its expiry, before the sweeper gives its unit back"
    )


def test_the_bound_is_counted(harness: Harness, clock: FakeClock) -> None:
    harness.tracked("HOT", 300, V1)
    now = clock()
    harness.store.holds["HOT"] = [
        LiveHold(line(i), 1, now + timedelta(seconds=60 + i)) for i in range(230)
    ]
    report = harness.round()
    assert report.left_out == 30 and len(harness.value(V1)["h"]) == 200  # type: ignore[arg-type]


def test_a_lost_lease_is_marked_again(harness: Harness, clock: FakeClock) -> None:
    harness.tracked("TEE", 5, V1)

    def another_worker_takes_it() -> None:
        clock.advance(61)  # this round outlives its lease...
        harness.store.claim(clock(), 10)  # ...and another follower claims the mark
        harness.store.after_snapshot = None

    harness.store.after_snapshot = another_worker_takes_it
    report = harness.round()
    assert report.cleared == {Cleared.LOST: 1}
    assert harness.store.marks["TEE"].changes >= 2, "published once more, never left stale"
