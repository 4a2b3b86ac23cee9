"""``POST /webhooks/bling``: verify, hand over, answer.

``X-Bling-Signature-256`` (HMAC-SHA256 of the raw body with ``BLING_CLIENT_SECRET``) is checked on
the bytes as received, before anything parses them; a forged delivery, or any delivery while Bling
is not configured, gets 401 and changes nothing. The receipt (dedupe on ``eventId``) and the
effect share one transaction (stock_sync.process_event). Bling wants a 2xx within 5 s: nothing
here calls Bling.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, request
from pydantic import BaseModel, Field
from spectree import Response as Answers

from bling.webhooks import SIGNATURE_HEADER, InvalidEvent, parse_event, verify_signature

from ..observability import metrics
from ..runtime import current_runtime
from ..web.errors import error_response
from ..web.openapi import api
from ..web.schemas import Error
from .stock_sync import configured_deposit, process_event

log = logging.getLogger(__name__)
bp = Blueprint("bling_webhooks", __name__)

BLING_RESOURCES = frozenset(
    {"stock", "virtual_stock", "order", "product", "invoice", "consumer_invoice"}
)


class BlingWebhookOut(BaseModel):
    status: str = Field(
        description=(
            "What happened: applied, duplicate, stale (older than the balance already applied), "
            "ignored (not a stock event, or no balance for the configured deposit), "
            "ignored_unknown_product"
        )
    )


@bp.post("/webhooks/bling")
@api.validate(
    resp=Answers(HTTP_200=BlingWebhookOut, HTTP_400=Error, HTTP_401=Error, HTTP_413=Error),
    tags=["bling"],
)
def receive() -> Any:
    """Bling's signed events: stock balances applied race-free; 200 applied or duplicate."""
    runtime = current_runtime()
    settings = runtime.settings
    raw = request.get_data(cache=False)
    secret = settings.bling_client_secret or ""
    if not verify_signature(raw, request.headers.get(SIGNATURE_HEADER), secret):
        reason = "signature" if secret else "bling_not_configured"
        log.warning("bling.webhook_rejected reason=%s", reason)
        metrics.WEBHOOKS.labels("bling", "unknown", "unauthorized").inc()
        return error_response(401, "invalid_signature", "X-Bling-Signature-256 does not match")
    try:
        event = parse_event(raw)
        outcome = process_event(runtime.uow(), event, deposit_id=configured_deposit(settings))
    except InvalidEvent as exc:
        metrics.WEBHOOKS.labels("bling", "unknown", "invalid").inc()
        return error_response(400, "invalid_payload", str(exc))
    # Bling's event names are "resource.action" (stock.updated…); keep the resource only.
    resource = event.event.split(".", 1)[0] if event.event else "unknown"
    topic = resource if resource in BLING_RESOURCES else "other"
    metrics.WEBHOOKS.labels("bling", topic, outcome).inc()
    log.info("bling.webhook_%s event=%s id=%s", outcome, event.event, event.event_id)
    return Response(json.dumps({"status": outcome}), 200, mimetype="application/json")
