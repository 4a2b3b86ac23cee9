"""The Shopify stand-in answers as Shopify does: documents checked against the 2026-07 schema,
the query cost and its throttling, and the metafield, definition, function and validation
operations the service sends, with their limits and userErrors, and Shopify's inventory
(locations, levels, the two idempotent writes, lost answers).

Long because each behaviour of the stand-in the service's tests rely on is shown here once,
through real HTTP, and they share this module's fixtures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from shopify_app.shopify import client
from tests.support.clock import FakeClock
from tests.support.shopify_admin import admin_schema
from tests.support.shopify_install import standin
from tests.support.shopify_standin import ShopifyStandIn

SHOP = "standin-shop.myshopify.com"
TOKEN = "shpat_standin_test"
VARIANT = "gid://shopify/ProductVariant/40000000001"

SET = """
mutation set($metafields: [MetafieldsSetInput!]!) {
  metafieldsSet(metafields: $metafields) {
    metafields { key namespace value compareDigest owner { ... on ProductVariant { id } } }
    userErrors { field message code elementIndex }
  }
}
"""
DELETE = """
mutation delete($metafields: [MetafieldIdentifierInput!]!) {
  metafieldsDelete(metafields: $metafields) {
    deletedMetafields { ownerId namespace key }
    userErrors { field message }
  }
}
"""


@pytest.fixture
def stand_in() -> Iterator[ShopifyStandIn]:
    with standin() as server:
        server.add_access_token(SHOP, TOKEN)
        yield server


def post(stand_in: ShopifyStandIn, query: str, variables: Any = None) -> dict[str, Any]:
    response = requests.post(
        client.graphql_url(stand_in.url),
        data=json.dumps({"query": query, "variables": variables or {}}),
        headers={"X-Shopify-Access-Token": TOKEN, "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def stock(owner: str = VARIANT, value: str = '{"v":1,"free":1,"h":{}}', **extra: Any) -> Any:
    return {"ownerId": owner, "namespace": "$app:bazico", "key": "stock", "type": "json",
            "value": value, **extra}  # fmt: skip


# --- the schema --------------------------------------------------------------------------------


def test_the_schema_copy_builds_and_has_what_the_service_sends() -> None:
    schema = admin_schema()
    mutations = set(schema.mutation_type.fields)  # type: ignore[union-attr]
    assert {"metafieldsSet", "metafieldsDelete", "metafieldDefinitionCreate"} <= mutations
    assert {"validationCreate", "validationUpdate", "webhookSubscriptionCreate"} <= mutations
    queries = set(schema.query_type.fields)  # type: ignore[union-attr]
    assert {"validations", "shopifyFunctions", "webhookSubscriptions"} <= queries


def test_an_invalid_document_gets_shopifys_error_shape_and_no_data(
    stand_in: ShopifyStandIn,
) -> None:
    body = post(stand_in, "query { shop { nameX } }")
    assert "data" not in body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "undefinedField"
    assert "nameX" in error["message"] and error["locations"] == [{"line": 1, "column": 16}]

    missing = post(stand_in, "mutation { metafieldsSet { userErrors { message } } }")
    assert missing["errors"][0]["extensions"]["code"] == "missingRequiredArguments"
    unparsable = post(stand_in, "query {")
    assert "data" not in unparsable and unparsable["errors"][0]["locations"]


def test_variables_are_coerced_against_their_types(stand_in: ShopifyStandIn) -> None:
    query = (
        "mutation c($topic: WebhookSubscriptionTopic!, $s: WebhookSubscriptionInput!) {"
        " webhookSubscriptionCreate(topic: $topic, webhookSubscription: $s) {"
        " userErrors { message } } }"
    )
    body = post(stand_in, query, {"topic": "CARTS_EXPLODE", "s": {"uri": "https://x.test/w"}})
    assert "data" not in body and "CARTS_EXPLODE" in body["errors"][0]["message"]
    with pytest.raises(client.GraphQLError):
        client.graphql(stand_in.url, TOKEN, query, {"topic": "CARTS_EXPLODE", "s": {}})


# --- cost and throttling ---------------------------------------------------------------------


def test_every_answer_carries_its_cost_and_the_bucket(stand_in: ShopifyStandIn) -> None:
    body = post(stand_in, SET, {"metafields": [stock()]})
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 10 == cost["actualQueryCost"], "a mutation costs 10"
    status = cost["throttleStatus"]
    assert status["maximumAvailable"] == 2000.0 and status["restoreRate"] == 100.0
    assert 1980 <= status["currentlyAvailable"] <= 1990
    listing = "{ validations(first: 5) { nodes { id title } } }"
    assert post(stand_in, listing)["extensions"]["cost"]["requestedQueryCost"] == 2 + 5 * 1


def test_a_call_the_bucket_cannot_pay_for_is_throttled(stand_in: ShopifyStandIn) -> None:
    stand_in.set_bucket(SHOP, available=5, restore_rate=1)
    body = post(stand_in, SET, {"metafields": [stock()]})
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert body["extensions"]["cost"]["actualQueryCost"] is None
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 5
    assert stand_in.metafield(SHOP, VARIANT) is None, "a throttled call changes nothing"
    with pytest.raises(client.ShopifyThrottled) as raised:
        client.graphql(stand_in.url, TOKEN, SET, {"metafields": [stock()]})
    assert 4 <= raised.value.retry_after <= 6, "(10 - 5) points at 1 a second"
    assert stand_in.calls_of("graphql")[-1].throttled


def test_forced_throttling_and_an_outage(stand_in: ShopifyStandIn) -> None:
    stand_in.throttle(SHOP, calls=2)
    for _ in range(2):
        with pytest.raises(client.ShopifyThrottled):
            client.graphql(stand_in.url, TOKEN, SET, {"metafields": [stock()]})
    client.graphql(stand_in.url, TOKEN, SET, {"metafields": [stock()]})
    stand_in.outage()
    with pytest.raises(client.ShopifyUnavailable):
        client.graphql(stand_in.url, TOKEN, SET, {"metafields": [stock()]})
    stand_in.restore()
    assert client.graphql(stand_in.url, TOKEN, SET, {"metafields": [stock()]})


# --- metafields --------------------------------------------------------------------------------


def test_metafields_set_stores_per_owner_under_the_apps_namespace(
    stand_in: ShopifyStandIn,
) -> None:
    other = "gid://shopify/ProductVariant/40000000002"
    data = client.graphql(stand_in.url, TOKEN, SET, {"metafields": [stock(), stock(other, "{}")]})
    written = data["metafieldsSet"]["metafields"]
    assert [m["owner"]["id"] for m in written] == [VARIANT, other]
    assert written[0]["namespace"].startswith("app--") and written[0]["namespace"].endswith(
        "--bazico"
    )
    stored = stand_in.metafield(SHOP, VARIANT)
    assert stored is not None and stored.json_value == {"v": 1, "free": 1, "h": {}}
    client.graphql(stand_in.url, TOKEN, SET, {"metafields": [stock(value='{"v":1,"free":0}')]})
    again = stand_in.metafield(SHOP, VARIANT)
    assert again is not None and again.writes == 2 and again.json_value["free"] == 0


def test_metafields_set_takes_at_most_25(stand_in: ShopifyStandIn) -> None:
    many = [stock(f"gid://shopify/ProductVariant/{4000 + i}") for i in range(26)]
    body = post(stand_in, SET, {"metafields": many})
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    assert stand_in.metafields(SHOP) == []
    assert client.graphql(stand_in.url, TOKEN, SET, {"metafields": many[:25]})
    assert len(stand_in.metafields(SHOP)) == 25


@pytest.mark.parametrize(
    ("entry", "field", "code"),
    [
        (stock(value="{not json"), "value", "INVALID_VALUE"),
        (stock(type=None), "type", "BLANK"),
        (stock(type="no_such_type"), "type", "INVALID_TYPE"),
        (stock(key="k"), "key", "TOO_SHORT"),
        (stock(key="stock level"), "key", "INVALID"),
        (stock(namespace="ab"), "namespace", "TOO_SHORT"),
        (stock(owner="40000000001"), "ownerId", "INVALID"),
        (stock(compareDigest="0" * 64), "compareDigest", "STALE_OBJECT"),
    ],
)
def test_bad_input_gets_user_errors_and_nothing_is_written(
    stand_in: ShopifyStandIn, entry: dict[str, Any], field: str, code: str
) -> None:
    good = stock("gid://shopify/ProductVariant/40000000009")
    data = client.graphql(stand_in.url, TOKEN, SET, {"metafields": [good, entry]})
    payload = data["metafieldsSet"]
    assert payload["metafields"] is None
    [error] = payload["userErrors"]
    assert error["field"] == ["metafields", "1", field] and error["code"] == code
    assert error["elementIndex"] == 1
    assert stand_in.metafields(SHOP) == [], "atomic: the good entry is not written either"


def test_a_deleted_owner_is_refused(stand_in: ShopifyStandIn) -> None:
    stand_in.remove_owner(SHOP, VARIANT)
    data = client.graphql(stand_in.url, TOKEN, SET, {"metafields": [stock()]})
    assert data["metafieldsSet"]["userErrors"][0]["field"] == ["metafields", "0", "ownerId"]


def test_metafields_delete_answers_null_for_what_is_not_there(stand_in: ShopifyStandIn) -> None:
    client.graphql(stand_in.url, TOKEN, SET, {"metafields": [stock()]})
    ident = {"ownerId": VARIANT, "namespace": "$app:bazico", "key": "stock"}
    other = {**ident, "ownerId": "gid://shopify/ProductVariant/7"}
    data = client.graphql(stand_in.url, TOKEN, DELETE, {"metafields": [ident, other]})
    deleted = data["metafieldsDelete"]["deletedMetafields"]
    assert deleted[0]["ownerId"] == VARIANT and deleted[1] is None
    assert stand_in.metafield(SHOP, VARIANT) is None


def test_a_definition_fixes_the_type_and_is_created_once(stand_in: ShopifyStandIn) -> None:
    create = """
    mutation d($definition: MetafieldDefinitionInput!) {
      metafieldDefinitionCreate(definition: $definition) {
        createdDefinition { id namespace key type { name } }
        userErrors { field message code }
      }
    }
    """
    definition = {
        "name": "Estoque",
        "namespace": "$app:bazico",
        "key": "stock",
        "type": "json",
        "ownerType": "PRODUCTVARIANT",
    }
    first = client.graphql(stand_in.url, TOKEN, create, {"definition": definition})
    assert first["metafieldDefinitionCreate"]["createdDefinition"]["type"]["name"] == "json"
    again = client.graphql(stand_in.url, TOKEN, create, {"definition": definition})
    assert again["metafieldDefinitionCreate"]["userErrors"][0]["code"] == "TAKEN"
    untyped = stock(type=None)
    data = client.graphql(stand_in.url, TOKEN, SET, {"metafields": [untyped]})
    assert data["metafieldsSet"]["userErrors"] == [], "the definition gives the type"
    wrong = client.graphql(stand_in.url, TOKEN, SET, {"metafields": [stock(type="boolean")]})
    assert wrong["metafieldsSet"]["userErrors"][0]["code"] == "INVALID_TYPE"


# --- functions and validations -----------------------------------------------------------------


VALIDATION_CREATE = """
mutation v($validation: ValidationCreateInput!) {
  validationCreate(validation: $validation) {
    validation { id enabled blockOnFailure shopifyFunction { handle } }
    userErrors { field message code }
  }
}
"""


def test_validations_need_a_deployed_validation_function(stand_in: ShopifyStandIn) -> None:
    handle = {"functionHandle": "bazico-checkout-validation", "enable": True}
    refused = client.graphql(stand_in.url, TOKEN, VALIDATION_CREATE, {"validation": handle})
    assert refused["validationCreate"]["userErrors"][0]["code"] == "FUNCTION_NOT_FOUND"
    stand_in.deploy_function(SHOP, "other-discount", api_type="discount")
    stand_in.deploy_function(SHOP)
    functions = client.graphql(
        stand_in.url,
        TOKEN,
        "query f($t: String) { shopifyFunctions(first: 10, apiType: $t) { nodes { handle } } }",
        {"t": "cart_checkout_validation"},
    )
    assert functions["shopifyFunctions"]["nodes"] == [{"handle": "bazico-checkout-validation"}]

    created = client.graphql(stand_in.url, TOKEN, VALIDATION_CREATE, {"validation": handle})
    validation = created["validationCreate"]["validation"]
    assert validation["enabled"] is True and validation["blockOnFailure"] is False
    silent = {"functionHandle": "bazico-checkout-validation"}
    off = client.graphql(stand_in.url, TOKEN, VALIDATION_CREATE, {"validation": silent})
    assert off["validationCreate"]["validation"]["enabled"] is False, "enable defaults to false"
    listed = client.graphql(
        stand_in.url, TOKEN, "{ validations(first: 5) { nodes { id enabled } } }"
    )
    assert [v["enabled"] for v in listed["validations"]["nodes"]] == [True, False]
    wrong = {"functionHandle": "other-discount", "enable": True}
    data = client.graphql(stand_in.url, TOKEN, VALIDATION_CREATE, {"validation": wrong})
    assert data["validationCreate"]["userErrors"][0]["code"] == "FUNCTION_DOES_NOT_IMPLEMENT"


# --- inventory ---------------------------------------------------------------------------------


ADJUST = """
mutation adjust($input: InventoryAdjustQuantitiesInput!, $key: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup {
      id createdAt reason referenceDocumentUri
      changes(quantityNames: ["available"]) {
        name delta quantityAfterChange item { id } location { id }
      }
    }
    userErrors { field message code }
  }
}
"""
SET_QUANTITIES = """
mutation set($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) @idempotent(key: "set-key-1") {
    inventoryAdjustmentGroup { changes { name delta quantityAfterChange } }
    userErrors { field message code }
  }
}
"""
LEVEL = """
query level($item: ID!, $location: ID!) {
  inventoryItem(id: $item) {
    id sku tracked legacyResourceId
    inventoryLevel(locationId: $location) {
      id isActive item { id } location { id name }
      quantities(names: ["available", "on_hand", "committed", "reserved"]) {
        name quantity updatedAt
      }
    }
  }
}
"""
REF = "gid://bazico/Ledger/1"


@pytest.fixture
def shelf(stand_in: ShopifyStandIn) -> tuple[str, str]:
    """A variant stocked with 5 at the shop's one location: (inventory item, location)."""
    location = stand_in.add_location(SHOP)
    item = stand_in.inventory_item_of(SHOP, stand_in.add_variant(SHOP, "TEE-M"))
    stand_in.stock(SHOP, item, location, 5)
    return item, location


