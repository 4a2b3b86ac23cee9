"""Shopify's inventory over the Admin GraphQL API: the location, the ``available`` figures
and the two writes (shopify/inventory_follower.py decides what; the SKU → inventory item map
is read with shopify/catalog.py).

- **Reads**: ``locations`` (the one that fulfils online orders) and the figures of many
  inventory items in one call (``inventoryItem(id:)`` under aliases, each with its level at
  the location: ``available`` and when it last moved).
- **Writes**: ``inventoryAdjustQuantities`` (deltas) and ``inventorySetQuantities``
  (compare-and-set absolute writes), both under ``@idempotent(key:)`` (required since 2026-04)
  and with ``changeFromQuantity`` given on every entry (mandatory in 2026-07, even as null).
  A write's answer is a :class:`WriteAnswer`: done, or refused with Shopify's userErrors, which
  leave nothing applied (the whole call fails). A lost answer or an outage raises
  ``client.ShopifyUnavailable`` and the caller sends the very same call again: same key, same
  input, so Shopify applies it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import client, paging

#: Shopify's reason for the writes: the ledger corrects Shopify's count (a listed reason).
REASON = "correction"
#: ``referenceDocumentUri``: why the change happened, in Shopify's preferred app URI form.
REFERENCE = "gid://bazico-stock/Ledger/{sku}"
#: Inventory items read per call (each about 3 points: the item, its level, the quantities).
READ_BATCH = 50
#: Entries per write call.
WRITE_BATCH = 100

LOCATIONS_QUERY = """
query bazicoLocations($first: Int!, $after: String) {
  locations(first: $first, after: $after) {
    edges { node { id name isActive fulfillsOnlineOrders } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

LOCATION_QUERY = """
query bazicoLocation($id: ID!) {
  location(id: $id) { id name isActive fulfillsOnlineOrders }
}
"""

ADJUST_MUTATION = """
mutation bazicoInventoryAdjust($input: InventoryAdjustQuantitiesInput!, $key: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id changes { name delta quantityAfterChange } }
    userErrors { field message code }
  }
}
"""

SET_MUTATION = """
mutation bazicoInventorySet($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id changes { name delta quantityAfterChange } }
    userErrors { field message code }
  }
}
"""


@dataclass(frozen=True)
class Location:
    id: str
    name: str
    active: bool
    fulfills_online_orders: bool


@dataclass(frozen=True)
class Level:
    """One inventory item as Shopify counts it at the location."""

    item_id: str
    #: None: Shopify has no such item (deleted).
    tracked: bool | None
    #: None: the item is not stocked at the location.
    available: int | None
    #: When ``available`` last moved (Shopify's ISO time), None when unknown.
    updated_at: str | None


@dataclass(frozen=True)
class EntryError:
    #: The entry the error is about (index in the call's entries), None: the whole call.
    index: int | None
    code: str | None
    message: str


@dataclass(frozen=True)
class WriteAnswer:
    #: Empty: Shopify applied every entry. Otherwise it applied none.
    errors: tuple[EntryError, ...]
    throttle: client.ThrottleStatus | None

    @property
    def done(self) -> bool:
        return not self.errors


def location_gid(value: str) -> str:
    """SHOPIFY_LOCATION_ID as a gid (a bare number is the legacy id the admin shows)."""
    value = value.strip()
    return f"gid://shopify/Location/{value}" if value.isdigit() else value


def locations(
    base: str, token: str, *, sleep: Callable[[float], None] = time.sleep
) -> list[Location]:
    found: list[Location] = []
    for nodes in paging.pages(
        base, token, LOCATIONS_QUERY, {"first": 50}, "locations", sleep=sleep
    ):
        found.extend(_location(node) for node in nodes)
    return found


def location(
    base: str, token: str, location_id: str, *, sleep: Callable[[float], None] = time.sleep
) -> Location | None:
    node = paging.read(base, token, LOCATION_QUERY, {"id": location_id}, "location", sleep=sleep)
    return _location(node) if node else None


def _location(node: dict[str, Any]) -> Location:
    return Location(
        id=str(node.get("id") or ""),
        name=str(node.get("name") or ""),
        active=bool(node.get("isActive")),
        fulfills_online_orders=bool(node.get("fulfillsOnlineOrders")),
    )


def levels_query(count: int) -> str:
    """One query reading ``count`` inventory items (aliases ``i0``…) at ``$location``."""
    params = ", ".join(f"$i{n}: ID!" for n in range(count))
    fields = "\n".join(
        f"  i{n}: inventoryItem(id: $i{n}) {{ id tracked "
        'inventoryLevel(locationId: $location) { quantities(names: ["available"]) '
        "{ name quantity updatedAt } } }"
        for n in range(count)
    )
    return f"query bazicoInventoryLevels($location: ID!, {params}) {{\n{fields}\n}}"


def levels(
    base: str,
    token: str,
    location_id: str,
    item_ids: list[str],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Level]:
    """Each item's figure at the location, READ_BATCH items a call."""
    found: dict[str, Level] = {}
    for start in range(0, len(item_ids), READ_BATCH):
        chunk = item_ids[start : start + READ_BATCH]
        variables: dict[str, Any] = {"location": location_id}
        variables.update({f"i{n}": item for n, item in enumerate(chunk)})
        data = paging.answer(base, token, levels_query(len(chunk)), variables, sleep=sleep)
        for n, item in enumerate(chunk):
            found[item] = _level(item, data.get(f"i{n}"))
    return found


def _level(item_id: str, node: Any) -> Level:
    if not isinstance(node, dict):
        return Level(item_id, None, None, None)
    level = node.get("inventoryLevel")
    available: int | None = None
    updated_at: str | None = None
    if isinstance(level, dict):
        for quantity in level.get("quantities") or []:
            if isinstance(quantity, dict) and quantity.get("name") == "available":
                value = quantity.get("quantity")
                available = int(value) if isinstance(value, int) else None
                updated_at = quantity.get("updatedAt")
    return Level(item_id, bool(node.get("tracked")), available, updated_at)


def adjust_input(location_id: str, entries: list[tuple[str, str, int]]) -> dict[str, Any]:
    """The variables' ``input`` for deltas: ``entries`` = (sku, inventory item, delta).

    ``changeFromQuantity`` is null on purpose: a delta commutes with Shopify's own sales, so
    checking the figure first would only turn a sale racing the write into a refused write.
    """
    return {
        "name": "available",
        "reason": REASON,
        "referenceDocumentUri": REFERENCE.format(sku="batch"),
        "changes": [
            {
                "inventoryItemId": item,
                "locationId": location_id,
                "delta": delta,
                "changeFromQuantity": None,
                "ledgerDocumentUri": None,
            }
            for _, item, delta in entries
        ],
    }


def set_input(location_id: str, entries: list[tuple[str, str, int, int | None]]) -> dict[str, Any]:
    """The variables' ``input`` for absolute writes: (sku, item, quantity, expected now).

    ``changeFromQuantity`` is what Shopify showed when the ledger's figure was chosen: a sale in
    between makes Shopify refuse the write (CHANGE_FROM_QUANTITY_STALE) instead of undoing it.
    """
    return {
        "name": "available",
        "reason": REASON,
        "referenceDocumentUri": REFERENCE.format(sku="batch"),
        "quantities": [
            {
                "inventoryItemId": item,
                "locationId": location_id,
                "quantity": quantity,
                "changeFromQuantity": expected,
            }
            for _, item, quantity, expected in entries
        ],
    }


def write(base: str, token: str, kind: str, key: str, input_: dict[str, Any]) -> WriteAnswer:
    """Send one write: ``kind`` adjust (deltas) or anything else (an absolute set)."""
    adjust = kind == "adjust"
    query, field = (
        (ADJUST_MUTATION, "inventoryAdjustQuantities")
        if adjust
        else (SET_MUTATION, "inventorySetQuantities")
    )
    answer = client.graphql_answer(base, token, query, {"input": input_, "key": key})
    payload = answer.data.get(field)
    if not isinstance(payload, dict):
        raise client.ShopifyUnavailable(f"{field} answered without its payload")
    entries = len(input_.get("changes" if adjust else "quantities") or [])
    errors = tuple(_entry_error(e, entries) for e in payload.get("userErrors") or [])
    return WriteAnswer(errors, answer.throttle)


def _entry_error(error: Any, entries: int) -> EntryError:
    if not isinstance(error, dict):
        return EntryError(None, None, str(error))
    path = [str(p) for p in error.get("field") or []]
    index = next((int(p) for p in path if p.isdigit()), None)
    if index is not None and not 0 <= index < entries:
        index = None
    code = error.get("code")
    return EntryError(index, str(code) if code else None, str(error.get("message") or ""))
