"""The catalog audit's comparison (catalog.py ``audit``): pure, over plain variants."""

from __future__ import annotations

from shopify_app.catalog import audit
from shopify_app.shopify.catalog import ShopifyVariant

SHOP = "bazico.myshopify.com"


def variant(number: int, sku: str | None, title: str = "M") -> ShopifyVariant:
    return ShopifyVariant(number, sku, title, "Camiseta", f"gid://shopify/InventoryItem/{number}")


def test_a_matching_catalog_has_no_problem() -> None:
    result = audit(SHOP, [variant(1, "TEE-M"), variant(2, "TEE-G", "G")], {"TEE-M", "TEE-G"})
    assert result.problems == 0
    assert result.as_json()["problems"] == 0


def test_each_kind_of_mismatch_is_listed() -> None:
    variants = [
        variant(1, None),  # no SKU
        variant(2, "CAP"),
        variant(3, "CAP", "G"),  # the same SKU twice
        variant(4, "tee-m "),  # Bling has "TEE-M": a typo, most likely
        variant(5, "ONLY-SHOPIFY"),
    ]
    result = audit(SHOP, variants, {"CAP", "TEE-M", "ONLY-BLING"})
    assert [v.variant_id for v in result.without_sku] == [1]
    assert list(result.duplicate_skus) == ["CAP"]
    assert [v.variant_id for v in result.duplicate_skus["CAP"]] == [2, 3]
    assert result.not_in_bling == ["ONLY-SHOPIFY", "tee-m "]
    assert result.not_in_shopify == ["ONLY-BLING", "TEE-M"]
    assert result.near_misses == [("tee-m ", "TEE-M")]
    assert result.problems == 1 + 1 + 2 + 2


def test_a_single_variant_product_is_named_by_its_product() -> None:
    one = ShopifyVariant(7, "BAG", "Default Title", "Bolsa", None)
    assert one.label == "Bolsa"
    assert variant(8, "TEE-M").label == "Camiseta / M"