def change(item: str, location: str, delta: int, **extra: Any) -> dict[str, Any]:
    return {"inventoryItemId": item, "locationId": location, "delta": delta, **extra}


def adjust_input(*changes: dict[str, Any], reason: str = "correction") -> dict[str, Any]:
    return {"name": "available", "reason": reason, "referenceDocumentUri": REF,
            "changes": list(changes)}  # fmt: skip


def adjust(stand_in: ShopifyStandIn, key: str, *changes: dict[str, Any]) -> dict[str, Any]:
    variables = {"input": adjust_input(*changes), "key": key}
    data = client.graphql(stand_in.url, TOKEN, ADJUST, variables)
    payload: dict[str, Any] = data["inventoryAdjustQuantities"]
    return payload


def test_locations_lists_the_active_ones_and_location_reads_one(
    stand_in: ShopifyStandIn, shelf: tuple[str, str]
) -> None:
    item, shop_floor = shelf
    depot = stand_in.add_location(SHOP, "Depósito", fulfills_online_orders=False)
    closed = stand_in.add_location(SHOP, "Antiga", active=False)
    listing = """
    query l($inactive: Boolean) {
      locations(first: 10, includeInactive: $inactive) {
        nodes { id legacyResourceId name isActive fulfillsOnlineOrders shipsInventory
                hasActiveInventory isFulfillmentService }
      }
    }
    """
    nodes = client.graphql(stand_in.url, TOKEN, listing)["locations"]["nodes"]
    assert [n["id"] for n in nodes] == [shop_floor, depot], "only active ones by default"
    assert nodes[0] == {
        "id": shop_floor,
        "legacyResourceId": shop_floor.rsplit("/", 1)[1],
        "name": "Loja",
        "isActive": True,
        "fulfillsOnlineOrders": True,
        "shipsInventory": True,
        "hasActiveInventory": True,
        "isFulfillmentService": False,
    }
    assert nodes[1]["fulfillsOnlineOrders"] is False and nodes[1]["hasActiveInventory"] is False
    every = client.graphql(stand_in.url, TOKEN, listing, {"inactive": True})["locations"]["nodes"]
    assert [n["id"] for n in every] == [shop_floor, depot, closed]
    one = """
    query o($id: ID!, $item: ID!) {
      location(id: $id) { name inventoryLevel(inventoryItemId: $item) { quantities(names: ["available"]) { quantity } } }
    }
    """  # noqa: E501
    data = client.graphql(stand_in.url, TOKEN, one, {"id": shop_floor, "item": item})
    assert data["location"]["inventoryLevel"]["quantities"] == [{"quantity": 5}]
    data = client.graphql(stand_in.url, TOKEN, one, {"id": depot, "item": item})
    assert data["location"] == {"name": "Depósito", "inventoryLevel": None}
    assert client.graphql(stand_in.url, TOKEN, one, {"id": depot + "9", "item": item}) == {
        "location": None
    }


