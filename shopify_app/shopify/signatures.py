"""Shopify's webhook and App Proxy signatures, checked in constant time against each secret.

- Webhooks: base64 HMAC-SHA256 of the **raw** body (``X-Shopify-Hmac-Sha256``).
- App Proxy: hex HMAC-SHA256 of the sorted ``key=value`` pairs joined with no separator,
  multi-valued keys joined with ``,`` (``signature`` query parameter).

(OAuth redirects carry a third kind, checked through ShopifyAPI in ``client.py``.)
Secrets are tried in order (current, then the previous one while a rotation is under way).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence


def _digest(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def _matches_any(expected: Iterable[bytes], given: bytes) -> bool:
    # Compare against every secret, without stopping early, so timing says nothing either.
    found = False
    for candidate in expected:
        found |= hmac.compare_digest(candidate, given)
    return found


def webhook_signature(secret: str, raw_body: bytes) -> str:
    """What Shopify sends in ``X-Shopify-Hmac-Sha256`` for ``raw_body``."""
    return base64.b64encode(_digest(secret, raw_body)).decode("ascii")


def verify_webhook(raw_body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    if not header or not secrets:
        return False
    return _matches_any(
        (webhook_signature(s, raw_body).encode() for s in secrets), header.strip().encode()
    )


def proxy_message(params: Mapping[str, Sequence[str]]) -> bytes:
    pairs = sorted((key, ",".join(values)) for key, values in params.items() if key != "signature")
    return "".join(f"{key}={value}" for key, value in pairs).encode("utf-8")


def proxy_signature(secret: str, params: Mapping[str, Sequence[str]]) -> str:
    return _digest(secret, proxy_message(params)).hex()


def verify_proxy(params: Mapping[str, Sequence[str]], secrets: Sequence[str]) -> bool:
    given = params.get("signature") or []
    if len(given) != 1 or not secrets:
        return False
    return _matches_any(
        (proxy_signature(s, params).encode() for s in secrets), given[0].lower().encode()
    )
