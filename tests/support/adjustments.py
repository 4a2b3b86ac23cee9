"""Shopify's refunds/create and orders/edited payloads, in the saved fixtures' shapes, and
Bling's balance of a SKU: what the refund and edit tests share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.bling_standin import BlingStandIn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shopify"


def refund_payload(refund_id: int, order_id: int, lines: list[tuple[int, int, str, str]]) -> Any:
    """The saved refunds/create fixture's shape, with these (line id, quantity, restock_type,
    sku) lines."""
    payload = json.loads((FIXTURES / "refunds_create.json").read_text())
    template = payload["refund_line_items"][0]
    payload.update(id=refund_id, order_id=order_id, admin_graphql_api_id=f"gid://r/{refund_id}")
    payload["refund_line_items"] = [
        {
            **template,
            "id": refund_id * 10 + n,
            "line_item_id": line_id,
            "quantity": quantity,
            "restock_type": restock,
            "line_item": {**template["line_item"], "id": line_id, "sku": sku},
        }
        for n, (line_id, quantity, restock, sku) in enumerate(lines)
    ]
    return payload


def edit_payload(
    edit_id: int, order_id: int, added: dict[int, int], removed: dict[int, int]
) -> Any:
    payload = json.loads((FIXTURES / "orders_edited.json").read_text())
    edit = payload["order_edit"]
    edit.update(id=edit_id, order_id=order_id)
    edit["line_items"] = {
        "additions": [{"id": i, "delta": d} for i, d in added.items()],
        "removals": [{"id": i, "delta": d} for i, d in removed.items()],
    }
    return payload


def bling_balance(standin: BlingStandIn, sku: str) -> float:
    return standin.balance(standin.product_id(sku))[0]
