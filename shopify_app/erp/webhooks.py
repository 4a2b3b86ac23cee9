"""``POST /webhooks/bling``: verify, hand over, answer.

``X-Bling-Signature-256`` (HMAC-SHA256 of the raw body with ``BLING_CLIENT_SECRET``) is checked on
the bytes as received, before anything parses them; a forged delivery, or any delivery while Bling
is not configured, gets 401 and changes nothing. The receipt (dedupe on ``eventId``) and the
effect share one transaction (stock_sync.process_event). Bling wants a 2xx within 5 s: nothing
here calls Bling (what is known of the account is read from the database, erp/account.py).

- **Another account's events.** Every account that authorized the Bling app sends to this URL,
  signed with the same secret. An event whose ``companyId`` is not the connected account's is
  answered 200 ``ignored_other_company`` and changes nothing, not even the receipts: a refusal
  (4xx) would make Bling retry it for three days and then disable the app's webhooks for that
  resource, this account's included.
- **No deposit to apply a balance to** (BLING_DEPOSIT_ID unset, the default deposit not learnt
  yet): a stock event is answered 503 and changes nothing, so Bling delivers it again later.
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
from .account import DepositUnknown, sales_deposit
from .connection import stored_account
from .stock_sync import process_event

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
            "ignored_unknown_product, ignored_other_company (sent for another Bling account)"
        )
    )


@bp.post("/webhooks/bling")
@api.validate(
    resp=Answers(
        HTTP_200=BlingWebhookOut, HTTP_400=Error, HTTP_401=Error, HTTP_413=Error, HTTP_503=Error
    ),
    tags=["bling"],
)
def receive() -> Any:
    """Bling's signed events: stock balances applied race-free; 200 applied or duplicate.

    503 ``deposit_unknown``: a stock event while the deposit sold from is not known yet
    (BLING_DEPOSIT_ID unset, the account's default deposit not read yet); Bling retries it."""
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
    except InvalidEvent as exc:
        metrics.WEBHOOKS.labels("bling", "unknown", "invalid").inc()
        return error_response(400, "invalid_payload", str(exc))
    # Bling's event names are "resource.action" (stock.updated…); keep the resource only.
    resource = event.event.split(".", 1)[0] if event.event else "unknown"
    topic = resource if resource in BLING_RESOURCES else "other"
    known = stored_account(runtime)
    if not known.owns(event):
        log.warning(
            "bling.webhook_other_company event=%s id=%s company=%r",
            event.event,
            event.event_id,
            str(event.company_id)[:64],
        )
        metrics.WEBHOOKS.labels("bling", topic, "ignored_other_company").inc()
        return _status("ignored_other_company")
    try:
        deposit: int | None = sales_deposit(settings, known)
    except DepositUnknown as exc:
        if event.carries_stock:
            log.error("bling.webhook_deferred id=%s: %s", event.event_id, exc)
            metrics.WEBHOOKS.labels("bling", topic, "deposit_unknown").inc()
            return error_response(503, "deposit_unknown", str(exc))
        deposit = None  # not a stock event: nothing is applied, the receipt is kept
    try:
        outcome = process_event(runtime.uow(), event, deposit_id=deposit)
    except InvalidEvent as exc:
        metrics.WEBHOOKS.labels("bling", "unknown", "invalid").inc()
        return error_response(400, "invalid_payload", str(exc))
    metrics.WEBHOOKS.labels("bling", topic, outcome).inc()
    log.info("bling.webhook_%s event=%s id=%s", outcome, event.event, event.event_id)
    return _status(outcome)


def _status(outcome: str) -> Response:
    return Response(json.dumps({"status": outcome}), 200, mimetype="application/json")
