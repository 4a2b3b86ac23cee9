"""The HTTP client for Bling API v3: rate limited, retrying, typed errors (docs/bling-api.md §2).

Every call: ``rate_limiter.acquire()`` (Bling allows 3 requests/second **per account**, shared by
every app and process, so the app passes a limiter shared across its processes), a bearer token
from ``token_provider``, ``enable-jwt: 1``, connect and read timeouts.

What is retried, with exponential backoff and full jitter, up to ``max_retries`` times:

- a per-second 429 (nothing was done; the wait is at least ``retry_after``);
- a connection that could not be opened (nothing was sent);
- 5xx, read timeouts and dropped connections **only for requests that are safe to repeat**
  (GET, PUT, DELETE, or ``idempotent=True``). A POST creates something and Bling has no
  idempotency key: repeating one whose outcome is unknown could create a second sales order, so
  it raises ``BlingOutcomeUnknown`` / ``BlingServerError`` and the caller searches before it
  creates again (see ``bling.orders.ensure_sales_order``).

A 401 triggers one ``token_provider(force_refresh=True)`` and one more try. The daily 429 raises
``BlingDailyLimitReached`` at once: retrying would only spend tomorrow's budget.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from bling.errors import (
    BlingDailyLimitReached,
    BlingError,
    BlingOutcomeUnknown,
    BlingRateLimited,
    BlingServerError,
    BlingUnauthorized,
    BlingUnavailable,
    BlingUnreachable,
    error_from_response,
)

log = logging.getLogger(__name__)

SAFE_TO_REPEAT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


#: Told of every HTTP call: (method, outcome, status); e.g. the app counts them in metrics.
CallObserver = Callable[[str, str, int], None]


def call_outcome(error: BlingError) -> str:
    """One word for what went wrong with a call, for metrics and dashboards."""
    if isinstance(error, BlingDailyLimitReached):
        return "daily_limit"
    if isinstance(error, BlingRateLimited):
        return "rate_limited"
    if isinstance(error, BlingUnauthorized):
        return "unauthorized"
    if isinstance(error, BlingServerError):
        return "server_error"
    if error.status is None:
        return "no_answer"
    return "client_error"


class RateLimiter(Protocol):
    """Blocks until one more request may be sent. The app implements a cross-process one."""

    def acquire(self) -> None: ...


class TokenProvider(Protocol):
    """A valid access token; with ``force_refresh=True``, a new one (after a 401)."""

    def __call__(self, *, force_refresh: bool = False) -> str: ...


class LocalRateLimiter:
    """At most ``rate`` calls in any window of ``per`` seconds, for the threads of one process.

    Each caller books the earliest free slot under a lock, then sleeps outside it, so waiting
    callers do not serialise on the lock and slots go out first come, first served. ``margin``
    widens the window a little: Bling counts arrivals, and a request can leave a few
    milliseconds after its slot (thread wake-up, connection setup) while the next leaves on time.
    """

    def __init__(
        self,
        rate: int = 3,
        per: float = 1.0,
        *,
        margin: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate < 1 or per <= 0:
            raise ValueError("rate must be >= 1 and per > 0")
        self.rate = rate
        self.window = per + margin
        self._clock = clock
        self._sleep = sleep
        self._slots: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            if len(self._slots) < self.rate:
                slot = now
            else:
                # Slots are booked in increasing order; the oldest of the last `rate` decides.
                slot = max(now, self._slots.popleft() + self.window)
            self._slots.append(slot)
        if slot > now:
            self._sleep(slot - now)


class NullRateLimiter:
    """No limit (for a one-off script against an account nobody else uses, or for tests)."""

    def acquire(self) -> None:
        return None


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random, floor: float = 0.0
) -> float:
    """``floor + uniform(0, min(cap, base * 2**attempt))``: "full jitter" spreads the retries of
    many workers apart, the floor keeps a 429's retry out of the window that refused it."""
    return floor + rng.uniform(0.0, min(cap, base * (2**attempt)))


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection could not even be opened, so Bling saw nothing."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


