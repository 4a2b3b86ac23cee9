"""The shop's catalog as Shopify has it: every product variant with its SKU and inventory item,
read with ``productVariants`` (Admin GraphQL), page by page, paced by the query cost bucket.

Used by ``flask catalog audit`` (catalog.py) and, for the SKU → variant → inventory item map,
by Shopify's inventory follower (the SKU → variant → inventory item map, inventory_api.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import paging

#: What is read of each variant (here and in shopify/inventory_api.py's lookup by SKU).
VARIANT_FIELDS = "id legacyResourceId sku title product { title } inventoryItem { id tracked }"

VARIANTS_QUERY = """
query catalogVariants($first: Int!, $after: String) {
  productVariants(first: $first, after: $after) {
    edges { node { VARIANT_FIELDS } }
    pageInfo { hasNextPage endCursor }
  }
}
""".replace("VARIANT_FIELDS", VARIANT_FIELDS)
SKU_QUERY = """
query bazicoVariantsOfSku($first: Int!, $after: String, $query: String!) {
  productVariants(first: $first, after: $after, query: $query) {
    edges { node { VARIANT_FIELDS } }
    pageInfo { hasNextPage endCursor }
  }
}
""".replace("VARIANT_FIELDS", VARIANT_FIELDS)
#: Variants per page: each costs about 3 points (the variant, its product, its inventory item),
#: so a page stays well under Shopify's 1,000-point limit for one query.
PAGE_SIZE = 100


@dataclass(frozen=True)
class ShopifyVariant:
    variant_id: int
    sku: str | None
    title: str
    product_title: str
    inventory_item_id: str | None
    #: Whether Shopify tracks the variant's inventory (None: not read).
    tracked: bool | None = None

    @property
    def label(self) -> str:
        """ "Camiseta Azul / M" as the merchant sees it in the admin."""
        if not self.title or self.title == "Default Title":  # a product with one variant
            return self.product_title
        return f"{self.product_title} / {self.title}"


def fetch_variants(
    admin_base: str,
    access_token: str,
    *,
    page_size: int | None = None,
    on_page: Callable[[int, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[ShopifyVariant]:
    """Every variant of the shop, following the pages (throttling waited out, paging.py).
    ``on_page(pages, variants)`` is told after each page (progress)."""
    found: list[ShopifyVariant] = []
    variables = {"first": page_size or PAGE_SIZE}
    for number, nodes in enumerate(
        paging.pages(
            admin_base, access_token, VARIANTS_QUERY, variables, "productVariants", sleep=sleep
        ),
        start=1,
    ):
        found.extend(variant_of(node) for node in nodes)
        if on_page is not None:
            on_page(number, len(found))
    return found


def variants_of_sku(
    admin_base: str, access_token: str, sku: str, *, sleep: Callable[[float], None] = time.sleep
) -> list[ShopifyVariant]:
    """The variants whose SKU is exactly ``sku`` (``query: "sku:…"``; Shopify's search matches
    more loosely, so the answer is filtered)."""
    quoted = sku.replace("\\", "\\\\").replace('"', '\\"')
    variables = {"first": 10, "query": f'sku:"{quoted}"'}
    found: list[ShopifyVariant] = []
    for nodes in paging.pages(
        admin_base, access_token, SKU_QUERY, variables, "productVariants", sleep=sleep
    ):
        found.extend(variant_of(node) for node in nodes)
    return [v for v in found if v.sku == sku]


def variant_of(node: dict[str, Any]) -> ShopifyVariant:
    sku = node.get("sku")
    product = node.get("product") or {}
    item = node.get("inventoryItem") or {}
    return ShopifyVariant(
        variant_id=int(node.get("legacyResourceId") or 0),
        sku=sku if isinstance(sku, str) and sku.strip() else None,
        title=str(node.get("title") or ""),
        product_title=str(product.get("title") or ""),
        inventory_item_id=item.get("id"),
        tracked=item["tracked"] if isinstance(item.get("tracked"), bool) else None,
    )
