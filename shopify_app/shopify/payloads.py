"""Reading Shopify's webhook payloads: only the fields the ledger needs, tolerant of their drift."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

#: Cart attribute the theme snippet sets; it reaches the order as a note attribute and links the
#: order to the cart's holds even where Shopify leaves ``cart_token`` empty.
CART_ATTRIBUTE = "_bazico_cart"


class PayloadError(ValueError):
    """The payload lacks what its topic must carry; the delivery is refused with 400."""


def normalize_token(token: Any) -> str | None:
    """Cart tokens are opaque and changed format over the years; ``?key=…`` is not part of them."""
    if not isinstance(token, str) or not token.strip():
        return None
    return token.strip().split("?", 1)[0][:255]


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LineItem:
    line_id: int
    sku: str
    quantity: int


def line_items(payload: dict[str, Any], *, context: str) -> list[LineItem]:
    """Lines with a SKU and a positive quantity; others are skipped and logged, never an error."""
    items = []
    for index, raw in enumerate(payload.get("line_items") or []):
        if not isinstance(raw, dict):
            continue
        sku = raw.get("sku")
        quantity = raw.get("quantity")
        if not isinstance(sku, str) or not sku.strip():
            log.info("%s: line %s has no SKU; skipped", context, raw.get("id", index))
            continue
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            log.info("%s: line %s has no usable quantity; skipped", context, raw.get("id", index))
            continue
        line_id = raw.get("id") if isinstance(raw.get("id"), int) else index
        items.append(LineItem(line_id, sku.strip(), quantity))
    return items


def demand_of(items: list[LineItem]) -> dict[str, int]:
    demand: dict[str, int] = {}
    for item in items:
        demand[item.sku] = demand.get(item.sku, 0) + item.quantity
    return demand


def cart_token_of(payload: dict[str, Any]) -> str:
    token = normalize_token(payload.get("token")) or normalize_token(payload.get("id"))
    if token is None:
        raise PayloadError("cart without a token")
    return token


def attribute(payload: dict[str, Any], name: str) -> str | None:
    """A cart attribute as it reaches an order (``note_attributes``), or None."""
    for entry in payload.get("note_attributes") or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return normalize_token(entry.get("value"))
    return None


def order_id_of(payload: dict[str, Any]) -> int:
    order_id = payload.get("id")
    if not isinstance(order_id, int) or isinstance(order_id, bool):
        raise PayloadError("order without a numeric id")
    return order_id
