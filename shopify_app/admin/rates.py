"""Reservations and refusals (409) so far, for the live page's per-minute chart.

``bazico_reservations_total`` already counts every request's outcome in every web process
(multiprocess under gunicorn), so the chart costs no write on the hot path: each poll of the live
view returns the totals, and the page (static/admin.js) keeps them and draws a minute's rate as
the difference of the totals at its ends. The page keeps the samples, not a web process: every
process reads the same global totals, whichever answers a poll.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..observability import metrics

RESERVATIONS_FAMILY = "bazico_reservations"
#: Outcomes that answered 409 (sold out); "granted" are the holds made.
REFUSED = ("sold_out",)


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
