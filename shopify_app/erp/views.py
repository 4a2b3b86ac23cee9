"""``GET /bling/connect`` and ``GET /bling/callback``: connecting the app to a Bling account.

Connect (operators only, ``Authorization: Bearer $STOCK_API_TOKEN``) answers a redirect to
Bling's consent page with a fresh signed ``state``. Callback (where Bling sends the merchant
back): the ``state`` is checked on the server (signature, app, age: connection.py), then the
``code`` is exchanged and the tokens stored encrypted. Every refusal stores nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, redirect, request
from spectree import Response as Answers

from bling.errors import BlingError, BlingUnavailable, InvalidGrant

from ..runtime import current_runtime
from ..web.auth import require_bearer
from ..web.errors import error_response
from ..web.openapi import BEARER, api
from ..web.schemas import Error
from . import connection

log = logging.getLogger(__name__)
bp = Blueprint("bling_oauth", __name__, url_prefix="/bling")
TAGS = ["bling"]

CONNECTED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bling connected</title></head>
<body><h1>Bling connected</h1>
<p>Bázico Stock Service can now read stock from Bling and post orders to it.
You can close this tab.</p></body></html>
"""


@bp.get("/connect")
@api.validate(
    resp=Answers(HTTP_302=None, HTTP_401=Error, HTTP_503=Error), tags=TAGS, security=BEARER
)
def connect() -> Any:
    """Start the authorization: redirect to Bling's consent page with a signed state."""
    runtime = current_runtime()
    refusal = require_bearer(runtime.settings.stock_api_token) or _not_configured()
    if refusal is not None:
        return refusal
    return redirect(connection.authorize_url(runtime), code=302)


@bp.get("/callback")
@api.validate(
    resp=Answers(HTTP_200=None, HTTP_400=Error, HTTP_403=Error, HTTP_502=Error, HTTP_503=Error),
    tags=TAGS,
)
def callback() -> Any:
    """Finish the authorization: check the state, exchange the code, store the tokens."""
    runtime = current_runtime()
    refusal = _not_configured() or _bad_state() or _refused_by_merchant()
    if refusal is not None:
        return refusal
    code = request.args.get("code", "")
    if not code:
        return error_response(400, "invalid_request", "the callback carries no code")
    try:
        connection.connect(runtime, code)
    except InvalidGrant:
        return error_response(
            400, "invalid_code", "Bling refused the code (it lasts one minute, once); start again"
        )
    except BlingUnavailable:
        return error_response(502, "bling_unavailable", "Bling did not answer; try again")
    except BlingError as exc:
        # invalid_client and friends: BLING_CLIENT_SECRET is wrong, or the app is inactive.
        log.error("bling.connect_refused status=%s error=%s", exc.status, exc.type)
        return error_response(502, "bling_refused", "Bling refused the app's credentials")
    log.info("bling.connected account=%s", runtime.settings.bling_client_id)
    return Response(CONNECTED_PAGE, status=200, mimetype="text/html")


# --- checks; each returns the refusal, or None when the request passes ----------------------


def _not_configured() -> Response | None:
    if connection.is_configured(current_runtime().settings):
        return None
    return error_response(
        503, "not_configured", "BLING_CLIENT_ID and BLING_CLIENT_SECRET are not set"
    )


_STATE_REFUSALS = {
    "missing": (400, "missing_state"),
    "forged": (403, "invalid_state"),
    "expired": (403, "expired_state"),
}


def _bad_state() -> Response | None:
    runtime = current_runtime()
    try:
        connection.check_state(runtime.settings, request.args.get("state", ""), runtime.clock())
    except connection.InvalidState as exc:
        log.warning("bling.callback_refused reason=%s", exc.reason)
        status, code = _STATE_REFUSALS[exc.reason]
        return error_response(status, code, str(exc))
    return None


def _refused_by_merchant() -> Response | None:
    """Bling sends ``error`` (e.g. ``access_denied``) instead of a code when not approved."""
    error = request.args.get("error")
    if not error:
        return None
    description = request.args.get("error_description") or "the authorization was not granted"
    return error_response(400, "authorization_denied", description[:200], bling_error=error[:64])
