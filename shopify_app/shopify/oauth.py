"""OAuth install (authorization code grant): ``/auth/install`` and ``/auth/callback``.

Install: validate the shop, verify Shopify's ``hmac`` when present, send the merchant to the
consent screen with a fresh ``state`` nonce that is also kept in a signed, HttpOnly, short-lived
cookie. Callback: the shop, the query HMAC and the nonce must all check out before the code is
exchanged for an expiring offline token; the granted scopes are checked, the tokens stored
encrypted (shops.py), the webhooks registered and the checkout rule set up (enforcement.py).
Every refusal stores nothing.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, redirect, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from spectree import Response as Answers

from ..config import SHOP_DOMAIN_RE, Settings
from ..runtime import current_runtime
from ..web.errors import error_response
from ..web.openapi import api
from ..web.schemas import Error
from . import client, enforcement, registration
from .shops import TokenStore

log = logging.getLogger(__name__)
bp = Blueprint("shopify_oauth", __name__)

STATE_COOKIE = "shopify_oauth_state"
STATE_MAX_AGE_SECONDS = 600  # the merchant has ten minutes on Shopify's consent screen
#: Shopify's own libraries refuse signed redirects older than a day (replays of leaked URLs).
MAX_TIMESTAMP_SKEW_SECONDS = 24 * 60 * 60
_STATE_SALT = "shopify-oauth-state"


@bp.get("/auth/install")
@api.validate(
    resp=Answers(HTTP_302=None, HTTP_400=Error, HTTP_401=Error, HTTP_403=Error, HTTP_503=Error),
    tags=["shopify"],
)
def install() -> Any:
    """Start the install: redirect to Shopify's consent screen with a state nonce."""
    settings = current_runtime().settings
    shop = request.args.get("shop", "")
    refusal = _not_configured(settings) or _bad_shop(settings, shop)
    if refusal is None and "hmac" in request.args:  # launched from the Shopify admin
        refusal = _bad_signature(settings)
    if refusal is not None:
        return refusal

    nonce = secrets.token_urlsafe(32)
    target = client.authorize_url(
        client.admin_base_url(settings.shopify_admin_url, shop),
        client_id=settings.shopify_api_key or "",
        scopes=settings.shopify_scopes,
        redirect_uri=f"{settings.app_url}/auth/callback",
        state=nonce,
    )
    response = redirect(target, code=302)
    response.set_cookie(
        STATE_COOKIE,
        _serializer().dumps({"nonce": nonce, "shop": shop}),
        max_age=STATE_MAX_AGE_SECONDS,
        path="/auth",
        httponly=True,
        secure=settings.app_url.startswith("https://"),
        samesite="Lax",  # sent on Shopify's top-level redirect back, not on cross-site POSTs
    )
    return response


@bp.get("/auth/callback")
@api.validate(
    resp=Answers(
        HTTP_200=None,
        HTTP_400=Error,
        HTTP_401=Error,
        HTTP_403=Error,
        HTTP_502=Error,
        HTTP_503=Error,
    ),
    tags=["shopify"],
)
def callback() -> Any:
    """Finish the install: verify, exchange the code, store the tokens, register webhooks, set
    up the checkout rule."""
    runtime = current_runtime()
    settings = runtime.settings
    shop = request.args.get("shop", "")
    refusal = (
        _not_configured(settings)
        or _bad_shop(settings, shop)
        or _bad_signature(settings)
        or _bad_state(shop)
    )
    if refusal is not None:
        return refusal
    code = request.args.get("code", "")
    if not code:
        return error_response(400, "invalid_request", "the callback carries no code")

    issued_at = runtime.clock()
    try:
        grant = client.exchange_code(
            client.admin_base_url(settings.shopify_admin_url, shop),
            client_id=settings.shopify_api_key or "",
            client_secret=settings.shopify_api_secret or "",
            code=code,
        )
    except client.ShopifyUnauthorized:
        log.error("shop %s: Shopify refused the app's client credentials", shop)
        return error_response(502, "shopify_refused", "Shopify refused the app's credentials")
    except client.ShopifyRejected as exc:
        return error_response(400, "invalid_code", f"Shopify refused the code ({exc})")
    except client.ShopifyError as exc:
        log.warning("shop %s: code exchange failed: %s", shop, exc)
        return error_response(502, "shopify_unavailable", "Shopify did not answer; try again")

    missing = missing_scopes(settings.shopify_scopes, grant.scope)
    if missing:
        return error_response(
            403,
            "scopes_not_granted",
            "the app needs every scope it asked for; install it again and accept them",
            missing=sorted(missing),
        )

    TokenStore.for_runtime(runtime).save_tokens(shop, grant, issued_at=issued_at)
    log.info("shop %s: installed (scopes %s)", shop, grant.scope)
    try:
        result = registration.register_webhooks(settings, shop, grant.access_token)
    except client.ShopifyError as exc:
        # The install itself succeeded (tokens stored); only the subscriptions are missing.
        log.error("shop %s: webhook registration failed: %s", shop, exc)
        response = error_response(
            502,
            "webhook_registration_failed",
            "installed, but the webhooks could not be registered; "
            "run `flask shopify register-webhooks` once Shopify answers",
        )
    else:
        response = jsonify(
            status="installed",
            shop=shop,
            webhooks={
                "uri": result.uri,
                "created": result.created,
                "existing": result.existing,
                "refused": result.refused,
            },
            **({"action_needed": registration.PROTECTED_DATA_HINT} if result.refused else {}),
            checkout=_enforce(shop, grant.access_token),
        )
    response.delete_cookie(STATE_COOKIE, path="/auth")
    return response


