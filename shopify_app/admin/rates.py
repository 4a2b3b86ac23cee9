"""Reservations and refusals per minute for the live page, from the reservation counters.

``bazico_reservations_total`` already counts every request's outcome in every web process
(multiprocess under gunicorn), so the page costs no write on the hot path: each poll of the live
view samples the totals, and a minute's rate is the difference of the totals at its ends. The
samples live in the process that answered the poll; every process reads the same global totals,
so any one's samples are right, and a minute no process sampled is shown as unknown (None).
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass

from ..observability import metrics

RESERVATIONS_FAMILY = "bazico_reservations"
#: Outcomes that answered 409 (sold out); "granted" are the holds made.
REFUSED = ("sold_out",)
MINUTES = 15
#: Samples older than the chart are dropped; one per second at most is kept.
KEEP_SECONDS = (MINUTES + 2) * 60


@dataclass(frozen=True)
class Totals:
    granted: float
    refused: float


def read_totals() -> Totals:
    """The totals of every web process (this one's alone outside gunicorn)."""
    granted = refused = 0.0
    for family in metrics.scrape_registry().collect():
        if family.name != RESERVATIONS_FAMILY:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            outcome = sample.labels.get("outcome")
            if outcome == "granted":
                granted += sample.value
            elif outcome in REFUSED:
                refused += sample.value
    return Totals(granted, refused)


@dataclass(frozen=True)
class MinuteRates:
    """Per minute, oldest first, the last bucket being the minute under way."""

    minute_starts: list[float]
    reservations: list[int | None]
    refusals: list[int | None]


class RateSampler:
    """Samples of the totals, kept for the chart's span; safe to share between threads."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()
        self._totals: deque[Totals] = deque()
        self._lock = threading.Lock()

    def sample(self, now: float, totals: Totals) -> None:
        with self._lock:
            if self._times and now - self._times[-1] < 1.0:
                return
            self._times.append(now)
            self._totals.append(totals)
            while self._times and now - self._times[0] > KEEP_SECONDS:
                self._times.popleft()
                self._totals.popleft()

    def _at(self, moment: float) -> Totals | None:
        index = bisect_right(self._times, moment)
        return self._totals[index - 1] if index else None

    def _from(self, start: float, end: float) -> Totals | None:
        """The totals as the minute began, or as first sampled in it (a partial minute)."""
        found = self._at(start)
        if found is not None:
            return found
        index = bisect_right(self._times, start)
        if index < len(self._times) and self._times[index] <= end:
            return self._totals[index]
        return None

    def per_minute(self, now: float, minutes: int = MINUTES) -> MinuteRates:
        with self._lock:
            current = now - now % 60
            starts = [current - 60 * k for k in range(minutes - 1, -1, -1)]
            reservations: list[int | None] = []
            refusals: list[int | None] = []
            for start in starts:
                end_at = min(start + 60, now)
                begin, end = self._from(start, end_at), self._at(end_at)
                if begin is None or end is None:
                    reservations.append(None)
                    refusals.append(None)
                    continue
                # A restart of every process resets the counters: never show a negative rate.
                reservations.append(max(0, round(end.granted - begin.granted)))
                refusals.append(max(0, round(end.refused - begin.refused)))
            return MinuteRates(starts, reservations, refusals)


#: One per process: every poll of the live view feeds it.
SAMPLER = RateSampler()