def test_a_variant_and_its_inventory_item_show_their_levels(
    stand_in: ShopifyStandIn, shelf: tuple[str, str]
) -> None:
    item, location = shelf
    data = client.graphql(stand_in.url, TOKEN, LEVEL, {"item": item, "location": location})
    found = data["inventoryItem"]
    assert found["sku"] == "TEE-M" and found["tracked"] is True
    level = found["inventoryLevel"]
    number = item.rsplit("/", 1)[1]
    assert level["id"].startswith("gid://shopify/InventoryLevel/")
    assert level["id"].endswith(f"?inventory_item_id={number}")
    assert level["item"] == {"id": item} and level["location"]["id"] == location
    quantities = {q["name"]: q["quantity"] for q in level["quantities"]}
    assert quantities == {"available": 5, "on_hand": 5, "committed": 0, "reserved": 0}
    variants = """
    { productVariants(first: 5) { nodes { sku inventoryItem { id tracked
        inventoryLevels(first: 5) { nodes { location { id } } } } } } }
    """
    untracked = stand_in.add_variant(SHOP, "GIFT", tracked=False)
    nodes = client.graphql(stand_in.url, TOKEN, variants)["productVariants"]["nodes"]
    assert nodes[0]["inventoryItem"]["inventoryLevels"]["nodes"] == [{"location": {"id": location}}]
    assert nodes[1]["inventoryItem"] == {
        "id": stand_in.inventory_item_of(SHOP, untracked),
        "tracked": False,
        "inventoryLevels": {"nodes": []},
    }
    stand_in.unstock(SHOP, item, location)
    data = client.graphql(stand_in.url, TOKEN, LEVEL, {"item": item, "location": location})
    assert data["inventoryItem"]["inventoryLevel"] is None
    assert stand_in.available(SHOP, item, location) is None


