"""What the Saúde (health) page shows: the Bling connection and its rate-limit use, the Shopify
webhook subscriptions with the last delivery per topic, and the catalog audit's results.

Not shown yet, on purpose: the checkout rule's state (its metafield publisher is being built
elsewhere and stores nothing readable here yet). The catalog audit panel shows the last report
``flask catalog audit`` stored (``audit_results``); it is empty until that command
stores its results.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..catalog import last_report
from ..crypto import TokenUnreadable
from ..erp import connection as bling
from ..runtime import Runtime
from ..shopify import client as shopify_client
from ..shopify import enforcement
from ..shopify.registration import TOPICS, list_subscriptions, webhook_uri
from ..shopify.shops import ShopTokenError, TokenStore
from . import queries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlingHealth:
    configured: bool
    connected: bool
    connected_at: datetime | None
    expires_at: datetime | None
    lost_at: datetime | None
    lost_reason: str | None
    connect_url: str | None  # Bling's consent page (signed state, 30 minutes)
    requests_per_second: int
    queued_ahead_seconds: float  # how far the shared rate limit is booked ahead of now
    pauses: list[queries.PauseRow]


@dataclass(frozen=True)
class TopicHealth:
    topic: str  # Shopify's spelling: carts/update
    subscribed: bool | None  # None: the subscriptions could not be read
    uri: str | None
    last_delivery: datetime | None


def bling_health(runtime: Runtime) -> BlingHealth:
    settings = runtime.settings
    now = runtime.clock()
    configured = bling.is_configured(settings)
    with queries.reading(runtime) as connection:
        pauses = queries.pauses(connection, now)
        next_slot = queries.bling_next_slot(
            connection, settings.bling_client_id if configured else None
        )
    status = bling.token_store(runtime).status() if configured else None
    ahead = 0.0 if next_slot is None else max(0.0, (next_slot - now).total_seconds())
    return BlingHealth(
        configured=configured,
        connected=bool(status and status.connected),
        connected_at=status.connected_at if status else None,
        expires_at=status.expires_at if status else None,
        lost_at=status.lost_at if status else None,
        lost_reason=status.lost_reason if status else None,
        connect_url=bling.authorize_url(runtime) if configured else None,
        requests_per_second=settings.bling_requests_per_second,
        queued_ahead_seconds=ahead,
        pauses=pauses,
    )


def _topic_name(graphql_topic: str) -> str:
    """``CARTS_UPDATE`` → ``carts/update`` (how receipts and the README name topics)."""
    head, _, tail = graphql_topic.lower().partition("_")
    return f"{head}/{tail}"


def shopify_health(runtime: Runtime, shop: str) -> tuple[list[TopicHealth], str | None]:
    """Each topic the service subscribes to: subscribed here?, and its last delivery. The
    second value says why the subscriptions could not be read (None when they were)."""
    with queries.reading(runtime) as connection:
        deliveries = {d.topic: d for d in queries.last_deliveries(connection, shop)}
    subscribed: dict[str, str] | None = None
    problem = None
    try:
        token = TokenStore.for_runtime(runtime).access_token(shop)
        admin_base = shopify_client.admin_base_url(runtime.settings.shopify_admin_url, shop)
        found = list_subscriptions(admin_base, token)
        subscribed = {s.topic: s.uri for s in found if s.uri == webhook_uri(runtime.settings)}
    except (ShopTokenError, TokenUnreadable) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    except shopify_client.ShopifyError as exc:
        problem = f"Shopify: {exc}"
        log.warning("admin.subscriptions_unreadable shop=%s error=%s", shop, exc)
    topics = []
    for topic in TOPICS:
        name = _topic_name(topic)
        delivery = deliveries.get(name)
        topics.append(
            TopicHealth(
                topic=name,
                subscribed=None if subscribed is None else topic in subscribed,
                uri=None if subscribed is None else subscribed.get(topic),
                last_delivery=delivery.last_received_at if delivery else None,
            )
        )
    return topics, problem


def checkout_health(runtime: Runtime, shop: str) -> dict[str, Any]:
    """The checkout rule as Shopify has it (``shopify enforce``'s check, changing nothing): the
    deployed function, the validation and whether it is on; ``problem`` when unreadable."""
    try:
        token = TokenStore.for_runtime(runtime).access_token(shop)
        admin_base = shopify_client.admin_base_url(runtime.settings.shopify_admin_url, shop)
        report = enforcement.check(admin_base, token)
    except (ShopTokenError, TokenUnreadable) as exc:
        return {"problem": f"{type(exc).__name__}: {exc}"}
    except shopify_client.ShopifyError as exc:
        log.warning("admin.checkout_rule_unreadable shop=%s error=%s", shop, exc)
        return {"problem": f"Shopify: {exc}"}
    validation = report.validation
    return {
        "problem": None,
        "function": report.function.handle if report.function else None,
        "enabled": validation.enabled if validation else False,
        "block_on_failure": validation.block_on_failure if validation else None,
    }


def audit_results(runtime: Runtime, shop: str) -> dict[str, Any] | None:
    """The shop's last ``flask catalog audit`` report (catalog.py), or None before the first."""
    return last_report(runtime, shop)


def read(runtime: Runtime, shop: str) -> dict[str, Any]:
    topics, problem = shopify_health(runtime, shop)
    return {
        "bling": bling_health(runtime),
        "topics": topics,
        "subscriptions_problem": problem,
        "audit": audit_results(runtime, shop),
        "checkout": checkout_health(runtime, shop),
    }
