"""Shopify signature checks against the vectors published in Shopify's docs and libraries."""

from __future__ import annotations

from pathlib import Path

from shopify_app.shopify.signatures import (
    proxy_message,
    verify_proxy,
    verify_webhook,
    webhook_signature,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shopify"


def test_webhook_vector_over_the_raw_2024_delivery() -> None:
    raw = (FIXTURES / "carts_create.raw_2024.json").read_bytes()
    assert len(raw) == 1327
    header = "CPa5tsn/mMLrtp8sQnCg9KnNrKxdlBiKgMsWOrAmicM="
    assert webhook_signature("hush", raw) == header
    assert verify_webhook(raw, header, ["hush"])
    assert verify_webhook(raw, header, ["new-secret", "hush"]), "previous secret during rotation"
    assert not verify_webhook(raw, header, ["other"])
    assert not verify_webhook(raw[:-1] + b" ", header, ["hush"])
    assert not verify_webhook(raw, None, ["hush"])
    assert not verify_webhook(raw, header, [])
    # Re-serialised JSON is different bytes: the check must run on the body as received.
    import json

    assert not verify_webhook(json.dumps(json.loads(raw)).encode(), header, ["hush"])


def test_app_proxy_vector() -> None:
    params = {
        "extra": ["1", "2"],
        "shop": ["shop-name.myshopify.com"],
        "logged_in_customer_id": ["1"],
        "path_prefix": ["/apps/awesome_reviews"],
        "timestamp": ["1317327555"],
        "signature": ["4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb"],
    }
    assert proxy_message(params) == (
        b"extra=1,2logged_in_customer_id=1path_prefix=/apps/awesome_reviews"
        b"shop=shop-name.myshopify.comtimestamp=1317327555"
    )
    assert verify_proxy(params, ["hush"])
    assert not verify_proxy({**params, "timestamp": ["1317327556"]}, ["hush"])
    assert not verify_proxy({**params, "signature": ["0" * 64]}, ["hush"])
    assert not verify_proxy({k: v for k, v in params.items() if k != "signature"}, ["hush"])
    assert not verify_proxy({**params, "signature": ["a", "b"]}, ["hush"])
