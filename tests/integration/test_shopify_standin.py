"""The Shopify stand-in answers as Shopify does: documents checked against the 2026-07 schema,
the query cost and its throttling, and the metafield, definition, function and validation
operations the service sends, with their limits and userErrors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from shopify_app.shopify import client
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
