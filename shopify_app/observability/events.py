"""Business events (docs/architecture.md, Conventions): each logged once, as ``event.action``,
and counted.

``emit`` is for events that are true once called (a refusal, a Bling answer). Events of a
transaction (a hold created, expired, an order confirmed) are queued on the unit of work with
``UnitOfWork.record`` and emitted by ``commit()`` only after the database committed them: a
rolled-back change is never logged as done.

Shoppers are pseudonymous here: a cart token is a bearer of the cart, so logs carry
``holder_hash`` (a short digest), never the token; e-mails never appear (``logs.scrub``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from . import metrics

_log = structlog.get_logger("bazico.events")
_stdlib_log = logging.getLogger("bazico.events")


@dataclass(frozen=True)
class Event:
    action: str
    fields: dict[str, Any] = field(default_factory=dict)
    level: int = logging.INFO
    message: str | None = None


def holder_hash(holder: str | None) -> str | None:
    """A stable, short, one-way tag for a holder (cart token), to follow a cart through logs."""
    if not holder:
        return None
    return hashlib.sha256(holder.encode()).hexdigest()[:12]


def _channel(source: Any) -> str:
    return {"checkout": "cart"}.get(str(source), str(source))


def _count(action: str, fields: dict[str, Any]) -> None:
    if action == "reservation.created":
        metrics.RESERVATIONS.labels(_channel(fields.get("source")), "granted").inc()
    elif action == "reservation.rejected":
        outcome = str(fields.get("outcome", "sold_out"))
        channel = _channel(fields.get("source"))
        metrics.RESERVATIONS.labels(channel, outcome).inc()
        if "limit" in fields:  # refused by a rate or a per-cart cap (denial of inventory)
            metrics.LIMIT_REFUSALS.labels(channel, str(fields["limit"])).inc()
    elif action == "reservation.expired":
        metrics.EXPIRATIONS.inc()
        if fields.get("unlisted"):
            metrics.UNLISTED_HOLDS.inc()
    elif action == "order.confirmed":
        metrics.CONFIRMATIONS.labels(fields.get("channel", "shopify"), "confirmed").inc()
    elif action == "order.confirmation_refused":
        outcome = str(fields.get("outcome", "expired"))
        metrics.CONFIRMATIONS.labels(fields.get("channel", "api"), outcome).inc()
    elif action == "order.oversold":
        metrics.OVERSOLD_UNITS.inc(int(fields.get("units", 0)))
    elif action == "bling.foreign_sales_order":
        metrics.FOREIGN_SALES_ORDERS.inc()
    elif action == "bling.sales_order_cancelled":
        metrics.SALES_ORDER_CANCELLATIONS.labels("cancelled").inc()
    elif action == "bling.cancellation_refused":
        metrics.SALES_ORDER_CANCELLATIONS.labels("refused").inc()


def logged(level: int = logging.INFO) -> bool:
    """Whether events at ``level`` are logged (LOG_LEVEL); when not, only their metrics read
    them, and a hot path may leave out the fields nothing else reads."""
    return _stdlib_log.isEnabledFor(level)


def emit(
    action: str, *, level: int = logging.INFO, message: str | None = None, **fields: Any
) -> None:
    """Log the event once (``event.action``) and count it in its metric."""
    _count(action, fields)
    if _stdlib_log.isEnabledFor(level):  # below LOG_LEVEL: counted, and nothing else to do
        _log.log(level, message or action, event_action=action, **fields)


def emit_all(events: Iterable[Event]) -> None:
    for event in events:
        emit(event.action, level=event.level, message=event.message, **event.fields)