def test_aliased_items_are_read_in_one_query_at_their_cost(
    stand_in: ShopifyStandIn, shelf: tuple[str, str]
) -> None:
    item, location = shelf
    other = stand_in.inventory_item_of(SHOP, stand_in.add_variant(SHOP, "TEE-G"))
    query = f"""
    query many($location: ID!) {{
      a: inventoryItem(id: "{item}") {{ id inventoryLevel(locationId: $location) {{
        quantities(names: ["available"]) {{ quantity updatedAt }} }} }}
      b: inventoryItem(id: "{other}") {{ id inventoryLevel(locationId: $location) {{
        quantities(names: ["available"]) {{ quantity }} }} }}
      c: inventoryItem(id: "gid://shopify/InventoryItem/1") {{ id }}
    }}
    """
    answer = client.graphql_answer(stand_in.url, TOKEN, query, {"location": location})
    assert answer.data["a"]["inventoryLevel"]["quantities"][0]["quantity"] == 5
    assert answer.data["b"] == {"id": other, "inventoryLevel": None}
    assert answer.data["c"] is None
    assert answer.requested_cost == 3 + 3 + 1, "each alias is priced: item, level, quantities"


def test_adjust_changes_available_and_records_it(
    stand_in: ShopifyStandIn, shelf: tuple[str, str]
) -> None:
    item, location = shelf
    payload = adjust(stand_in, "k-1", change(item, location, -2, changeFromQuantity=5))
    assert payload["userErrors"] == []
    group = payload["inventoryAdjustmentGroup"]
    assert group["reason"] == "correction" and group["referenceDocumentUri"] == REF
    assert group["id"].startswith("gid://shopify/InventoryAdjustmentGroup/")
    assert group["createdAt"].endswith("Z")
    assert group["changes"] == [
        {"name": "available", "delta": -2, "quantityAfterChange": 3,
         "item": {"id": item}, "location": {"id": location}}
    ]  # fmt: skip
    assert stand_in.available(SHOP, item, location) == 3
    [record] = stand_in.inventory_changes(SHOP)
    assert (record.kind, record.delta, record.quantity_after) == ("adjust", -2, 3)
    assert record.key == "k-1"
    assert (record.inventory_item_id, record.location_id) == (item, location)
    assert record.reason == "correction" and record.reference_document_uri == REF
    assert stand_in.calls_of("graphql")[-1].operation == "inventoryAdjustQuantities"


