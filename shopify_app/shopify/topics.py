"""How a Shopify webhook topic is handled: the delivery, the policy handlers apply, and the table
of topic → handler that ``shopify/webhooks.py`` dispatches on.

Each handler runs inside the delivery's unit of work, after its receipt was recorded, so effect
and receipt commit (or vanish) together. The handlers are in ``carts.py`` (carts, checkouts: the
storefront hold rule) and ``handlers.py`` (orders, the app's life cycle, privacy); importing
``handlers`` registers them all.

Lock order everywhere: the cart row, then the holder, then the SKU rows in sorted order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..config import Settings
from ..stock.domain import HolderLimits
from ..unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    shop: str
    topic: str
    webhook_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Policy:
    """What handlers apply: hold lifetimes (RESERVATION_TTL_SECONDS, CHECKOUT_HOLD_SECONDS) and the
    per-cart caps (HOLD_MAX_UNITS_PER_SKU, HOLD_MAX_ACTIVE_HOLDS)."""

    cart_ttl: timedelta
    checkout_ttl: timedelta
    limits: HolderLimits = field(default_factory=HolderLimits)  # none unless configured

    @classmethod
    def of(cls, settings: Settings, limits: HolderLimits) -> Policy:
        return cls(
            cart_ttl=timedelta(seconds=settings.reservation_ttl_seconds),
            checkout_ttl=timedelta(seconds=settings.checkout_hold_seconds),
            limits=limits,
        )


Handler = Callable[[UnitOfWork, Delivery, Policy], str]
HANDLERS: dict[str, Handler] = {}


def handles(*topics: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for topic in topics:
            HANDLERS[topic] = handler
        return handler

    return register


def log_untracked(demand: dict[str, int], tracked: Collection[str], context: str) -> None:
    untracked = sorted(set(demand) - set(tracked))
    if untracked:
        log.info("%s: SKUs not tracked here, skipped: %s", context, ", ".join(untracked))
