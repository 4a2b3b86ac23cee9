"""Per-client request rates on the reservation routes, counted where every process sees them.

The rates (``RATE_LIMIT_PER_IP``, ``RATE_LIMIT_PER_CART``) are parsed, keyed and windowed by
``limits`` (the library under Flask-Limiter). Flask-Limiter's own decorators check before a view
has read its body, and the App Proxy's cart token is in the body, checked only once Shopify's
signature is; so the views call :meth:`RateLimits.check` themselves, after the signature and the
body, and never count a forged request against a shopper's address.

Storage: ``RATE_LIMIT_STORAGE_URL`` may name any shared ``limits`` storage (``redis://…``,
``memcached://…``); by default the counters live in the service's own database (one fixed-window
row per key, ``rate_limit_counters``), so a first run and a Heroku app without a key-value store
still count across every gunicorn worker and every dyno. No per-process counters anywhere.

Not in ``web/``: the worker purges the counters too, and must not import the web layer.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import Column, Engine, Float, Integer, String, Table, delete, select, text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug import Request

from .config import Settings
from .db.batching import GroupRunner
from .db.engine import execute_autocommit
from .db.metadata import metadata

# UNLOGGED on PostgreSQL (migration 0016): a counter is worth nothing after a crash, and logging
# two counter rows per storefront request cost the database as much as the hold itself.
rate_limit_counters = Table(
    "rate_limit_counters",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("hits", Integer, nullable=False),
    # Seconds since the epoch: the window's end, compared with time.time() on any process.
    Column("expires_at", Float, nullable=False),
)

#: Every counter upsert's window rule (here and in ``stock.fast_path``'s capped batch): the
#: window restarts when the row has run out (``%(epoch)s``: time.time()), else the hits are added.
WINDOW_UPSERT = """
ON CONFLICT (key) DO UPDATE SET
    hits = CASE WHEN rate_limit_counters.expires_at <= %(epoch)s THEN excluded.hits
                ELSE rate_limit_counters.hits + excluded.hits END,
    expires_at = CASE WHEN rate_limit_counters.expires_at <= %(epoch)s THEN excluded.expires_at
                      ELSE rate_limit_counters.expires_at END
"""

# One statement per hit, the same on PostgreSQL and SQLite; the new count and the window's end
# come back.
_HIT = f"""
INSERT INTO rate_limit_counters (key, hits, expires_at) VALUES (%(key)s, %(amount)s, %(ends)s)
{WINDOW_UPSERT}RETURNING hits, expires_at
"""  # noqa: S608 # nosec B608 - composed of this module's constants only
_HIT_SQLALCHEMY = text(re.sub(r"%\((\w+)\)s", r":\1", _HIT))

# The hits of many requests (PostgreSQL): one row per key with the batch's total for it, in key
# order (so concurrent statements lock the rows in the same order), each key's new count back.
_HIT_MANY = f"""
INSERT INTO rate_limit_counters (key, hits, expires_at)
SELECT key, hits, expires_at
  FROM unnest(%(keys)s::text[], %(amounts)s::int[], %(ends)s::float8[]) AS r(key, hits, expires_at)
 ORDER BY key
{WINDOW_UPSERT}RETURNING key, hits, expires_at
"""  # noqa: S608 # nosec B608 - composed of this module's constants only

#: One request's hits: (key, window seconds) for each counter it counts against.
Hits = list[tuple[str, int]]


def counts_in_arrival_order(
    requests: list[list[str] | None], after: dict[str, tuple[int, float]]
) -> list[list[tuple[int, float]] | None]:
    """The counts of a batch's requests (each its counter keys; None: it counted nothing) from
    one upsert that added the batch's hits per key (``after``: each key's count and window end
    once it ran), as if each had counted alone, in arrival order: the count before the batch
    plus the request's place among those of its key."""
    totals: dict[str, int] = {}
    for keys in requests:
        for key in keys or []:
            totals[key] = totals.get(key, 0) + 1
    seen = {key: after[key][0] - total for key, total in totals.items()}
    results: list[list[tuple[int, float]] | None] = []
    for keys in requests:
        if keys is None:
            results.append(None)
            continue
        counts = []
        for key in keys:
            seen[key] += 1
            counts.append((seen[key], after[key][1]))
        results.append(counts)
    return results


