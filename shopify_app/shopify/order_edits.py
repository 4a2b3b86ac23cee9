"""The ``EDIT_LINES`` job: the lines an order edit added that the order did not have.

``orders/edited`` names each added line by its id and quantity only
(``order_edit.line_items.additions[]``: ``{id, delta}``), so a line the order did not have (a
variant added by the edit) has no SKU here. The ``shopify_variants`` table (variant id → SKU,
learnt from payloads) cannot help before a call: the addition carries no variant id. So the
job reads the order's line items from the Admin GraphQL API (``order(id:)``, its
``lineItems``: ``id``, ``sku``, ``variant``), takes each added line's SKU (or, when Shopify's
line has none, its variant's SKU from ``shopify_variants``), and applies the additions through
the same path as any adjustment (orders/adjustments.py ``adjust``), under the key
``edit:{id}:new_lines``: applied once however often the job runs. The ledger, the Bling sales
order (made or corrected from the lines) and its stock entries follow as for known lines.

Shopify down, throttled, or the shop's token not usable: retried with the kind's backoff (a
throttle waits as long as Shopify says). Refused (a 4xx, a GraphQL error): dead-lettered for a
person. A line Shopify does not list, or lists without a SKU any variant gives, is logged
(``order.adjustment_unknown_lines``) and not applied.

What the read cannot give: the subset of the Admin API this app uses carries no money fields on
a line item, so an added line reaches Bling's sales order without a unit price.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..crypto import TokenUnreadable
from ..observability.events import emit
from ..orders.adjustments import adjust
from ..orders.model import Adjustment, LineChange
from ..outbox import JobPolicy, PermanentFailure, RetryLater
from ..outbox import registry as outbox_registry
from ..outbox.kinds import EDIT_LINES
from ..runtime import Runtime
from . import client, paging
from .shops import ShopTokenError, TokenStore

log = logging.getLogger(__name__)

#: Shopify's largest page: an edit adds lines to an order of at most this many (more are logged).
LINES_PAGE = 250
#: The order's line items, as the edit left them (LineItem: tests/fixtures/shopify/
#: admin_2026_07_subset.graphql).
ORDER_LINES_QUERY = """
query orderEditLines($id: ID!, $first: Int!) {
  order(id: $id) {
    id
    lineItems(first: $first) {
      edges { node { id sku quantity name variant { id legacyResourceId } } }
      pageInfo { hasNextPage }
    }
  }
}
"""
#: A missing token or an unreachable Shopify: tried again at this pace, about a day in all.
POLICY = JobPolicy(backoff_base_seconds=2.0, backoff_cap_seconds=600.0, max_attempts=200)
_GID_NUMBER = re.compile(r"([0-9]+)$")


def register(registry: outbox_registry.Registry | None = None) -> None:
    """Run ``EDIT_LINES`` jobs (registering again is a no-op)."""
    (registry or outbox_registry.default_registry).register(EDIT_LINES, edit_lines, policy=POLICY)


def edit_lines(runtime: Runtime, payload: dict[str, Any]) -> None:
    """The outbox handler of ``EDIT_LINES`` (outbox/kinds.py)."""
    shop, order_id, key, wanted = _job(payload)
    with runtime.uow(read_only=True) as uow:
        order = uow.orders.get(shop, order_id)
    if order is None or key in order.adjustments:
        return  # erased, or applied by an earlier run whose "done" was lost
    nodes = _read_lines(runtime, shop, order_id)
    with runtime.uow() as uow:
        added, unknown = [], []
        for line_id, quantity in wanted:
            node = nodes.get(line_id)
            sku = _sku_of(node)
            if sku is None and node is not None:
                variant = _number((node.get("variant") or {}).get("legacyResourceId"))
                sku = uow.shopify.sku_of_variant(shop, variant) if variant else None
            if sku is None:
                unknown.append(line_id)
                continue
            title = node.get("name") if node else None
            added.append(LineChange(line_id, quantity, sku, None, title or None))
        result = adjust(uow, Adjustment(shop, order_id, key, added=tuple(added)))
        if unknown:
            uow.record(
                "order.adjustment_unknown_lines",
                level=logging.WARNING,
                shop=shop,
                order=order_id,
                adjustment=key,
                lines=unknown,
            )
        uow.commit()
    log.info(
        "shopify.edit_lines shop=%s order=%s adjustment=%s outcome=%s lines=%d",
        shop,
        order_id,
        key,
        result.outcome,
        len(added),
    )


def _job(payload: dict[str, Any]) -> tuple[str, int, str, list[tuple[int, int]]]:
    try:
        shop, order_id, key = str(payload["shop"]), int(payload["order_id"]), payload["adjustment"]
        lines = [(int(raw["id"]), int(raw["quantity"])) for raw in payload["lines"]]
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure(f"not an edit lines job payload: {payload!r}") from None
    if not isinstance(key, str) or not key:
        raise PermanentFailure(f"not an edit lines job payload: {payload!r}")
    return shop, order_id, key, lines


def _read_lines(runtime: Runtime, shop: str, order_id: int) -> dict[int, dict[str, Any]]:
    """The order's line items by numeric id, as Shopify has them now."""
    try:
        token = TokenStore.for_runtime(runtime).access_token(shop)
        admin_base = client.admin_base_url(runtime.settings.shopify_admin_url, shop)
        variables = {"id": f"gid://shopify/Order/{order_id}", "first": LINES_PAGE}
        order = paging.read(admin_base, token, ORDER_LINES_QUERY, variables, "order")
    except client.ShopifyThrottled as exc:
        raise RetryLater(f"Shopify throttled: {exc}", delay=exc.retry_after) from exc
    except (
        ShopTokenError,
        TokenUnreadable,
        client.ShopifyUnavailable,
        client.ShopifyUnauthorized,
    ) as exc:
        # Down, or the token not usable (being refreshed, the shop reinstalling): later.
        emit(
            "shopify.edit_lines_failed",
            level=logging.WARNING,
            shop=shop,
            order=order_id,
            error=type(exc).__name__,
            reason=str(exc)[:300],
        )
        raise RetryLater(f"{type(exc).__name__}: {exc}") from exc
    except client.ShopifyError as exc:
        raise PermanentFailure(f"Shopify refused to list order {order_id}'s lines: {exc}") from exc
    if order is None:
        return {}  # gone from Shopify (deleted): nothing to read
    connection = order.get("lineItems") or {}
    if (connection.get("pageInfo") or {}).get("hasNextPage"):
        log.warning("order %s has more than %d lines; the rest is not read", order_id, LINES_PAGE)
    found: dict[int, dict[str, Any]] = {}
    for edge in connection.get("edges") or []:
        node = edge.get("node") if isinstance(edge, dict) else None
        number = _number(node.get("id")) if isinstance(node, dict) else None
        if node is not None and number is not None:
            found[number] = node
    return found


def _sku_of(node: dict[str, Any] | None) -> str | None:
    sku = node.get("sku") if node else None
    return sku.strip() if isinstance(sku, str) and sku.strip() else None


def _number(value: Any) -> int | None:
    match = _GID_NUMBER.search(str(value or ""))
    return int(match.group(1)) if match else None
