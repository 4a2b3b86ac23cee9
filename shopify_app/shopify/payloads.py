"""Reading Shopify's webhook payloads: only the fields the ledger needs, tolerant of their drift."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard

from ..orders.model import Adjustment, LineChange, OrderDetails

log = logging.getLogger(__name__)

#: Cart attribute the theme snippet sets; it reaches the order as a note attribute and links the
#: order to the cart's holds even where Shopify leaves ``cart_token`` empty.
CART_ATTRIBUTE = "_bazico_cart"
#: Line-item property the storefront adds with the item (same ``/cart/add.js`` call): the id of
#: the hold that covers the line. Shopify keeps it on the cart line, the checkout and the order's
#: line item, so every webhook (and the checkout) can tell which hold a line uses. Keys starting
#: with ``_`` are hidden from shoppers by themes.
HOLD_PROPERTY = "_bazico_hold"


class PayloadError(ValueError):
    """The payload lacks what its topic must carry; the delivery is refused with 400."""


#: Shopify's ids are 64-bit; anything outside a BIGINT cannot be one (and cannot be stored).
MAX_ID = 2**63 - 1
#: More units than any line can carry (the REST API's own limit); larger is not an order.
MAX_LINE_QUANTITY = 1_000_000
#: ``orders.name`` (Shopify's "#1001") is at most this long.
MAX_ORDER_NAME = 64


def is_id(value: object) -> TypeGuard[int]:
    """A positive integer that fits a BIGINT column (``True`` is not an id)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def without_nul(value: Any) -> Any:
    """``value`` with every NUL in its strings (keys too) replaced by U+FFFD.

    PostgreSQL text cannot hold NUL; a SKU or token carrying one then names nothing tracked
    here, rather than failing the delivery with a 500 (a fuzzer's find).
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    return value


def list_of(payload: dict[str, Any], key: str) -> list[Any]:
    """``payload[key]`` when it is a JSON array, else empty: a missing, null or mistyped list
    (a fuzzer sent ``"line_items": 5``) is read as no entries, never a 500."""
    value = payload.get(key)
    return value if isinstance(value, list) else []


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


#: Money is kept in cents (integers): exact, and the same on SQLite and PostgreSQL.
MAX_CENTS = 10**13  # a hundred billion reais: anything larger is not a price, it is a fuzzer


def cents(value: Any) -> int | None:
    """A Shopify money string ("89.99") or number as integer cents, rounded half up; None if
    absent or unreadable (never an error: money only matters once the order reaches Bling)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value)) * 100
    except InvalidOperation:
        return None
    if not amount.is_finite() or abs(amount) >= MAX_CENTS:
        return None
    return int(amount.quantize(Decimal(1), rounding="ROUND_HALF_UP"))


@dataclass(frozen=True)
class LineItem:
    line_id: int
    sku: str
    quantity: int
    unit_price_cents: int | None = None  # ``price``: before discounts (they are order-level)
    title: str | None = None
    variant_id: int | None = None
    #: The hold the line names (HOLD_PROPERTY), if any: only a claim, checked against the
    #: cart's own holds before it is used.
    hold_id: uuid.UUID | None = None


def property_of(raw: dict[str, Any], name: str) -> str | None:
    """A line item property: an object on carts (``{"name": "value"}``), a list of
    ``{"name", "value"}`` on checkouts and orders; None when absent or not a string."""
    properties = raw.get("properties")
    value: Any = None
    if isinstance(properties, dict):
        value = properties.get(name)
    elif isinstance(properties, list):
        for entry in properties:
            if isinstance(entry, dict) and entry.get("name") == name:
                value = entry.get("value")
                break
    return value.strip() if isinstance(value, str) and value.strip() else None


def hold_id_of(raw: dict[str, Any]) -> uuid.UUID | None:
    """The hold id a line names, when it is a well-formed UUID (anything else names nothing)."""
    value = property_of(raw, HOLD_PROPERTY)
    if value is None or len(value) > 64:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def line_items(payload: dict[str, Any], *, context: str) -> list[LineItem]:
    """Lines with a SKU and a positive quantity; others are skipped and logged, never an error."""
    items = []
    seen: set[int] = set()
    for index, raw in enumerate(list_of(payload, "line_items")):
        if not isinstance(raw, dict):
            continue
        sku = raw.get("sku")
        quantity = raw.get("quantity")
        if not isinstance(sku, str) or not sku.strip():
            log.info("%s: line %s has no SKU; skipped", context, raw.get("id", index))
            continue
        if not is_id(quantity) or quantity > MAX_LINE_QUANTITY:
            log.info("%s: line %s has no usable quantity; skipped", context, raw.get("id", index))
            continue
        raw_id = raw.get("id")
        line_id = raw_id if is_id(raw_id) else index
        if line_id in seen:  # a repeated line id: keep both lines, under distinct keys
            line_id = -(index + 1)
        seen.add(line_id)
        title = raw.get("name") or raw.get("title")
        variant_id = raw.get("variant_id")
        items.append(
            LineItem(
                line_id,
                sku.strip(),
                quantity,
                cents(raw.get("price")),
                title[:255] if isinstance(title, str) and title else None,
                variant_id if is_id(variant_id) else None,
                hold_id_of(raw),
            )
        )
    return items


def cart_token_of(payload: dict[str, Any]) -> str:
    token = normalize_token(payload.get("token")) or normalize_token(payload.get("id"))
    if token is None:
        raise PayloadError("cart without a token")
    return token


def attribute(payload: dict[str, Any], name: str) -> str | None:
    """A cart attribute as it reaches an order (``note_attributes``), or None."""
    for entry in list_of(payload, "note_attributes"):
        if isinstance(entry, dict) and entry.get("name") == name:
            return normalize_token(entry.get("value"))
    return None


