"""The worker's order reconciliation: orders Shopify has that no webhook brought.

Shopify never guarantees a delivery, and deletes an API subscription after repeated failures
(registration.py recreates it, but the gap is lost). So every few minutes the worker lists each
shop's orders updated since the last run (Admin GraphQL ``orders``, sorted by update time,
paginated within the cost limits: paging.py) and applies each one it never received, or whose
cancellation or payment it never received, through the webhook's own path (``handlers.process``:
the same handlers, a receipt, one transaction), so a delivery that arrives after all changes
nothing.
How far it got is kept per shop (``shopify_order_cursors``) and saved only once a listing was
applied whole, so a crash makes the next run list the same orders again.

What the reconciliation cannot read: Admin GraphQL's order has no line-item properties in the
fields this app is granted here, so an order applied this way is matched to its cart by its cart
token, not by the ``_bazico_hold`` each line names; and its money fields are not read, so its
Bling sales order carries no prices (logged; the merchant completes it in Bling).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from ..db.dialect import upsert
from ..observability import metrics
from ..runtime import Runtime
from . import client, paging
from .handlers import process
from .payloads import parse_time, without_nul
from .shops import ShopTokenError, TokenStore, installed_shops
from .tables import order_cursors
from .topics import Delivery, Policy

log = logging.getLogger(__name__)

#: The listing asks only what decides whether an order must be applied: about 1 point an order.
ORDERS_QUERY = """
query reconcileOrders($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    edges {
      node {
        id
        legacyResourceId
        cancelledAt
        displayFinancialStatus
        updatedAt
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""
#: An order to apply is then read whole: about 52 points with its lines.
ORDER_QUERY = """
query reconcileOrder($id: ID!) {
  order(id: $id) {
    id
    legacyResourceId
    name
    cartToken
    checkoutToken
    cancelledAt
    test
    displayFinancialStatus
    processedAt
    createdAt
    updatedAt
    email
    lineItems(first: 50) {
      edges { node { id sku quantity name variant { legacyResourceId } } }
      pageInfo { hasNextPage }
    }
  }
}
"""
#: Orders per page of the listing (Shopify's largest page).
ORDERS_PAGE = 100
#: A shop seen for the first time is reconciled from this long ago.
FIRST_LOOKBACK = timedelta(days=1)
#: Each run asks again for a little before the last update it saw (clock skew, equal times).
OVERLAP = timedelta(minutes=5)
_GID_NUMBER = re.compile(r"([0-9]+)$")


def reconcile_orders(runtime: Runtime) -> dict[str, int]:
    """Apply, for every installed shop, the orders no webhook brought; returns how many were
    applied per shop. A shop that fails is logged and the others still run."""
    settings = runtime.settings
    if not settings.shopify_api_key:
        return {}
    store = TokenStore.for_runtime(runtime)
    applied: dict[str, int] = {}
    for shop in installed_shops(runtime.engine, settings):
        try:
            applied[shop] = _reconcile_shop(runtime, shop, store.access_token(shop))
        except (ShopTokenError, client.ShopifyError) as exc:
            log.error("shop %s: order reconciliation failed: %s", shop, exc)
    return applied


def _reconcile_shop(runtime: Runtime, shop: str, token: str) -> int:
    now = runtime.clock()
    since = _cursor(runtime, shop) or now - FIRST_LOOKBACK
    query = f"updated_at:>='{(since - OVERLAP).astimezone(UTC).isoformat()}'"
    admin_base = client.admin_base_url(runtime.settings.shopify_admin_url, shop)
    newest, applied = since, 0
    variables = {"first": ORDERS_PAGE, "query": query}
    for nodes in paging.pages(admin_base, token, ORDERS_QUERY, variables, "orders"):
        for node in nodes:
            if apply_order(runtime, shop, node, lambda gid: _read_order(admin_base, token, gid)):
                applied += 1
            updated = parse_time(node.get("updatedAt"))
            if updated is not None and updated > newest:
                newest = updated
    _save_cursor(runtime, shop, newest, now)
    return applied


def apply_order(
    runtime: Runtime,
    shop: str,
    listed: dict[str, Any],
    read_order: Callable[[str], dict[str, Any] | None],
) -> str | None:
    """Apply one listed order if this service lacks it, its cancellation or its payment
    (``read_order(gid)`` reads it whole); the outcome, or None when there was nothing to apply."""
    order_id = _number(listed.get("legacyResourceId"))
    if order_id is None:
        return None
    with runtime.uow(read_only=True) as uow:
        known = uow.orders.get(shop, order_id)
    paid = str(listed.get("displayFinancialStatus") or "").lower() == "paid"
    if known is not None and known.cancelled:
        return None
    if known is not None and listed.get("cancelledAt"):
        topic = "orders/cancelled"
    elif known is not None and known.awaiting_payment and paid:
        topic = "orders/paid"  # its orders/paid never came: it waits for Bling no longer
    elif known is not None:
        return None
    elif paid:
        topic = "orders/paid"
    else:
        topic = "orders/create"
    node = read_order(str(listed.get("id")))
    if node is None:
        return None  # gone meanwhile (deleted): nothing to sell
    payload = payload_of(node)
    webhook_id = f"reconcile:{order_id}:{node.get('updatedAt')}"[:255]
    delivery = Delivery(shop, topic, webhook_id, without_nul(payload))
    outcome = process(runtime.uow(), delivery, Policy.of(runtime.settings, runtime.hold_limits))
    metrics.ORDERS_RECONCILED.labels(topic=topic, outcome=outcome).inc()
    log.warning(
        "shop %s: order %s (%s) applied by reconciliation, no webhook brought it: %s",
        shop,
        order_id,
        payload.get("name"),
        outcome,
    )
    return outcome


def _read_order(admin_base: str, token: str, gid: str) -> dict[str, Any] | None:
    return paging.read(admin_base, token, ORDER_QUERY, {"id": gid}, "order")


def payload_of(node: dict[str, Any]) -> dict[str, Any]:
    """A listed order in the shape of an ``orders/*`` webhook's payload (what payloads.py reads)."""
    lines = (node.get("lineItems") or {}).get("edges") or []
    if ((node.get("lineItems") or {}).get("pageInfo") or {}).get("hasNextPage"):
        log.warning("order %s has more than 50 lines; the rest is not read", node.get("name"))
    status = node.get("displayFinancialStatus")
    return {
        "id": _number(node.get("legacyResourceId")),
        "name": node.get("name"),
        "cart_token": node.get("cartToken"),
        "checkout_token": node.get("checkoutToken"),
        "cancelled_at": node.get("cancelledAt"),
        "test": bool(node.get("test")),
        "financial_status": status.lower() if isinstance(status, str) else None,
        "processed_at": node.get("processedAt"),
        "created_at": node.get("createdAt"),
        "email": node.get("email"),
        "line_items": [_line(edge.get("node") or {}) for edge in lines],
    }


def _line(node: dict[str, Any]) -> dict[str, Any]:
    variant = node.get("variant") or {}
    return {
        "id": _number(node.get("id")),
        "sku": node.get("sku"),
        "quantity": node.get("quantity"),
        "name": node.get("name"),
        "variant_id": _number(variant.get("legacyResourceId")),
    }


def _number(value: Any) -> int | None:
    """``123``, ``"123"`` or ``"gid://shopify/LineItem/123"`` as 123; else None."""
    match = _GID_NUMBER.search(str(value)) if value is not None else None
    return int(match.group(1)) if match else None


def _cursor(runtime: Runtime, shop: str) -> datetime | None:
    with runtime.uow(read_only=True) as uow:
        return uow.connection.execute(
            select(order_cursors.c.seen_until).where(order_cursors.c.shop == shop)
        ).scalar()


def _save_cursor(runtime: Runtime, shop: str, seen_until: datetime, now: datetime) -> None:
    with runtime.uow() as uow:
        values = {"shop": shop, "seen_until": seen_until, "checked_at": now}
        uow.connection.execute(upsert(uow.connection, order_cursors, values, ["shop"]))
        uow.commit()
