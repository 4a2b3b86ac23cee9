"""LocalRateLimiter and the backoff formula, on a fake clock (no real waiting)."""

from __future__ import annotations

import random
import threading

import pytest

from bling.client import LocalRateLimiter, backoff_delay


class FakeTime:
    """A clock that moves only when someone sleeps (and records the sleeps)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)


def test_three_calls_pass_then_the_fourth_waits_for_the_window() -> None:
    fake = FakeTime()
    limiter = LocalRateLimiter(3, 1.0, margin=0.05, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        limiter.acquire()
    assert fake.sleeps == []
    limiter.acquire()
    assert fake.sleeps == [pytest.approx(1.05)]
    limiter.acquire()  # books the next slot, still relative to the first window
    assert fake.sleeps[-1] == pytest.approx(1.05)


def test_slots_are_spaced_so_no_window_holds_more_than_rate() -> None:
    fake = FakeTime()
    limiter = LocalRateLimiter(3, 1.0, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    starts = []
    for _ in range(10):  # all asked at the same instant: each gets a slot in the future
        before = len(fake.sleeps)
        limiter.acquire()
        starts.append(fake.now + (fake.sleeps[-1] if len(fake.sleeps) > before else 0.0))
    assert starts == sorted(starts)
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] >= 1.0 - 1e-9


def test_after_a_quiet_period_calls_pass_at_once_again() -> None:
    fake = FakeTime()
    limiter = LocalRateLimiter(3, 1.0, margin=0.05, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        limiter.acquire()
    fake.now += 5
    limiter.acquire()
    assert fake.sleeps == []


def test_threads_book_distinct_slots() -> None:
    fake = FakeTime()
    limiter = LocalRateLimiter(3, 1.0, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        limiter.acquire()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 8 callers at one instant, 3 per second: waits of 0,0,0,1,1,1,2,2.
    assert sorted(fake.sleeps) == pytest.approx([1, 1, 1, 2, 2])


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        LocalRateLimiter(0, 1.0)
    with pytest.raises(ValueError):
        LocalRateLimiter(3, 0)


class MaxRng(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    rng = MaxRng()
    delays = [backoff_delay(n, base=0.5, cap=3.0, rng=rng) for n in range(5)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(1, base=0.5, cap=3.0, rng=rng, floor=1.0) == 2.0


def test_backoff_is_full_jitter_within_bounds() -> None:
    rng = random.Random(7)
    for attempt in range(6):
        samples = [backoff_delay(attempt, base=0.5, cap=30, rng=rng) for _ in range(200)]
        bound = 0.5 * 2**attempt
        assert all(0 <= s <= bound for s in samples)
        assert max(samples) > 0.8 * bound and min(samples) < 0.2 * bound, "spread, not fixed"
