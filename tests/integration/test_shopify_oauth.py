"""OAuth install against the Shopify stand-in: redirect, refusals, encrypted tokens, webhooks.

Long because the install's refusals and the webhook registration that follows it (protected
data refused, subscriptions recreated by the worker) all start from one installed shop, made by
this module's fixtures.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine, func, select

from shopify_app.config import DEFAULT_SHOPIFY_SCOPES
from shopify_app.crypto import TokenCipher
from shopify_app.runtime import EXTENSION_KEY
from shopify_app.shopify import client as shopify_client
from shopify_app.shopify import registration
from shopify_app.shopify.registration import register_webhooks
from shopify_app.shopify.shops import TokenStore, shops
from tests.support.clock import FakeClock
from tests.support.shopify_install import (
    API_KEY,
    APP_URL,
    PREVIOUS_SECRET,
    SCOPES,
    SECRET_KEY,
    SHOP,
    TOPICS,
    WEBHOOK_URI,
    callback_params,
    install,
    make_app,
    query_of,
    sign,
    standin,
    start_install,
)
from tests.support.shopify_standin import ShopifyStandIn

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stand_in(clock: FakeClock) -> Iterator[ShopifyStandIn]:
    with standin(clock) as server:
        yield server


@pytest.fixture
def shop_app(database_url: str, clock: FakeClock, stand_in: ShopifyStandIn) -> Iterator[Flask]:
    app = make_app(database_url, clock, stand_in.url)
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


@pytest.fixture
def shop_client(shop_app: Flask) -> FlaskClient:
    return shop_app.test_client()


def shop_rows(app: Flask) -> list[dict[str, object]]:
    engine: Engine = app.extensions[EXTENSION_KEY].engine
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(shops)).mappings()]


# --- the query HMAC ------------------------------------------------------------------------


def test_query_hmac_matches_shopify_documented_vector() -> None:
    message = (
        "code=0907a61c0c8d55e99db179b68161bc00&shop=some-shop.myshopify.com"
        "&state=0.6784241404160823&timestamp=1337178173"
    )
    params = dict(pair.split("=", 1) for pair in message.split("&"))
    expected = "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf"
    assert shopify_client.query_hmac(params, "hush") == expected
    assert shopify_client.verify_query_hmac({**params, "hmac": expected}, ["hush"])
    assert shopify_client.verify_query_hmac({**params, "hmac": expected}, ["new", "hush"])
    assert not shopify_client.verify_query_hmac({**params, "hmac": expected}, ["other"])
    tampered = {**params, "shop": "evil.myshopify.com", "hmac": expected}
    assert not shopify_client.verify_query_hmac(tampered, ["hush"])
    assert not shopify_client.verify_query_hmac(params, ["hush"]), "no hmac at all"
    # A key given twice is ambiguous: the service refuses it rather than pick one.
    assert shopify_client.query_params([("shop", "a"), ("shop", "b")]) is None
    assert shopify_client.query_params([("ids[]", "1"), ("ids[]", "2")]) == {"ids[]": ["1", "2"]}


# --- install -------------------------------------------------------------------------------


def test_install_redirects_to_consent_screen_with_state_cookie(
    shop_client: FlaskClient, stand_in: ShopifyStandIn
) -> None:
    response = shop_client.get("/auth/install", query_string={"shop": SHOP})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(f"{stand_in.url}/admin/oauth/authorize?")
    query = query_of(location)
    assert query["client_id"] == API_KEY
    assert query["scope"] == SCOPES
    assert query["redirect_uri"] == f"{APP_URL}/auth/callback"
    assert len(query["state"]) >= 32
    assert "grant_options[]" not in query, "an offline token: no per-user grant option"

    cookie = response.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert cookie.startswith("shopify_oauth_state=")
    assert {"httponly", "secure", "max-age", "path"} <= attributes
    assert "SameSite=Lax" in cookie and "Max-Age=600" in cookie and "Path=/auth" in cookie
    assert start_install(shop_client) != query["state"], "a fresh nonce per install"
    assert stand_in.calls == [], "the redirect alone calls nothing"


@pytest.mark.parametrize(
    "shop",
    [
        "evil.com",
        "shop.myshopify.com.evil.com",
        "shop.myshopify.com/x",
        "shop.myshopify.com\n",
        "https://shop.myshopify.com",
        "-shop.myshopify.com",
        "shop.myshopify.co",
        "",
    ],
)
def test_install_refuses_shops_that_are_not_myshopify_domains(
    shop_client: FlaskClient, shop: str
) -> None:
    response = shop_client.get("/auth/install", query_string={"shop": shop})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_shop"
    assert "Set-Cookie" not in response.headers


def test_install_checks_shopifys_hmac_when_present(
    shop_client: FlaskClient, clock: FakeClock
) -> None:
    params = {"shop": SHOP, "timestamp": str(int(clock().timestamp()))}
    assert shop_client.get("/auth/install", query_string=sign(params)).status_code == 302
    forged = {**sign(params), "timestamp": str(int(clock().timestamp()) + 1)}
    response = shop_client.get("/auth/install", query_string=forged)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_hmac"


def test_install_refuses_another_shop_than_the_configured_one(shop_client: FlaskClient) -> None:
    response = shop_client.get("/auth/install", query_string={"shop": "other.myshopify.com"})
    assert response.status_code == 403
    assert response.get_json()["error"] == "shop_not_allowed"


# --- callback refusals: each stores nothing and exchanges no code ---------------------------


def _refused(
    app: Flask, stand_in: ShopifyStandIn, response: object, status: int, error: str
) -> None:
    assert response.status_code == status, response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert response.get_json()["error"] == error  # type: ignore[attr-defined]
    assert shop_rows(app) == []
    assert stand_in.calls_of("code") == [], "a refused callback must not spend the code"


def test_callback_refuses_a_bad_hmac(
    shop_app: Flask, shop_client: FlaskClient, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    params = callback_params(stand_in, clock, start_install(shop_client))
    signed = sign(params)
    for query in (
        {**signed, "code": "0" * 32},  # a parameter changed after signing
        {**signed, "hmac": signed["hmac"][:-1] + ("0" if signed["hmac"][-1] != "0" else "1")},
        sign(params, secret="not-the-app-secret"),
        params,  # no hmac at all
    ):
        response = shop_client.get("/auth/callback", query_string=query)
        _refused(shop_app, stand_in, response, 401, "invalid_hmac")


def test_callback_refuses_a_stale_signed_request(
    shop_app: Flask, shop_client: FlaskClient, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    params = callback_params(stand_in, clock, start_install(shop_client))
    params["timestamp"] = str(int(clock().timestamp()) - 2 * 24 * 3600)
    response = shop_client.get("/auth/callback", query_string=sign(params))
    _refused(shop_app, stand_in, response, 401, "stale_request")


def test_callback_refuses_wrong_or_missing_state(
    shop_app: Flask, shop_client: FlaskClient, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    state = start_install(shop_client)
    wrong = callback_params(stand_in, clock, state[:-2] + "xx")
    response = shop_client.get("/auth/callback", query_string=sign(wrong))
    _refused(shop_app, stand_in, response, 403, "invalid_state")

    missing = callback_params(stand_in, clock, state)
    del missing["state"]
    response = shop_client.get("/auth/callback", query_string=sign(missing))
    _refused(shop_app, stand_in, response, 403, "invalid_state")

    # The right state, but from a browser that never started the install (no cookie): CSRF.
    fresh_browser = shop_app.test_client()
    response = fresh_browser.get(
        "/auth/callback", query_string=sign(callback_params(stand_in, clock, state))
    )
    _refused(shop_app, stand_in, response, 403, "invalid_state")

    # A cookie whose signature does not check out is no cookie at all.
    shop_client.set_cookie("shopify_oauth_state", "eyJub25jZSI6IngifQ.forged.sig", path="/auth")
    response = shop_client.get(
        "/auth/callback", query_string=sign(callback_params(stand_in, clock, "x"))
    )
    _refused(shop_app, stand_in, response, 403, "invalid_state")


@pytest.mark.parametrize(
    "shop", ["evil.com", "shop.myshopify.com.evil.com", "shop.myshopify.com/x", "EVIL.COM"]
)
def test_callback_refuses_bad_shop_domains_even_when_signed(
    shop_app: Flask,
    shop_client: FlaskClient,
    stand_in: ShopifyStandIn,
    clock: FakeClock,
    shop: str,
) -> None:
    state = start_install(shop_client)
    params = callback_params(stand_in, clock, state, shop=shop)
    response = shop_client.get("/auth/callback", query_string=sign(params))
    _refused(shop_app, stand_in, response, 400, "invalid_shop")


def test_callback_refuses_scopes_the_merchant_removed(
    shop_app: Flask, shop_client: FlaskClient, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    params = callback_params(stand_in, clock, start_install(shop_client), scope="read_orders")
    response = shop_client.get("/auth/callback", query_string=sign(params))
    assert response.status_code == 403
    assert response.get_json()["error"] == "scopes_not_granted"
    assert response.get_json()["missing"] == ["read_products", "write_app_proxy"]
    assert shop_rows(shop_app) == [], "a token with too few scopes is not kept"
    assert stand_in.subscriptions(SHOP) == []


# --- the good callback ----------------------------------------------------------------------


def test_good_callback_stores_tokens_encrypted_and_registers_webhooks(
    shop_app: Flask,
    shop_client: FlaskClient,
    stand_in: ShopifyStandIn,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = install(shop_client, stand_in, clock)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "installed" and body["shop"] == SHOP
    assert set(body["webhooks"]["created"]) == TOPICS
    assert "shopify_oauth_state=;" in response.headers["Set-Cookie"], "the nonce is spent"

    [exchange] = stand_in.calls_of("code")
    assert exchange.status == 200
    [grant] = stand_in.issued
    assert grant["expires_in"] == 3600 and grant["refresh_token"], "an expiring token was asked"

    [row] = shop_rows(shop_app)
    raw = " ".join(str(value) for value in row.values())
    assert grant["access_token"] not in raw and grant["refresh_token"] not in raw
    assert grant["access_token"][6:] not in raw, "not even without its prefix"
    cipher = TokenCipher(SECRET_KEY)
    assert cipher.decrypt(str(row["access_token_encrypted"])) == grant["access_token"]
    assert cipher.decrypt(str(row["refresh_token_encrypted"])) == grant["refresh_token"]
    assert row["scopes"] == SCOPES
    assert row["access_expires_at"] == clock() + timedelta(seconds=3600)
    assert row["installed_at"] == clock() and row["uninstalled_at"] is None
    store = TokenStore.for_runtime(shop_app.extensions[EXTENSION_KEY])
    assert store.access_token(SHOP) == grant["access_token"]

    subscriptions = stand_in.subscriptions(SHOP)
    assert {s["topic"] for s in subscriptions} == TOPICS and len(subscriptions) == len(TOPICS)
    assert {s["uri"] for s in subscriptions} == {WEBHOOK_URI}
    graphql_calls = stand_in.calls_of("graphql")
    assert {c.version for c in graphql_calls} == {"2026-07"}, "one pinned API version"
    assert all(c.shop == SHOP and c.status == 200 for c in graphql_calls)

    # Installing again (the merchant reopens the app) registers nothing new.
    again = install(shop_client, stand_in, clock)
    assert again.status_code == 200
    assert again.get_json()["webhooks"]["created"] == []
    assert set(again.get_json()["webhooks"]["existing"]) == TOPICS
    assert len(stand_in.subscriptions(SHOP)) == len(TOPICS)
    engine: Engine = shop_app.extensions[EXTENSION_KEY].engine
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(shops)).scalar() == 1
    # Neither token, nor the OAuth code, reached a log line or an answer.
    logged = capsys.readouterr().out + capsys.readouterr().err + caplog.text
    answers = response.get_data(as_text=True) + again.get_data(as_text=True)
    for secret in (grant["access_token"], grant["refresh_token"], grant["access_token"][6:]):
        assert secret not in logged and secret not in answers


def test_callback_signed_with_the_previous_secret_is_accepted_during_rotation(
    shop_app: Flask, shop_client: FlaskClient, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    params = callback_params(stand_in, clock, start_install(shop_client))
    response = shop_client.get("/auth/callback", query_string=sign(params, PREVIOUS_SECRET))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(shop_rows(shop_app)) == 1


def test_failed_webhook_registration_keeps_the_install_and_says_so(
    database_url: str, clock: FakeClock, stand_in: ShopifyStandIn
) -> None:
    # Shopify accepts only https addresses: an http APP_URL makes every create fail.
    app = make_app(database_url, clock, stand_in.url, APP_URL="http://stock.bazico.test")
    try:
        response = install(app.test_client(), stand_in, clock)
        assert response.status_code == 502
        assert response.get_json()["error"] == "webhook_registration_failed"
        assert len(shop_rows(app)) == 1, "the token is kept; registration can be rerun"
        assert stand_in.subscriptions(SHOP) == []
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()


# --- registration and its command -----------------------------------------------------------


def test_registration_pages_through_existing_subscriptions(
    shop_app: Flask, shop_client: FlaskClient, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    assert install(shop_client, stand_in, clock).status_code == 200
    settings = shop_app.extensions[EXTENSION_KEY].settings
    token = stand_in.issued[0]["access_token"]
    result = register_webhooks(settings, SHOP, token, page_size=3)  # one page per 3 topics
    assert result.created == [] and set(result.existing) == TOPICS
    lists = [c for c in stand_in.calls_of("graphql") if c.operation == "webhookSubscriptions"]
    assert len(lists) == 1 + -(-len(TOPICS) // 3)


def test_register_webhooks_command(
    shop_app: Flask, shop_client: FlaskClient, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    runner = shop_app.test_cli_runner()
    result = runner.invoke(args=["shopify", "register-webhooks"])
    assert result.exit_code == 1 and "has not installed the app" in result.output

    assert install(shop_client, stand_in, clock).status_code == 200
    stand_in.drop_subscription(SHOP, "APP_UNINSTALLED")  # as Shopify does after failures
    result = runner.invoke(args=["shopify", "register-webhooks"])
    assert result.exit_code == 0, result.output
    assert "created  APP_UNINSTALLED" in result.output
    assert result.output.count("exists   ") == len(TOPICS) - 1
    assert len(stand_in.subscriptions(SHOP)) == len(TOPICS)

    result = runner.invoke(args=["shopify", "register-webhooks", "--shop", SHOP])
    assert result.exit_code == 0 and "created" not in result.output
    assert len(stand_in.subscriptions(SHOP)) == len(TOPICS)
    token = stand_in.issued[0]["access_token"]
    assert token not in result.output

    result = runner.invoke(args=["shopify", "register-webhooks", "--shop", "evil.com"])
    assert result.exit_code == 2


def test_without_protected_data_access_the_other_topics_are_still_subscribed(
    shop_app: Flask, shop_client: FlaskClient, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    stand_in.refuse_protected_topics(SHOP)
    response = install(shop_client, stand_in, clock)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    protected = {t for t in TOPICS if t.startswith(("ORDERS_", "CHECKOUTS_"))}
    assert set(body["webhooks"]["refused"]) == protected
    assert set(body["webhooks"]["created"]) == TOPICS - protected
    assert "Partner Dashboard" in body["action_needed"]

    result = shop_app.test_cli_runner().invoke(args=["shopify", "register-webhooks"])
    assert result.exit_code == 0, result.output
    assert result.output.count("refused  ") == len(protected)
    assert "Protected customer data access" in result.output

    stand_in.refuse_protected_topics(SHOP, refused=False)  # the merchant's request is granted
    result = shop_app.test_cli_runner().invoke(args=["shopify", "register-webhooks"])
    assert result.output.count("created  ") == len(protected)
    assert {s["topic"] for s in stand_in.subscriptions(SHOP)} == TOPICS


def test_the_worker_recreates_the_subscriptions_shopify_deleted(
    shop_app: Flask, shop_client: FlaskClient, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    runtime = shop_app.extensions[EXTENSION_KEY]
    assert registration.keep_subscribed(runtime) == {}, "no shop installed yet"
    assert install(shop_client, stand_in, clock).status_code == 200
    stand_in.drop_subscription(SHOP, "ORDERS_CREATE")  # 8 failed deliveries later
    stand_in.drop_subscription(SHOP, "CARTS_UPDATE")
    before = recreated("ORDERS_CREATE")

    results = registration.keep_subscribed(runtime)
    assert sorted(results[SHOP].created) == ["CARTS_UPDATE", "ORDERS_CREATE"]
    assert {s["topic"] for s in stand_in.subscriptions(SHOP)} == TOPICS
    assert recreated("ORDERS_CREATE") == before + 1
    assert registration.keep_subscribed(runtime)[SHOP].created == []

    stand_in.outage()  # a Shopify incident: logged, the loop goes on
    try:
        assert registration.keep_subscribed(runtime) == {}
    finally:
        stand_in.restore()


def recreated(topic: str) -> float:
    name = "bazico_shopify_webhook_subscriptions_recreated_total"
    return REGISTRY.get_sample_value(name, {"topic": topic}) or 0.0


def test_openapi_documents_the_oauth_routes(shop_client: FlaskClient) -> None:
    paths = shop_client.get("/openapi.json").get_json()["paths"]
    assert {"302", "400", "401", "403"} <= set(paths["/auth/install"]["get"]["responses"])
    assert {"200", "400", "401", "403", "502"} <= set(paths["/auth/callback"]["get"]["responses"])


def test_app_toml_declares_what_the_api_cannot_subscribe() -> None:
    config = tomllib.loads((REPO_ROOT / "shopify.app.toml").read_text())
    assert config["webhooks"]["api_version"] == shopify_client.API_VERSION
    [compliance] = [s for s in config["webhooks"]["subscriptions"] if "compliance_topics" in s]
    assert set(compliance["compliance_topics"]) == {
        "customers/data_request",
        "customers/redact",
        "shop/redact",
    }
    assert urlsplit(compliance["uri"]).path == "/webhooks/shopify"
    [declared] = [s for s in config["webhooks"]["subscriptions"] if "topics" in s]
    assert {t.upper().replace("/", "_") for t in declared["topics"]} == set(registration.TOPICS)
    assert urlsplit(declared["uri"]).path == "/webhooks/shopify"
    assert config["access_scopes"]["scopes"] == DEFAULT_SHOPIFY_SCOPES
    proxy = config["app_proxy"]
    assert (proxy["prefix"], proxy["subpath"]) == ("apps", "bazico")
    assert urlsplit(proxy["url"]).path == "/proxy"
    assert config["auth"]["redirect_urls"][0].endswith("/auth/callback")
