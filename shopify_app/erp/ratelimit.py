"""``SqlRateLimiter``: Bling's 3 requests/second per account, kept by every process and dyno.

Bling counts requests per account, whoever sends them: gunicorn workers, the worker dyno, a CLI
sync. A limiter in one process's memory cannot see the others, so the account's next free slot
lives in one database row (``bling_rate_limit``), and each request books a slot:

1. a short transaction locks the row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's write
   transaction began with ``BEGIN IMMEDIATE``), takes ``slot = max(now, next_slot_at)``, stores
   ``next_slot_at = slot + per/rate + margin``, and commits;
2. only then does the caller sleep until ``slot``: the lock is never held while waiting, so a
   booking costs one short transaction and callers queue in the row, not on the lock.

Slots are spread evenly (one every ``per/rate + margin`` seconds) rather than in bursts of three:
four requests then need ``3 × (per/rate + margin)`` > ``per`` seconds, so a request that leaves
a little after its slot (thread wake-up, connection set-up, clocks of two dynos a few
milliseconds apart) still cannot make a fourth land inside Bling's one-second window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..clock import Clock, utc_now
from .tables import bling_rate_limit

#: Bling's documented limit: 3 requests per second per account (docs/bling-api.md §2).
BLING_RATE = 3
#: Extra spacing per request, against arrival jitter and clock skew between dynos: the account
#: then sees at most ~2.6 requests/second, and three intervals leave 0.15 s of slack.
DEFAULT_MARGIN = 0.05


class SqlRateLimiter:
    """A ``bling.client.RateLimiter`` shared through the database by every process."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        *,
        rate: int = BLING_RATE,
        per: float = 1.0,
        margin: float = DEFAULT_MARGIN,
        account: str = "default",
    ) -> None:
        if rate < 1 or per <= 0 or margin < 0:
            raise ValueError("rate must be >= 1, per > 0 and margin >= 0")
        self.engine = engine
        self.clock = clock
        self.sleep = sleep
        self.account = account
        self.interval = timedelta(seconds=per / rate + margin)

    def __repr__(self) -> str:
        return f"SqlRateLimiter(account={self.account!r}, interval={self.interval})"

    def acquire(self) -> None:
        """Book the account's next slot, then wait for it (outside any transaction)."""
        slot, now = self.book()
        delay = (slot - now).total_seconds()
        if delay > 0:
            self.sleep(delay)

    def book(self) -> tuple[datetime, datetime]:
        """Reserve the next slot in one short locked transaction; returns ``(slot, now)``."""
        with self.engine.begin() as connection:
            next_slot = self._locked_next_slot(connection)
            now = self.clock()
            if next_slot is None:  # the account's first request ever
                if self._create_row(connection, now + self.interval):
                    return now, now
                # Another process created it meanwhile (its insert won): queue on its row.
                next_slot = self._locked_next_slot(connection)
                now = self.clock()
            slot = now if next_slot is None else max(now, next_slot)
            connection.execute(
                update(bling_rate_limit)
                .where(bling_rate_limit.c.account == self.account)
                .values(next_slot_at=slot + self.interval)
            )
        return slot, now

    def _locked_next_slot(self, connection: Connection) -> datetime | None:
        stmt = select(bling_rate_limit.c.next_slot_at).where(
            bling_rate_limit.c.account == self.account
        )
        if connection.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        value: datetime | None = connection.execute(stmt).scalar_one_or_none()
        return value

    def _create_row(self, connection: Connection, next_slot_at: datetime) -> bool:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        # RETURNING, not rowcount: psycopg reports -1 for ``ON CONFLICT DO NOTHING``.
        created = connection.execute(
            dialect.insert(bling_rate_limit)
            .values(account=self.account, next_slot_at=next_slot_at)
            .on_conflict_do_nothing(index_elements=[bling_rate_limit.c.account])
            .returning(bling_rate_limit.c.account)
        ).first()
        return created is not None
