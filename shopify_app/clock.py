"""The service's notion of now: one callable every part takes, so tests can move time by hand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: Returns the current time, timezone-aware UTC.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