def test_adjust_without_the_idempotent_directive_is_refused_whole(
    stand_in: ShopifyStandIn, shelf: tuple[str, str]
) -> None:
    item, location = shelf
    bare = ADJUST.replace(" @idempotent(key: $key)", "").replace(", $key: String!", "")
    given = adjust_input(change(item, location, 1, changeFromQuantity=None))
    body = post(stand_in, bare, {"input": given})
    assert "data" not in body
    [error] = body["errors"]
    assert error["message"] == "The @idempotent directive is required for this mutation."
    assert error["extensions"]["code"] == "BAD_REQUEST" and error["locations"]
    blank = post(stand_in, ADJUST, {"input": given, "key": "  "})
    assert "data" not in blank and "empty string" in blank["errors"][0]["message"]
    assert stand_in.available(SHOP, item, location) == 5 and stand_in.inventory_changes(SHOP) == []
    with pytest.raises(client.GraphQLError):
        client.graphql(stand_in.url, TOKEN, bare, {"input": given})


def test_change_from_quantity_must_be_given_even_as_null(
    stand_in: ShopifyStandIn, shelf: tuple[str, str]
) -> None:
    item, location = shelf
    refused = adjust(stand_in, "k-1", change(item, location, 1, changeFromQuantity=None),
                     change(item, location, 1))  # fmt: skip
    assert refused["inventoryAdjustmentGroup"] is None
    [error] = refused["userErrors"]
    assert error["field"] == ["input", "changes", "1", "changeFromQuantity"]
    assert error["code"] is None and error["message"].startswith("changeFromQuantity is required")
    assert stand_in.available(SHOP, item, location) == 5, "atomic: the first entry not applied"
    explicit_null = adjust(stand_in, "k-2", change(item, location, 1, changeFromQuantity=None))
    assert explicit_null["userErrors"] == [] and stand_in.available(SHOP, item, location) == 6

    literal = """
    mutation { inventoryAdjustQuantities(input: {name: "available", reason: "correction",
        changes: [{inventoryItemId: "%s", locationId: "%s", delta: 1%s}]})
      @idempotent(key: "%s") { userErrors { field code } } }
    """
    missing = client.graphql(stand_in.url, TOKEN, literal % (item, location, "", "lit-1"))
    assert missing["inventoryAdjustQuantities"]["userErrors"] == [
        {"field": ["input", "changes", "0", "changeFromQuantity"], "code": None}
    ]
    given = ", changeFromQuantity: null"
    null = client.graphql(stand_in.url, TOKEN, literal % (item, location, given, "lit-2"))
    assert null["inventoryAdjustQuantities"]["userErrors"] == []
    assert stand_in.available(SHOP, item, location) == 7

    quantity = {"inventoryItemId": item, "locationId": location, "quantity": 2}
    set_missing = {"name": "available", "reason": "correction", "quantities": [quantity]}
    data = client.graphql(stand_in.url, TOKEN, SET_QUANTITIES, {"input": set_missing})
    [error] = data["inventorySetQuantities"]["userErrors"]
    assert error["field"] == ["input", "quantities", "0", "changeFromQuantity"]
    assert error["code"] == "COMPARE_QUANTITY_REQUIRED"
    assert stand_in.available(SHOP, item, location) == 7


