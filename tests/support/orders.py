"""Shopify order (and cart) webhook payloads for tests, shaped like the saved fixtures."""

from __future__ import annotations

from typing import Any


def shopify_order(order_id: int, lines: list[tuple[str, int, str]], **extra: Any) -> dict[str, Any]:
    """An anonymous order of ``lines`` (sku, quantity, unit price); ``extra`` overrides fields."""
    return {
        "id": order_id,
        "name": f"#{order_id}",
        "email": None,
        "cart_token": None,
        "checkout_token": None,
        "cancelled_at": None,
        "processed_at": "2026-11-27T09:30:00-03:00",
        "note_attributes": [],
        "total_discounts": "0.00",
        "total_shipping_price_set": {"shop_money": {"amount": "0.00", "currency_code": "BRL"}},
        "line_items": [
            {"id": n, "sku": sku, "quantity": qty, "price": price, "title": f"Peça {sku}"}
            for n, (sku, qty, price) in enumerate(lines, start=1)
        ],
        **extra,
    }


def cart_payload(token: str, updated_at: str, lines: dict[str, int]) -> dict[str, Any]:
    return {
        "id": token,
        "token": token,
        "updated_at": updated_at,
        "line_items": [
            {"id": i + 1, "sku": sku, "quantity": qty, "variant_id": i + 1}
            for i, (sku, qty) in enumerate(lines.items())
        ],
    }


def order_payload(
    order_id: int, cart_token: str | None, lines: dict[str, int], **extra: Any
) -> Any:
    return {
        "id": order_id,
        "name": f"#{order_id}",
        "cart_token": cart_token,
        "checkout_token": None,
        "cancelled_at": None,
        "note_attributes": [],
        "line_items": [
            {"id": 100 + i, "sku": sku, "quantity": qty}
            for i, (sku, qty) in enumerate(lines.items())
        ],
        **extra,
    }
