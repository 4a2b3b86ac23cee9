"""Deliver webhooks signed exactly as Shopify signs them (headers included), and sign App Proxy
queries as Shopify's proxy does.

In tests, ``deliver`` posts a webhook to the app's Flask test client and ``signed_query`` is the
query string of a proxied storefront request, both signed with tests/support/app.py's secret.

As a command, it sends a fixture to a running service, for trying things by hand::

    python -m tests.support.shopify_sender tests/fixtures/shopify/carts_update.json \\
        --url http://localhost:8000 --secret "$SHOPIFY_API_SECRET" --shop "$SHOPIFY_SHOP_DOMAIN"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import requests

from shopify_app.shopify.signatures import proxy_signature, webhook_signature
from tests.support.app import SHOP, SHOPIFY_SECRET

if TYPE_CHECKING:
    from flask.testing import FlaskClient

    from tests.support.clock import FakeClock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shopify"
API_VERSION = "2026-07"

#: The topic each saved payload was published for (see tests/fixtures/shopify/README.md).
FIXTURE_TOPICS = {
    "app_uninstalled.json": "app/uninstalled",
    "carts_create.json": "carts/create",
    "carts_create.raw_2024.json": "carts/create",
    "carts_update.json": "carts/update",
    "checkouts_create.json": "checkouts/create",
    "checkouts_delete.json": "checkouts/delete",
    "checkouts_update.json": "checkouts/update",
    "customers_data_request.json": "customers/data_request",
    "customers_redact.json": "customers/redact",
    "orders_cancelled.json": "orders/cancelled",
    "orders_create.json": "orders/create",
    "orders_fulfilled.json": "orders/fulfilled",
    "orders_edited.json": "orders/edited",
    "orders_paid.json": "orders/paid",
    "refunds_create.json": "refunds/create",
    "shop_redact.json": "shop/redact",
}


def signed_headers(
    body: bytes,
    topic: str,
    *,
    secret: str,
    shop: str,
    webhook_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": webhook_signature(secret, body),
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": API_VERSION,
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
        "X-Shopify-Triggered-At": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def fixture(name: str) -> bytes:
    """A saved payload's exact bytes."""
    return (FIXTURES / name).read_bytes()


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode() if not isinstance(payload, bytes) else payload


def deliver(
    client: FlaskClient,
    body: Any,
    topic: str,
    *,
    secret: str = SHOPIFY_SECRET,
    shop: str = SHOP,
    webhook_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    raw = body_of(body)
    sent = signed_headers(raw, topic, secret=secret, shop=shop, webhook_id=webhook_id)
    sent.update(headers or {})
    return client.post("/webhooks/shopify", data=raw, headers=sent)


def signed_query(
    clock: FakeClock | None = None, *, secret: str = SHOPIFY_SECRET, **overrides: Any
) -> str:
    """The query Shopify's App Proxy adds, signed, at ``clock``'s time (the wall clock when None:
    a service in another process checks the timestamp against its own)."""
    now = clock.now.timestamp() if clock is not None else time.time()
    params: dict[str, list[str]] = {
        "shop": [SHOP],
        "logged_in_customer_id": [""],
        "path_prefix": ["/apps/bazico"],
        "timestamp": [str(int(now))],
    }
    params.update({k: [v] for k, v in overrides.items() if k != "signature"})
    params["signature"] = [overrides.get("signature") or proxy_signature(secret, params)]
    return urlencode({k: v[0] for k, v in params.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixture", type=Path, help="a JSON payload file")
    parser.add_argument("--url", default="http://localhost:8000", help="the service's base URL")
    parser.add_argument("--secret", required=True, help="SHOPIFY_API_SECRET of the service")
    parser.add_argument("--shop", required=True, help="X-Shopify-Shop-Domain to send")
    parser.add_argument("--topic", help="default: from the file name (carts_update -> ...)")
    parser.add_argument("--webhook-id", help="repeat an id to see the duplicate handling")
    args = parser.parse_args(argv)
    topic = args.topic or FIXTURE_TOPICS.get(args.fixture.name)
    if topic is None:
        parser.error(f"cannot tell the topic of {args.fixture.name}; pass --topic")
    body = args.fixture.read_bytes()
    headers = signed_headers(
        body, topic, secret=args.secret, shop=args.shop, webhook_id=args.webhook_id
    )
    response = requests.post(
        f"{args.url.rstrip('/')}/webhooks/shopify", data=body, headers=headers, timeout=10
    )
    print(response.status_code, response.text.strip())
    return 0 if response.ok else 1


if __name__ == "__main__":
    sys.exit(main())