def test_a_stale_change_from_quantity_is_refused_and_nothing_applied(
    stand_in: ShopifyStandIn, shelf: tuple[str, str]
) -> None:
    item, location = shelf
    other = stand_in.inventory_item_of(SHOP, stand_in.add_variant(SHOP, "TEE-G"))
    stand_in.stock(SHOP, other, location, 10)
    payload = adjust(stand_in, "k-1", change(other, location, -1, changeFromQuantity=10),
                     change(item, location, -1, changeFromQuantity=4))  # fmt: skip
    assert payload["inventoryAdjustmentGroup"] is None
    [error] = payload["userErrors"]
    assert error["field"] == ["input", "changes", "1", "changeFromQuantity"]
    assert error["code"] == "CHANGE_FROM_QUANTITY_STALE"
    assert stand_in.available(SHOP, other, location) == 10, "atomic over both entries"
    assert stand_in.available(SHOP, item, location) == 5
    assert stand_in.inventory_changes(SHOP) == []


@pytest.mark.parametrize(
    ("entry", "field", "code"),
    [
        ({"inventoryItemId": "gid://shopify/InventoryItem/999"}, "inventoryItemId",
         "INVALID_INVENTORY_ITEM"),
        ({"locationId": "gid://shopify/Location/999"}, "locationId", "INVALID_LOCATION"),
        ({"ledgerDocumentUri": "ledger://x"}, "ledgerDocumentUri", "INVALID_AVAILABLE_DOCUMENT"),
    ],
)  # fmt: skip
def test_bad_inventory_entries_get_user_errors_and_nothing_is_applied(
    stand_in: ShopifyStandIn, shelf: tuple[str, str], entry: dict[str, Any], field: str, code: str
) -> None:
    item, location = shelf
    good = change(item, location, 1, changeFromQuantity=5)
    payload = adjust(stand_in, "k-1", good, {**good, **entry})
    [error] = payload["userErrors"]
    assert error["field"] == ["input", "changes", "1", field] and error["code"] == code
    assert stand_in.available(SHOP, item, location) == 5


