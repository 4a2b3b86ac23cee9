"""The ``shopify.edit_lines`` job's Admin GraphQL document is valid against the 2026-07 schema
subset Shopify is checked with (tests/fixtures/shopify/admin_2026_07_subset.graphql), and
asks for what the job reads: each line item's id, SKU and variant."""

from __future__ import annotations

from shopify_app.shopify.order_edits import ORDER_LINES_QUERY, _number, _sku_of
from tests.support.shopify_admin import checked


def test_the_order_lines_query_is_valid_against_the_admin_schema() -> None:
    document, errors = checked(ORDER_LINES_QUERY)
    assert errors == () and document is not None
    for field in ("lineItems(first: $first)", "sku", "legacyResourceId", "hasNextPage"):
        assert field in ORDER_LINES_QUERY


def test_line_ids_and_skus_are_read_tolerantly() -> None:
    assert _number("gid://shopify/LineItem/315789986012684393") == 315789986012684393
    assert _number(None) is None
    assert _sku_of({"sku": " BZ-TEE "}) == "BZ-TEE"
    assert _sku_of({"sku": ""}) is None and _sku_of(None) is None