def order_id_of(payload: dict[str, Any]) -> int:
    order_id = payload.get("id")
    if not is_id(order_id):
        raise PayloadError("order without a numeric id")
    return order_id


def order_name_of(payload: dict[str, Any]) -> str | None:
    """Shopify's order name ("#1001"), or None when absent or not a string."""
    name = payload.get("name")
    return name[:MAX_ORDER_NAME] if isinstance(name, str) and name else None


#: ``financial_status`` of an order whose payment has not come in yet (boleto, PIX, bank
#: transfer): Shopify sends ``orders/paid`` when it does. Every other status (``authorized``,
#: ``paid``, ``partially_paid``, …) means the shop has the money or holds it.
PAYMENT_PENDING = "pending"


def payment_pending(payload: dict[str, Any]) -> bool:
    """Whether the order waits for its payment (absent or unreadable: it does not)."""
    return payload.get("financial_status") == PAYMENT_PENDING


def is_test(payload: dict[str, Any]) -> bool:
    """A test order (Shopify's ``test: true``: the Bogus gateway, a test payment)."""
    return payload.get("test") is True


def order_details(payload: dict[str, Any]) -> OrderDetails:
    shipping_set = payload.get("total_shipping_price_set")
    shipping = None
    if isinstance(shipping_set, dict) and isinstance(shipping_set.get("shop_money"), dict):
        shipping = cents(shipping_set["shop_money"].get("amount"))
    if shipping is None:
        lines = [s for s in list_of(payload, "shipping_lines") if isinstance(s, dict)]
        prices = [cents(s.get("price")) for s in lines]
        shipping = sum(p for p in prices if p is not None) if lines else None
    raw_customer = payload.get("customer")
    customer = raw_customer if isinstance(raw_customer, dict) else {}
    email = payload.get("email") or customer.get("email")
    name = " ".join(
        part.strip()
        for part in (customer.get("first_name"), customer.get("last_name"))
        if isinstance(part, str) and part.strip()
    )
    return OrderDetails(
        placed_at=parse_time(payload.get("processed_at")) or parse_time(payload.get("created_at")),
        shipping_cents=shipping,
        discount_cents=cents(payload.get("total_discounts")),
        customer_name=name[:255] or None,
        customer_email=email.strip()[:255] if isinstance(email, str) and "@" in email else None,
    )


# --- refunds and order edits ---------------------------------------------------------------

#: ``restock_type`` values whose units go back to stock (``no_restock`` leaves them sold).
RESTOCKING = frozenset({"return", "cancel", "legacy_restock"})


def refund_adjustment(shop: str, payload: dict[str, Any]) -> Adjustment:
    """``refunds/create``: the restocked lines of one refund (its ``id`` keys it: applied
    once). A line without a usable id or quantity is skipped and logged."""
    refund_id, order_id = payload.get("id"), payload.get("order_id")
    if not is_id(refund_id) or not is_id(order_id):
        raise PayloadError("refund without a numeric id and order_id")
    restock_all = payload.get("restock") is True
    removed = []
    for raw in list_of(payload, "refund_line_items"):
        if not isinstance(raw, dict):
            continue
        kind = raw.get("restock_type")
        # ``restock`` (top level) is the older API's only flag; ``restock_type`` decides.
        if not (kind in RESTOCKING or (kind is None and restock_all)):
            continue
        line_id, quantity = raw.get("line_item_id"), raw.get("quantity")
        if not is_id(line_id) or not is_id(quantity) or not 0 < quantity <= MAX_LINE_QUANTITY:
            log.info("refund %s: line %s has no usable id or quantity; skipped", refund_id, line_id)
            continue
        line = raw.get("line_item")
        sku = line.get("sku") if isinstance(line, dict) else None
        removed.append(
            LineChange(line_id, quantity, sku.strip() if isinstance(sku, str) and sku else None)
        )
    return Adjustment(shop, order_id, f"refund:{refund_id}", removed=tuple(removed))


def edit_adjustment(shop: str, payload: dict[str, Any]) -> Adjustment:
    """``orders/edited``: ``order_edit`` with ``id``, ``order_id`` and ``line_items``'s
    ``additions`` and ``removals`` (``{id, delta}``: no SKU; an added line the order does not
    have is found in ``line_items`` when a payload carries them)."""
    edit = payload.get("order_edit")
    if not isinstance(edit, dict):
        raise PayloadError("orders/edited without an order_edit")
    edit_id, order_id = edit.get("id"), edit.get("order_id")
    if not is_id(edit_id) or not is_id(order_id):
        raise PayloadError("order edit without a numeric id and order_id")
    changes = edit.get("line_items")
    changes = changes if isinstance(changes, dict) else {}
    described = {i.line_id: i for i in line_items(payload, context=f"order edit {edit_id}")}

    def deltas(name: str) -> tuple[LineChange, ...]:
        found = []
        for raw in list_of(changes, name):
            if not isinstance(raw, dict):
                continue
            line_id, delta = raw.get("id"), raw.get("delta")
            if not is_id(line_id) or not is_id(delta) or not 0 < delta <= MAX_LINE_QUANTITY:
                log.info("order edit %s: %s entry %r unusable; skipped", edit_id, name, raw)
                continue
            item = described.get(line_id)
            found.append(
                LineChange(
                    line_id,
                    delta,
                    item.sku if item else None,
                    item.unit_price_cents if item else None,
                    item.title if item else None,
                )
            )
        return tuple(found)

    return Adjustment(
        shop, order_id, f"edit:{edit_id}", removed=deltas("removals"), added=deltas("additions")
    )
