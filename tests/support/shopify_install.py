"""Helpers for the OAuth and token tests: an app wired to the Shopify stand-in, signed callbacks.

The HMAC here is written out from Shopify's documentation, independently of the code under test,
so a mistake in the service's own signing helper cannot hide behind a test that shares it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from flask.testing import FlaskClient

from shopify_app import create_app
from shopify_app.migrations_runner import upgrade
from shopify_app.runtime import EXTENSION_KEY
from shopify_app.shopify import registration
from tests.support.clock import FakeClock
from tests.support.procfile import LIMITS_OFF
from tests.support.shopify_standin import ShopifyStandIn

API_KEY = "standin-client-id"
API_SECRET = "standin-client-secret"
PREVIOUS_SECRET = "standin-previous-secret"
SECRET_KEY = "test-secret-key-for-tokens-0123456789"
APP_URL = "https://stock.bazico.test"
SHOP = "bazico-test.myshopify.com"
SCOPES = "read_orders,read_products,write_app_proxy"
WEBHOOK_URI = APP_URL + "/webhooks/shopify"
TOPICS = set(registration.TOPICS)


def standin(clock: FakeClock | None = None, **options: Any) -> ShopifyStandIn:
    return ShopifyStandIn(client_id=API_KEY, client_secret=API_SECRET, clock=clock, **options)


def shopify_environ(database_url: str, admin_url: str, **extra: str) -> dict[str, str]:
    """The environment of an app whose Shopify is the stand-in at ``admin_url``."""
    return {
        "DATABASE_URL": database_url,
        "APP_ENV": "test",
        "STOCK_API_TOKEN": "test-stock-token",
        "SHOPIFY_API_KEY": API_KEY,
        "SHOPIFY_API_SECRET": API_SECRET,
        "SHOPIFY_API_SECRET_PREVIOUS": PREVIOUS_SECRET,
        "SHOPIFY_ADMIN_URL": admin_url,
        "SHOPIFY_SHOP_DOMAIN": SHOP,
        "SHOPIFY_SCOPES": SCOPES,
        "SECRET_KEY": SECRET_KEY,
        "APP_URL": APP_URL,
        **LIMITS_OFF,
        **extra,
    }


def make_app(database_url: str, clock: FakeClock, admin_url: str, **extra: str) -> Flask:
    app = create_app(shopify_environ(database_url, admin_url, **extra), clock=clock)
    engine = app.extensions[EXTENSION_KEY].engine
    if engine.dialect.name == "sqlite":
        upgrade(engine)  # the PostgreSQL fixture hands out a migrated, emptied database
    return app


def sign(params: dict[str, str], secret: str = API_SECRET) -> dict[str, str]:
    """``params`` plus the ``hmac`` Shopify adds: hex HMAC-SHA256 of the sorted pairs, ``&``."""
    message = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "hmac")
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return {**params, "hmac": digest}


def start_install(client: FlaskClient, shop: str = SHOP) -> str:
    """GET /auth/install; returns the ``state`` of the consent URL (the cookie is in the client)."""
    response = client.get("/auth/install", query_string={"shop": shop})
    assert response.status_code == 302, response.get_data(as_text=True)
    return query_of(response.headers["Location"])["state"]


def callback_params(
    stand_in: ShopifyStandIn, clock: FakeClock, state: str, *, shop: str = SHOP, scope: str = SCOPES
) -> dict[str, str]:
    """What Shopify appends to the redirect after the merchant approved ``scope``."""
    return {
        "code": stand_in.authorize(shop, scope),
        "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvYmF6aWNv",
        "shop": shop,
        "state": state,
        "timestamp": str(int(clock().timestamp())),
    }


def install(client: FlaskClient, stand_in: ShopifyStandIn, clock: FakeClock) -> Any:
    """The whole install, as the merchant's browser does it; returns the callback's response."""
    state = start_install(client)
    return client.get("/auth/callback", query_string=sign(callback_params(stand_in, clock, state)))


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}