def test_an_item_not_stocked_there_a_bad_reason_or_name_is_refused(
    stand_in: ShopifyStandIn, shelf: tuple[str, str]
) -> None:
    item, location = shelf
    depot = stand_in.add_location(SHOP, "Depósito")
    payload = adjust(stand_in, "k-1", change(item, depot, 1, changeFromQuantity=None))
    assert payload["userErrors"][0]["code"] == "ITEM_NOT_STOCKED_AT_LOCATION"
    entry = change(item, location, 1, changeFromQuantity=None)
    bad_reason = {**adjust_input(entry), "reason": "because"}
    data = client.graphql(stand_in.url, TOKEN, ADJUST, {"input": bad_reason, "key": "k-2"})
    assert data["inventoryAdjustQuantities"]["userErrors"] == [
        {"field": ["input", "reason"], "message": "The specified reason is invalid.",
         "code": "INVALID_REASON"}
    ]  # fmt: skip
    bad_name = {**adjust_input(entry), "name": "on_hand"}
    data = client.graphql(stand_in.url, TOKEN, ADJUST, {"input": bad_name, "key": "k-3"})
    assert data["inventoryAdjustQuantities"]["userErrors"][0]["code"] == "INVALID_QUANTITY_NAME"
    quantity = {"inventoryItemId": item, "locationId": location, "quantity": 1,
                "changeFromQuantity": None}  # fmt: skip
    set_name = {"name": "committed", "reason": "correction", "quantities": [quantity]}
    data = client.graphql(stand_in.url, TOKEN, SET_QUANTITIES, {"input": set_name})
    assert data["inventorySetQuantities"]["userErrors"][0]["code"] == "INVALID_NAME"
    assert stand_in.available(SHOP, item, location) == 5


def test_set_quantities_sets_absolutely_with_its_delta(
    stand_in: ShopifyStandIn, shelf: tuple[str, str]
) -> None:
    item, location = shelf
    quantity = {"inventoryItemId": item, "locationId": location, "quantity": 12,
                "changeFromQuantity": 5}  # fmt: skip
    given = {"name": "available", "reason": "cycle_count_available", "quantities": [quantity]}
    data = client.graphql(stand_in.url, TOKEN, SET_QUANTITIES, {"input": given})
    payload = data["inventorySetQuantities"]
    assert payload["userErrors"] == []
    assert payload["inventoryAdjustmentGroup"]["changes"] == [
        {"name": "available", "delta": 7, "quantityAfterChange": 12},
        {"name": "on_hand", "delta": 7, "quantityAfterChange": 12},
    ]
    [record] = stand_in.inventory_changes(SHOP)
    assert (record.kind, record.delta, record.quantity_after) == ("set", 7, 12)
    assert record.key == "set-key-1" and record.reason == "cycle_count_available"


