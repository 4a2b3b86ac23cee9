"""``POST /webhooks/shopify``: verify, hand over, answer.

The HMAC is checked on the raw bytes before anything parses them; a forged or foreign delivery
gets 401 and touches nothing. The receipt (dedupe on X-Shopify-Webhook-Id) and the effect share
one transaction, so a crash in between means Shopify's retry is applied rather than dropped.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, request
from pydantic import BaseModel, Field
from spectree import Response as Answers

from ..config import SHOP_DOMAIN_RE, Settings
from ..observability import metrics
from ..runtime import current_runtime
from ..web.errors import error_response
from ..web.openapi import api
from ..web.schemas import Error
from .handlers import HANDLERS, Delivery, Policy, process  # importing it registers every topic
from .payloads import PayloadError, without_nul
from .signatures import verify_webhook

log = logging.getLogger(__name__)
bp = Blueprint("shopify_webhooks", __name__)


def webhook_secrets(settings: Settings) -> list[str]:
    return [s for s in (settings.shopify_api_secret, settings.shopify_api_secret_previous) if s]


def _header(name: str) -> str | None:
    # Shopify's event deliveries drop the X- prefix; accept both spellings.
    return request.headers.get(f"X-Shopify-{name}") or request.headers.get(f"Shopify-{name}")


class WebhookOut(BaseModel):
    status: str = Field(description="What happened: applied, duplicate, stale, confirmed, …")


@bp.post("/webhooks/shopify")
# The answers are documented (OpenAPI) but not validated on the way out: the body is raw bytes
# (nothing for spectree to read) and every answer is one of a few fixed shapes built here, so
# parsing each one back into its model cost a busy store's deliveries time for nothing.
@api.validate(
    resp=Answers(HTTP_200=WebhookOut, HTTP_400=Error, HTTP_401=Error, HTTP_413=Error),
    tags=["shopify"],
    skip_validation=True,
)
def receive() -> Any:
    """One endpoint for every topic: 200 applied or duplicate, 401 unverified, 400 unreadable."""
    runtime = current_runtime()
    settings = runtime.settings
    raw = request.get_data(cache=False)
    if not verify_webhook(raw, _header("Hmac-Sha256"), webhook_secrets(settings)):
        log.warning("webhook.rejected reason=hmac topic=%s", _header("Topic"))
        _count(_header("Topic"), "unauthorized")
        return error_response(401, "invalid_hmac", "HMAC validation failed")
    shop = (_header("Shop-Domain") or "").lower()
    expected_shop = settings.shopify_shop_domain
    if not SHOP_DOMAIN_RE.match(shop) or (expected_shop and shop != expected_shop):
        log.warning("webhook.rejected reason=shop shop=%s", shop[:100])
        _count(_header("Topic"), "unauthorized")
        return error_response(401, "unknown_shop", "deliveries from this shop are not accepted")
    topic, webhook_id = _header("Topic"), _header("Webhook-Id")
    if not topic or not webhook_id:
        return error_response(400, "missing_header", "X-Shopify-Topic and -Webhook-Id required")
    try:
        payload = json.loads(raw)
    except ValueError:
        return error_response(400, "invalid_json", "the body is not valid JSON")
    if not isinstance(payload, dict):
        return error_response(400, "invalid_json", "the body must be a JSON object")
    policy = Policy.of(settings, runtime.hold_limits)
    # A NUL can only come in escaped (json.loads refuses a raw control character): without the
    # escape in the body there is nothing to replace, and a big order is not walked for nothing.
    if b"\\u0000" in raw:
        payload = without_nul(payload)
    delivery = Delivery(shop, topic[:64], webhook_id[:255], payload)
    try:
        outcome = process(runtime.uow(), delivery, policy)
    except PayloadError as exc:
        _count(topic, "invalid")
        return error_response(400, "invalid_payload", str(exc))
    _count(topic, outcome)
    log.info("webhook.%s topic=%s shop=%s id=%s", outcome, topic, shop, webhook_id)
    return Response(json.dumps({"status": outcome}), 200, mimetype="application/json")


def _count(topic: str | None, outcome: str) -> None:
    # Topics come from the (verified, or refused) request: only known ones become label values,
    # so a forger cannot grow the metric's series without bound.
    label = topic if topic in HANDLERS else "other"
    metrics.WEBHOOKS.labels("shopify", label, outcome).inc()