class DatabaseStorage(Storage):
    """A ``limits`` storage on the service's database: fixed windows, one row per key."""

    STORAGE_SCHEME = ["bazico+database"]  # noqa: RUF012 - read by limits' storage registry

    def __init__(
        self, uri: str | None = None, wrap_exceptions: bool = False, *, engine: Engine, **_: Any
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    def hit(self, key: str, expiry: int, amount: int = 1) -> tuple[int, float]:
        """Add ``amount`` to ``key``'s window (a new one of ``expiry`` seconds if it ran out);
        the count and the window's end."""
        now = time.time()
        params: dict[str, object] = {
            "key": key,
            "amount": amount,
            "ends": now + expiry,
            "epoch": now,
        }
        if self.postgres:  # one round trip, in autocommit (db.execute_autocommit)
            hits, expires_at = execute_autocommit(self.engine, _HIT, params)
        else:  # SQLite: BEGIN IMMEDIATE, like every write here
            with self.engine.begin() as connection:
                hits, expires_at = connection.execute(_HIT_SQLALCHEMY, params).one()
        return int(hits), float(expires_at)

    def hit_all(self, hits: Hits) -> list[tuple[int, float]]:
        """One request's hits on several keys: each key's count with this hit and its window's
        end. On PostgreSQL the hits of concurrent requests of this process go in one statement
        (``_HitCombiner``): one round trip for all of them, the counts exact as one by one."""
        if not self.postgres:
            return [self.hit(key, expiry) for key, expiry in hits]
        return self._combiner.submit(hits) or []

    @functools.cached_property
    def _combiner(self) -> GroupRunner[Hits, list[tuple[int, float]]]:
        return GroupRunner(self._hit_batch)

    def _hit_batch(self, batch: list[Hits]) -> list[list[tuple[int, float]] | BaseException]:
        """Every request's hits in one statement: per key the batch's total is added, and the
        requests get the counts in arrival order, as if each had hit alone."""
        now = time.time()
        totals: dict[str, int] = {}
        ends: dict[str, float] = {}
        for hits in batch:
            for key, expiry in hits:
                totals[key] = totals.get(key, 0) + 1
                ends.setdefault(key, now + expiry)
        keys = sorted(totals)
        params: dict[str, object] = {
            "keys": keys,
            "amounts": [totals[k] for k in keys],
            "ends": [ends[k] for k in keys],
            "epoch": now,
        }
        rows = execute_autocommit(self.engine, _HIT_MANY, params, all_rows=True)
        after = {str(key): (int(hits), float(expires_at)) for key, hits, expires_at in rows}
        counts = counts_in_arrival_order([[key for key, _ in hits] for hits in batch], after)
        return [c or [] for c in counts]

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.hit(key, expiry, amount)[0]

    def _row(self, key: str) -> tuple[int, float] | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(rate_limit_counters.c.hits, rate_limit_counters.c.expires_at).where(
                    rate_limit_counters.c.key == key
                )
            ).first()
        if row is None or row.expires_at <= time.time():
            return None
        return int(row.hits), float(row.expires_at)

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row[1] if row else time.time()

    def check(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as connection:
            return connection.execute(delete(rate_limit_counters)).rowcount

    def clear(self, key: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(rate_limit_counters).where(rate_limit_counters.c.key == key))

    def purge_expired(self) -> int:
        """Delete the rows of windows that have run out (the worker calls this now and then).

        Rows another transaction holds are skipped (next time): a reservation batch holds its
        counters until it commits, in key order, and a DELETE taking rows in scan order
        against it could deadlock (SQLite ignores the clause: one writer at a time)."""
        c = rate_limit_counters
        due = select(c.c.key).where(c.c.expires_at <= time.time())
        with self.engine.begin() as connection:
            result = connection.execute(
                delete(c).where(c.c.key.in_(due.with_for_update(skip_locked=True)))
            )
        return result.rowcount


class RateLimited(Exception):
    """A client went over one of its rates: answer 429 with ``Retry-After``."""

    def __init__(self, key: str, limit: RateLimitItem, retry_after: int) -> None:
        self.key = key  # "ip" or "cart"
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(f"more than {limit} per {key}")


#: A counter a request counts against: ("ip" or "cart", its rate, the limiter's identifiers).
_Counted = tuple[str, RateLimitItem, tuple[str, str, str]]


class Counting:
    """One request's counters on the database storage: counted by the transaction that takes
    its stock (``counters``, then ``settle`` with what it counted) or on their own
    (``settle(None)``); either way judged here, RateLimited on the first over its rate."""

    def __init__(self, storage: DatabaseStorage, counted: list[_Counted]) -> None:
        self.storage = storage
        self.counted = counted

    @property
    def counters(self) -> list[tuple[str, int, int]]:
        """(key, window seconds, hits allowed) per counter."""
        return [
            (item.key_for(*ids), item.get_expiry(), item.amount) for _, item, ids in self.counted
        ]

    def settle(self, counts: list[tuple[int, float]] | None) -> None:
        if counts is None:
            counts = self.storage.hit_all(
                [(item.key_for(*ids), item.get_expiry()) for _, item, ids in self.counted]
            )
        for (key, item, _), (hits, ends) in zip(self.counted, counts, strict=True):
            if hits > item.amount:
                raise RateLimited(key, item, max(1, math.ceil(ends - time.time())))


@dataclass(frozen=True)
class _Rate:
    key: str  # what it counts by: "ip" or "cart"
    items: Sequence[RateLimitItem]


class RateLimits:
    """The rates of one process, over a storage every process shares."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.hops = settings.trusted_proxy_hops
        self.rates = [
            _Rate(key, parse_many(value))
            for key, value in (
                ("ip", settings.rate_limit_per_ip),
                ("cart", settings.rate_limit_per_cart),
            )
            if value
        ]
        if settings.rate_limit_storage_url:
            storage = storage_from_string(settings.rate_limit_storage_url)
            if not isinstance(storage, Storage):
                # An async+… URL gives an asyncio storage, which the synchronous limiter cannot use.
                raise ConfigurationError(
                    "RATE_LIMIT_STORAGE_URL must name a synchronous storage (redis://, "
                    "memcached://, …), not an async+ one"
                )
            self.storage: Storage = storage
        else:
            self.storage = DatabaseStorage(engine=engine)
        self.limiter = FixedWindowRateLimiter(self.storage)

    @property
    def enabled(self) -> bool:
        return bool(self.rates)

    def check(self, scope: str, *, ip: str | None, cart: str | None) -> None:
        """Count one request of ``scope`` for the client's address and cart (None: not counted
        by that); RateLimited when either is over its rate (the request is then refused and
        touches nothing else). On the database both counters are counted together (one
        statement, shared with the process's concurrent requests), so a request refused by
        one still counts against the other."""
        counted = self._counted(scope, ip, cart)
        if isinstance(self.storage, DatabaseStorage):
            if counted:
                Counting(self.storage, counted).settle(None)
            return
        for key, item, identifiers in counted:  # a shared store (Redis…): the limiter's way
            if not self.limiter.hit(item, *identifiers):
                ends = self.limiter.get_window_stats(item, *identifiers).reset_time
                raise RateLimited(key, item, max(1, math.ceil(ends - time.time())))

    def counting(self, scope: str, *, ip: str | None, cart: str | None) -> Counting | None:
        """``check``'s counters, for the transaction that takes the request's stock to count
        (``stock.reservations.RateCounting``: the group commit counts them in its own
        statement); None when the counters are not in this database (a shared store) or
        none applies: call ``check`` instead."""
        if not isinstance(self.storage, DatabaseStorage) or not self.storage.postgres:
            return None
        counted = self._counted(scope, ip, cart)
        return Counting(self.storage, counted) if counted else None

    def _counted(self, scope: str, ip: str | None, cart: str | None) -> list[_Counted]:
        return [
            (rate.key, item, (scope, rate.key, who[:200]))
            for rate in self.rates
            if (who := ip if rate.key == "ip" else cart) is not None
            for item in rate.items
        ]

    def client_ip(self, request: Request, *, via_shopify: bool = False) -> str:
        """The client's address: ``X-Forwarded-For``'s entry added by the nearest proxy we
        trust (``TRUSTED_PROXY_HOPS``: Heroku's router is one), one further left for App Proxy
        requests, whose X-Forwarded-For Shopify sets to the shopper's address. Entries further
        left are the client's own say and never used."""
        depth = self.hops + (1 if via_shopify else 0)
        if depth:
            header = request.headers.get("X-Forwarded-For", "")
            forwarded = [part.strip() for part in header.split(",") if part.strip()]
            if forwarded:
                return forwarded[-depth] if len(forwarded) >= depth else forwarded[0]
        return request.remote_addr or "unknown"
