"""Shopify ``orders/create`` payloads for tests, shaped like the saved fixtures."""

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