def test_an_idempotent_replay_is_answered_again_and_applied_once(
    stand_in: ShopifyStandIn, shelf: tuple[str, str]
) -> None:
    item, location = shelf
    entry = change(item, location, -1, changeFromQuantity=5)
    first = adjust(stand_in, "k-1", entry)
    again = adjust(stand_in, "k-1", entry)
    assert again == first and first["userErrors"] == []
    assert stand_in.available(SHOP, item, location) == 4
    assert len(stand_in.inventory_changes(SHOP)) == 1

    other = adjust(stand_in, "k-1", change(item, location, -3, changeFromQuantity=4))
    assert other["inventoryAdjustmentGroup"] is None
    assert other["userErrors"][0]["code"] == "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    assert stand_in.available(SHOP, item, location) == 4, "another input under the key: refused"

    stale = change(item, location, -1, changeFromQuantity=5)  # available is 4 now
    refused = adjust(stand_in, "k-2", stale)
    assert refused["userErrors"][0]["code"] == "CHANGE_FROM_QUANTITY_STALE"
    stand_in.stock(SHOP, item, location, 5)
    assert adjust(stand_in, "k-2", stale) == refused, "a failed call is remembered as it ended"
    assert stand_in.available(SHOP, item, location) == 5


def test_a_lost_answer_is_applied_once_and_its_replay_answers_it(
    stand_in: ShopifyStandIn, shelf: tuple[str, str]
) -> None:
    item, location = shelf
    stand_in.lose_answers(root="inventoryAdjustQuantities")
    read = {"item": item, "location": location}
    assert client.graphql(stand_in.url, TOKEN, LEVEL, read), "another root: answered"
    entry = change(item, location, -2, changeFromQuantity=5)
    with pytest.raises(client.ShopifyUnavailable):
        adjust(stand_in, "lost-1", entry)
    lost = stand_in.calls_of("graphql")[-1]
    assert lost.lost and lost.operation == "inventoryAdjustQuantities"
    assert stand_in.available(SHOP, item, location) == 3, "applied although unanswered"
    replay = adjust(stand_in, "lost-1", entry)
    assert replay["userErrors"] == []
    assert replay["inventoryAdjustmentGroup"]["changes"][0]["quantityAfterChange"] == 3
    assert stand_in.available(SHOP, item, location) == 3
    assert [r.key for r in stand_in.inventory_changes(SHOP)] == ["lost-1"]
    assert not stand_in.calls_of("graphql")[-1].lost

    stand_in.lose_answers(2)
    for _ in range(2):
        with pytest.raises(client.ShopifyUnavailable):
            client.graphql(stand_in.url, TOKEN, LEVEL, read)
    assert client.graphql(stand_in.url, TOKEN, LEVEL, read)


def test_a_sale_changes_available_and_its_updated_at() -> None:
    clock = FakeClock()
    with standin(clock) as stand_in:
        stand_in.add_access_token(SHOP, TOKEN)
        location = stand_in.add_location(SHOP)
        item = stand_in.inventory_item_of(SHOP, stand_in.add_variant(SHOP, "TEE-M"))
        stand_in.stock(SHOP, item, location, 5)
        read = {"item": item, "location": location}

        def quantities() -> dict[str, tuple[int, str | None]]:
            data = client.graphql(stand_in.url, TOKEN, LEVEL, read)
            found = data["inventoryItem"]["inventoryLevel"]["quantities"]
            return {q["name"]: (q["quantity"], q["updatedAt"]) for q in found}

        assert quantities()["available"] == (5, "2026-11-27T12:00:00Z")
        clock.advance(90)
        stand_in.sell(SHOP, item, location, 2)
        after = quantities()
        assert after["available"] == (3, "2026-11-27T12:01:30Z")
        assert after["committed"] == (2, "2026-11-27T12:01:30Z")
        assert after["on_hand"][0] == 5 and after["reserved"] == (0, None)
        [record] = stand_in.inventory_changes(SHOP)
        assert (record.kind, record.delta, record.quantity_after) == ("sale", -2, 3)
        assert record.key is None
        clock.advance(30)
        payload = adjust(stand_in, "k-1", change(item, location, 1, changeFromQuantity=3))
        assert payload["inventoryAdjustmentGroup"]["createdAt"] == "2026-11-27T12:02:00Z"
        assert quantities()["available"] == (4, "2026-11-27T12:02:00Z")
