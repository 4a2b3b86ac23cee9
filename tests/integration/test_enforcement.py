"""``flask shopify enforce`` and ``enforce status``, and the install that sets up the checkout
rule: the metafield definition, the validation of the deployed function (blockOnFailure off
unless asked), idempotent reruns, and what status shows of the function, the validation and the
publisher."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shopify_app.config import DEFAULT_SHOPIFY_SCOPES
from shopify_app.runtime import EXTENSION_KEY
from shopify_app.shopify.publisher import StockPublisher
from tests.support.app import ApiClient
from tests.support.clock import FakeClock
from tests.support.shopify_install import API_SECRET, SHOP, install, make_app, standin
from tests.support.shopify_sender import deliver
from tests.support.shopify_standin import ShopifyStandIn

TOKEN = "shpat_enforce_test"


@pytest.fixture
def stand_in(clock: FakeClock) -> Iterator[ShopifyStandIn]:
    with standin(clock) as server:
        yield server


@pytest.fixture
def app(database_url: str, clock: FakeClock, stand_in: ShopifyStandIn) -> Iterator[Flask]:
    stand_in.add_access_token(SHOP, TOKEN)
    app = make_app(database_url, clock, stand_in.url, SHOPIFY_ACCESS_TOKEN=TOKEN)
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


def enforce(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["shopify", "enforce", *args])
    return result.exit_code, result.output


def test_the_scopes_asked_for_cover_the_checkout_rule() -> None:
    scopes = set(DEFAULT_SHOPIFY_SCOPES.split(","))
    assert {"write_products", "write_validations", "read_validations"} <= scopes
    assert "write_inventory" in scopes, "Shopify's inventory following the ledger (part 1)"


def test_enforce_waits_for_the_function_then_creates_the_validation(
    app: Flask, stand_in: ShopifyStandIn
) -> None:
    code, output = enforce(app)
    assert code == 2 and "NOT DEPLOYED" in output and "shopify app deploy" in output
    [definition] = stand_in.definitions(SHOP)
    assert (definition["key"], definition["ownerType"]) == ("stock", "PRODUCTVARIANT")
    assert definition["namespace"].endswith("--bazico") and definition["type"]["name"] == "json"
    assert stand_in.validations(SHOP) == []

    stand_in.deploy_function(SHOP)
    code, output = enforce(app)
    assert code == 0, output
    assert "definition   exists" in output and "validation   created" in output
    [validation] = stand_in.validations(SHOP)
    assert validation["enabled"] is True, "created switched on (the schema's default is off)"
    assert validation["blockOnFailure"] is False, "a failed run must not stop every checkout"
    assert validation["shopifyFunction"]["handle"] == "bazico-checkout-validation"

    code, output = enforce(app)
    assert code == 0 and "validation   exists" in output
    assert len(stand_in.validations(SHOP)) == 1 and len(stand_in.definitions(SHOP)) == 1


def test_enforce_switches_a_disabled_validation_back_on(
    app: Flask, stand_in: ShopifyStandIn
) -> None:
    stand_in.deploy_function(SHOP)
    assert enforce(app, "--block-on-failure")[0] == 0
    state = stand_in.admin.shop(SHOP).validations[0]
    assert state["blockOnFailure"] is True
    state["enabled"] = False  # the merchant switched the checkout rule off
    code, output = enforce(app)
    assert code == 0 and "validation   enabled" in output
    assert state["enabled"] is True and state["blockOnFailure"] is True, "its setting is kept"
    assert enforce(app, "--no-block-on-failure")[0] == 0
    assert state["blockOnFailure"] is False
    updates = [c for c in stand_in.calls_of("graphql") if c.operation == "validationUpdate"]
    assert all(c.variables["validation"]["enable"] is True for c in updates)  # type: ignore[index]


def test_enforce_marks_what_the_publisher_has_not_written(
    app: Flask, clock: FakeClock, stand_in: ShopifyStandIn
) -> None:
    stand_in.deploy_function(SHOP)
    api = ApiClient(app.test_client())
    for sku in ("TEE", "CAP"):
        api.put(f"/stock/{sku}", json={"on_hand": 3})
    cart = {
        "id": "c1",
        "token": "c1",
        "updated_at": "2026-11-27T12:00:00Z",
        "line_items": [
            {"id": 1, "variant_id": 4401, "sku": "TEE", "quantity": 1},
            {"id": 2, "variant_id": 4402, "sku": "CAP", "quantity": 1},
        ],
    }
    assert (
        deliver(app.test_client(), cart, "carts/update", shop=SHOP, secret=API_SECRET).status_code
        == 200
    )
    publisher = StockPublisher(app.extensions[EXTENSION_KEY])
    assert publisher.run_round().written == 2
    code, output = enforce(app)
    assert "0 SKU(s) marked" in output, "both already published"
    clock.advance(2)
    code, output = enforce(app, "--republish")
    assert code == 0 and "2 SKU(s) marked" in output
    report = publisher.run_round()
    assert report.claimed == 2 and report.unchanged == 2, "nothing changed: nothing written"


def test_status_shows_function_validation_and_publisher(
    app: Flask, clock: FakeClock, stand_in: ShopifyStandIn
) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["shopify", "enforce", "status"])
    assert result.exit_code == 1
    assert "NOT DEPLOYED" in result.output and "validation   missing" in result.output
    assert "last publish never" in result.output

    stand_in.deploy_function(SHOP)
    enforce(app)
    api = ApiClient(app.test_client())
    api.put("/stock/TEE", json={"on_hand": 3})
    api.put("/stock/NEW", json={"on_hand": 1})
    cart = {
        "id": "c1",
        "token": "c1",
        "updated_at": "2026-11-27T12:00:00Z",
        "line_items": [{"id": 1, "variant_id": 4401, "sku": "TEE", "quantity": 1}],
    }
    deliver(app.test_client(), cart, "carts/update", shop=SHOP, secret=API_SECRET)
    clock.advance(0.5)
    StockPublisher(app.extensions[EXTENSION_KEY]).run_round()
    result = runner.invoke(args=["shopify", "enforce", "status"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "function     deployed: bazico-checkout-validation" in out
    assert "validation   active: Bázico: reservas de estoque" in out and "blockOnFailure off" in out
    assert "publisher    on; 1 variant(s) published" in out
    assert "(lag 0.50 s)" in out and "p50 0.50 s, p99 0.50 s (1 writes" in out
    assert "0 SKU(s) due" in out and "1 waiting for a variant" in out and "1 scheduled" in out


def test_status_answers_while_shopify_does_not(app: Flask, stand_in: ShopifyStandIn) -> None:
    stand_in.outage()
    result = app.test_cli_runner().invoke(args=["shopify", "enforce", "status"])
    assert result.exit_code == 1
    assert "shopify      unreachable" in result.output and "backlog" in result.output


def test_the_install_sets_up_the_checkout_rule(
    database_url: str, clock: FakeClock, stand_in: ShopifyStandIn
) -> None:
    stand_in.deploy_function(SHOP)
    app = make_app(database_url, clock, stand_in.url)
    client: FlaskClient = app.test_client()
    try:
        response = install(client, stand_in, clock)
        assert response.status_code == 200, response.get_data(as_text=True)
        checkout = response.get_json()["checkout"]
        assert checkout["definition"] == "created" and checkout["validation_action"] == "created"
        assert checkout["validation"]["enabled"] is True
        assert checkout["validation"]["block_on_failure"] is False
        again = install(client, stand_in, clock).get_json()["checkout"]
        assert again["definition"] == "exists" and again["validation_action"] == "exists"
        assert len(stand_in.validations(SHOP)) == 1
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()


def test_an_install_without_the_function_still_installs(
    database_url: str, clock: FakeClock, stand_in: ShopifyStandIn
) -> None:
    app = make_app(database_url, clock, stand_in.url)
    try:
        response = install(app.test_client(), stand_in, clock)
        assert response.status_code == 200
        assert response.get_json()["checkout"]["validation_action"] == "none"
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()