def _enforce(shop: str, access_token: str) -> dict[str, Any]:
    """The checkout rule (shopify/enforcement.py); a failure leaves the install done and is
    logged (``flask shopify enforce`` completes it)."""
    admin_base = client.admin_base_url(current_runtime().settings.shopify_admin_url, shop)
    try:
        report = enforcement.enforce(admin_base, access_token)
    except client.ShopifyError as exc:
        log.error("shop %s: checkout rule not set up: %s (run flask shopify enforce)", shop, exc)
        return {"error": "checkout_rule_failed", "message": str(exc)}
    if report.function is None:
        log.warning(
            "shop %s: the checkout validation function is not deployed; run `shopify app "
            "deploy`, then `flask shopify enforce`",
            shop,
        )
    return report.as_json()


def missing_scopes(requested: str, granted: str) -> set[str]:
    """Requested scopes Shopify did not grant; a granted ``write_x`` implies ``read_x``.

    The merchant can edit the consent URL, so what came back is checked, not assumed.
    """
    have = {s.strip() for s in granted.split(",") if s.strip()}
    have |= {s.replace("write_", "read_", 1) for s in have if "write_" in s}
    return {s.strip() for s in requested.split(",") if s.strip()} - have


# --- checks; each returns the refusal, or None when the request passes --------------------


def _not_configured(settings: Settings) -> Response | None:
    if settings.shopify_api_key and settings.shopify_api_secret:
        return None
    return error_response(
        503, "not_configured", "SHOPIFY_API_KEY and SHOPIFY_API_SECRET are not set"
    )


def _bad_shop(settings: Settings, shop: str) -> Response | None:
    if not SHOP_DOMAIN_RE.match(shop):
        return error_response(400, "invalid_shop", "shop must be a name.myshopify.com domain")
    if settings.shopify_shop_domain and shop != settings.shopify_shop_domain:
        return error_response(403, "shop_not_allowed", "this service serves another shop")
    return None


def _bad_signature(settings: Settings) -> Response | None:
    params = client.query_params(request.args.items(multi=True))
    if params is None:
        return error_response(400, "invalid_request", "a query parameter is repeated")
    accepted = [s for s in (settings.shopify_api_secret, settings.shopify_api_secret_previous) if s]
    if not client.verify_query_hmac(params, accepted):
        return error_response(401, "invalid_hmac", "the request is not signed by Shopify")
    try:
        age = current_runtime().clock().timestamp() - int(params.get("timestamp", ""))
    except ValueError:
        return error_response(401, "invalid_hmac", "the signed request has no valid timestamp")
    if abs(age) > MAX_TIMESTAMP_SKEW_SECONDS:
        return error_response(401, "stale_request", "the signed request is too old")
    return None


def _bad_state(shop: str) -> Response | None:
    refusal = error_response(
        403, "invalid_state", "the install was not started here, or took too long; start again"
    )
    cookie = request.cookies.get(STATE_COOKIE)
    state = request.args.get("state", "")
    if not cookie or not state:
        return refusal
    try:
        saved = _serializer().loads(cookie, max_age=STATE_MAX_AGE_SECONDS)
    except BadSignature:  # also SignatureExpired
        return refusal
    nonce = saved.get("nonce") if isinstance(saved, dict) else None
    if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), state.encode()):
        return refusal
    if saved.get("shop") != shop:
        return refusal
    return None


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_STATE_SALT)
