"""Typed exceptions built from Bling's error JSON (docs/bling-api.md §2).

Bling answers errors as ``{"error": {"type", "message", "description", "fields": [...]}}``; the
OAuth endpoints use lower-case types (``invalid_token``, ``invalid_grant``) in the same envelope,
and some OAuth servers answer the RFC 6749 shape ``{"error": "...", "error_description": "..."}``,
so both are read. The documented 429 example is not even valid JSON (a comma is missing before
``"limit"``), hence the lenient fallback that picks the fields out of the raw text.

Which class tells the caller what to do next:

- ``BlingRateLimited`` (429, ``period: "second"``): wait a moment and try again (the client does).
- ``BlingDailyLimitReached`` (429, ``period: "day"``): stop calling until ``until``, the next
  midnight in Bling's time zone; retrying only burns more of tomorrow's budget.
- ``BlingUnreachable`` (no connection at all) and 502/503/504: Bling is down for every request;
  a caller with a queue waits as a whole rather than retrying each item on its own.
- ``BlingServerError`` / ``BlingUnavailable``: transient; for a write, ``BlingOutcomeUnknown``
  (and any ``BlingServerError``) means the write **may have happened**: search before re-creating.
- Everything else (400, 401 after a refresh, 403, 404) is a fault to fix, not to retry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from typing import Any

try:  # zoneinfo needs the system's (or the tzdata package's) database; fall back if absent.
    from zoneinfo import ZoneInfo

    BLING_TZ: tzinfo = ZoneInfo("America/Sao_Paulo")
except Exception:  # pragma: no cover - only on machines without a time zone database
    # São Paulo has had no daylight saving time since 2019, so a fixed offset is exact today.
    BLING_TZ = timezone(timedelta(hours=-3), "America/Sao_Paulo")


@dataclass(frozen=True)
class FieldError:
    """One entry of ``error.fields`` (or of a field's ``collection``), e.g. a bad installment."""

    code: int | None
    msg: str
    element: str | None = None
    namespace: str | None = None
    index: int | None = None
    collection: tuple[FieldError, ...] = field(default=())

    def describe(self) -> str:
        where = self.element or self.namespace or "?"
        if self.index is not None:
            where = f"{where}[{self.index}]"
        inner = "; ".join(item.describe() for item in self.collection)
        return f"{where}: {self.msg}" + (f" ({inner})" if inner else "")


class BlingError(Exception):
    """Any failure talking to Bling. ``status`` is None when no HTTP answer arrived."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,  # Bling's own field name
        description: str | None = None,
        fields: tuple[FieldError, ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.description = description
        self.fields = fields

    def __str__(self) -> str:
        head = " ".join(str(p) for p in (self.status, self.type) if p is not None)
        text = f"{head}: {self.message}" if head else self.message
        if self.description and self.description != self.message:
            text += f" — {self.description}"
        if self.fields:
            text += " [" + "; ".join(f.describe() for f in self.fields) + "]"
        return text


class BlingUnauthorized(BlingError):
    """401: the access token is expired or invalid (``invalid_token``), or a malformed header."""


class BlingForbidden(BlingError):
    """403: typically ``insufficient_scope`` (the app lacks the scope for this resource)."""


class BlingNotFound(BlingError):
    """404 ``RESOURCE_NOT_FOUND``."""


class BlingValidationError(BlingError):
    """400 (``VALIDATION_ERROR``, ``MISSING_REQUIRED_FIELD_ERROR``…); ``fields`` says what."""


class BlingRateLimited(BlingError):
    """429 with ``period: "second"``: the account's 3 requests/second were exceeded."""

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class BlingDailyLimitReached(BlingError):
    """429 with ``period: "day"``: no more calls until ``until`` (midnight, America/Sao_Paulo)."""

    def __init__(self, message: str, *, until: datetime, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.until = until


class BlingServerError(BlingError):
    """5xx. For a write, the change may or may not have been made."""


class BlingUnavailable(BlingError):
    """No HTTP answer: timeout or connection error (after the client's retries)."""


class BlingUnreachable(BlingUnavailable):
    """No connection could be made at all (refused, no route, connect timeout): Bling, or the
    way to it, is down, whatever the request. Nothing was sent."""


class BlingOutcomeUnknown(BlingUnavailable):
    """A write was sent but no answer came back: it may have been applied. Search, then retry."""


class InvalidGrant(BlingError):
    """The token endpoint refused the authorization code or refresh token: re-authorize."""


class BlingNotConnected(BlingError):
    """No token has been stored yet: someone has to authorize the app first."""


def next_day_start(now: datetime) -> datetime:
    """The next midnight in Bling's time zone, when the daily request budget starts again."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(BLING_TZ)
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=BLING_TZ)


def parse_error_body(body: bytes | str | None) -> dict[str, Any]:
    """The ``error`` object of a Bling answer, as a dict; {} when there is none to be found."""
    if body is None:
        return {}
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text)
    except ValueError:
        return _lenient_error(text)
    if not isinstance(parsed, dict):
        return {}
    error = parsed.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str):  # RFC 6749 shape of an OAuth server
        return {"type": error, "message": error, "description": parsed.get("error_description")}
    return {}


_STRING_FIELD = r'"{name}"\s*:\s*"((?:[^"\\]|\\.)*)"'
_NUMBER_FIELD = r'"{name}"\s*:\s*(\d+)'


def _lenient_error(text: str) -> dict[str, Any]:
    """Pick the known fields out of text that is almost JSON (Bling's documented 429 example)."""
    found: dict[str, Any] = {}
    for name in ("type", "message", "description", "period"):
        match = re.search(_STRING_FIELD.format(name=name), text)
        if match:
            found[name] = json.loads(f'"{match.group(1)}"')
    match = re.search(_NUMBER_FIELD.format(name="limit"), text)
    if match:
        found["limit"] = int(match.group(1))
    return found


def field_errors(raw: Any) -> tuple[FieldError, ...]:
    if not isinstance(raw, list):
        return ()
    out = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        code = item.get("code")
        index = item.get("index")
        out.append(
            FieldError(
                code=code if isinstance(code, int) else None,
                msg=str(item.get("msg") or ""),
                element=item.get("element"),
                namespace=item.get("namespace"),
                index=index if isinstance(index, int) else None,
                collection=field_errors(item.get("collection")),
            )
        )
    return tuple(out)


def is_daily_limit(error: Mapping[str, Any]) -> bool:
    """Tell the daily 429 from the per-second one: ``period`` first, then ``limit``, then text.

    docs/bling-api.md §2: both share ``type: TOO_MANY_REQUESTS``; the daily one has
    ``"period": "day"`` and ``"limit": 120000``, the other ``"period": "second"`` and
    ``"limit": 3``.
    The text fallback matches the documented daily description ("…por dia…amanhã").
    """
    period = str(error.get("period") or "").lower()
    if period:
        return period == "day"
    limit = error.get("limit")
    if isinstance(limit, int):
        return limit > 100  # per-second limits are single digits, the daily one is 120000
    description = str(error.get("description") or "").lower()
    return "por dia" in description or "amanhã" in description or "diário" in description


def error_from_response(
    status: int,
    body: bytes | str | None,
    *,
    now: datetime | None = None,
    retry_after_header: str | None = None,
) -> BlingError:
    """The typed exception for a non-2xx answer from Bling."""
    error = parse_error_body(body)
    kind = error.get("type")
    message = str(error.get("message") or f"Bling answered HTTP {status}")
    kw: dict[str, Any] = {
        "status": status,
        "type": str(kind) if kind is not None else None,
        "description": error.get("description"),
        "fields": field_errors(error.get("fields")),
    }
    if status == 429:
        if is_daily_limit(error):
            moment = now or datetime.now(UTC)
            return BlingDailyLimitReached(message, until=next_day_start(moment), **kw)
        return BlingRateLimited(message, retry_after=_retry_after(retry_after_header), **kw)
    if kind == "invalid_grant":
        return InvalidGrant(message, **kw)
    if status == 401:
        return BlingUnauthorized(message, **kw)
    if status == 403:
        return BlingForbidden(message, **kw)
    if status == 404:
        return BlingNotFound(message, **kw)
    if status >= 500:
        return BlingServerError(message, **kw)
    if 400 <= status < 500:
        return BlingValidationError(message, **kw)
    return BlingError(message, **kw)


def _retry_after(header: str | None) -> float:
    """Seconds to wait after a per-second 429: the header if Bling ever sends one, else 1 s.

    No ``Retry-After`` is documented; one second is the length of the window being exceeded.
    """
    try:
        return max(0.0, float(header)) if header else 1.0
    except ValueError:
        return 1.0