class BlingClient:
    """``client.get("/produtos", params={...})`` → the decoded JSON body (None for 204)."""

    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        rate_limiter: RateLimiter,
        *,
        timeout: float | tuple[float, float] = (3.05, 10),
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = _utcnow,
        session: requests.Session | None = None,
        on_call: CallObserver | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._on_call = on_call
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._token_provider = token_provider
        self._limiter = rate_limiter
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 # nosec B311 # jitter, not security
        self._now = now
        self._session = session or requests.Session()
        self._calls = 0
        self._calls_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BlingClient(base_url={self.base_url!r})"

    @property
    def http_calls(self) -> int:
        """HTTP requests sent so far (retries included), for reports and budget checks."""
        with self._calls_lock:
            return self._calls

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> BlingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- verbs ---------------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(
        self,
        path: str,
        json: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = False,
    ) -> Any:
        return self.request("POST", path, params=params, json=json, idempotent=idempotent)

    def put(self, path: str, json: Any = None) -> Any:
        return self.request("PUT", path, json=json)

    def patch(self, path: str, json: Any = None, *, idempotent: bool = False) -> Any:
        return self.request("PATCH", path, json=json, idempotent=idempotent)

    def delete(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("DELETE", path, params=params)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send one logical request (several HTTP calls when retried). List values in
        ``params`` repeat the key, as Bling's ``idsProdutos[]=1&idsProdutos[]=2`` wants."""
        method = method.upper()
        repeatable = method in SAFE_TO_REPEAT if idempotent is None else idempotent
        url = self.base_url + "/" + path.lstrip("/")
        attempt = 0
        refreshed = force_refresh = False
        while True:
            provider = self._token_provider
            token = provider(force_refresh=True) if force_refresh else provider()
            force_refresh = False
            outcome = self._send(method, url, path, params, json, token)
            self._report(method, outcome)
            if isinstance(outcome, requests.Response):
                return _body(outcome)
            error = outcome.error
            if isinstance(error, BlingUnauthorized) and not refreshed:
                # The token expired or was revoked between our check and Bling's: refresh once.
                refreshed = force_refresh = True
                continue
            if not outcome.retryable or (_maybe_done(error) and not repeatable):
                raise error
            if attempt >= self.max_retries:
                raise _exhausted(error, attempt + 1)
            floor = error.retry_after if isinstance(error, BlingRateLimited) else 0.0
            delay = backoff_delay(
                attempt, base=self.backoff_base, cap=self.backoff_cap, rng=self._rng, floor=floor
            )
            log.warning(
                "bling.retry %s %s status=%s error=%s attempt=%d delay=%.2fs",
                method,
                path,
                error.status,
                error.type or type(error).__name__,
                attempt + 1,
                delay,
            )
            self._sleep(delay)
            attempt += 1

    def _report(self, method: str, outcome: requests.Response | _Failed) -> None:
        """Tell ``on_call`` how one HTTP call went."""
        observer = self._on_call
        if observer is None:
            return
        if isinstance(outcome, requests.Response):
            observer(method, "ok", outcome.status_code)
        else:
            observer(method, call_outcome(outcome.error), outcome.error.status or 0)

    # --- one HTTP call -------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        token: str,
    ) -> requests.Response | _Failed:
        """One HTTP call: the response when 2xx, else what went wrong."""
        headers = {
            "Authorization": f"Bearer {token}",
            "enable-jwt": "1",
            "Accept": "application/json",
        }
        self._limiter.acquire()
        with self._calls_lock:
            self._calls += 1
        try:
            response = self._session.request(
                method, url, params=params, json=json, headers=headers, timeout=self.timeout
            )
        except requests.ConnectionError as exc:
            if _never_sent(exc):
                return _Failed(BlingUnreachable(f"cannot connect to Bling ({method} {path})"))
            return _Failed(_lost(method, path, "the connection dropped before an answer"))
        except requests.Timeout:
            return _Failed(_lost(method, path, "no answer within the read timeout"))
        except requests.RequestException as exc:
            return _Failed(BlingError(f"{method} {path}: {type(exc).__name__}"), retryable=False)
        if response.status_code < 300:
            return response
        error = error_from_response(
            response.status_code,
            response.content,
            now=self._now(),
            retry_after_header=response.headers.get("Retry-After"),
        )
        return _Failed(error, retryable=isinstance(error, BlingRateLimited | BlingServerError))


@dataclass(frozen=True)
class _Failed:
    error: BlingError
    retryable: bool = True  # worth another try, if the request is safe to repeat


def _lost(method: str, path: str, what: str) -> BlingUnavailable:
    """The request left but no answer came back: for a write, Bling may have applied it."""
    if method in SAFE_TO_REPEAT:
        return BlingUnavailable(f"{method} {path}: {what}")
    return BlingOutcomeUnknown(f"{method} {path}: {what}; it may have been applied")


def _maybe_done(error: BlingError) -> bool:
    """Could Bling have applied the request that got this error? (Then only search may follow.)"""
    return isinstance(error, BlingOutcomeUnknown | BlingServerError)


def _exhausted(error: BlingError, attempts: int) -> BlingError:
    if isinstance(error, BlingUnavailable):
        cls = type(error)
        return cls(f"{error.message} (gave up after {attempts} attempts)")
    return error


def _body(response: requests.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise BlingError(
            f"Bling answered HTTP {response.status_code} with a body that is not JSON",
            status=response.status_code,
        ) from None


def data_list(body: Any) -> list[dict[str, Any]]:
    """The ``data`` array of a Bling list answer (``{"data": [...]}``)."""
    if not isinstance(body, dict) or not isinstance(body.get("data", []), list):
        raise BlingError("unexpected answer from Bling: no 'data' list")
    return [row for row in body.get("data", []) if isinstance(row, dict)]


def data_object(body: Any) -> dict[str, Any]:
    """The ``data`` object of a Bling answer (``{"data": {...}}``)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise BlingError("unexpected answer from Bling: no 'data' object")
    return data
