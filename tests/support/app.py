"""The Flask app under test: its environment, its engine and a client carrying the API token.

The constants are the credentials every in-process app (and most Procfile deployments) is
configured with; tests sign webhooks and App Proxy queries with them.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from shopify_app.runtime import EXTENSION_KEY
from tests.support.procfile import LIMITS_OFF

TOKEN = "test-stock-token"
SHOPIFY_SECRET = "test-shopify-secret"
SHOP = "bazico-test.myshopify.com"


def app_environ(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "STOCK_API_TOKEN": TOKEN,
        "APP_ENV": "test",
        "SHOPIFY_API_KEY": "test-shopify-key",
        "SHOPIFY_API_SECRET": SHOPIFY_SECRET,
        "SHOPIFY_SHOP_DOMAIN": SHOP,
        **LIMITS_OFF,
        **extra,
    }


def engine_of(app: Flask) -> Engine:
    return app.extensions[EXTENSION_KEY].engine


class ApiClient:
    """The Flask test client with the bearer token on every call (unless told otherwise)."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def _headers(self, token: str | None, headers: dict[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        if token is not None:
            out.setdefault("Authorization", f"Bearer {token}")
        return out

    def request(
        self, method: str, path: str, *, token: str | None = TOKEN, headers: Any = None, **kw: Any
    ) -> Any:
        return self.client.open(path, method=method, headers=self._headers(token, headers), **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Any:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)
