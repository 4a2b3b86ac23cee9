"""Who is asking an admin page: Shopify's session token (or its signed query), checked.

A session token is verified by ``shopify/session_tokens.py``; here its shop must also be one
this service serves (the configured ``SHOPIFY_SHOP_DOMAIN``, else a shop installed through OAuth
and not uninstalled). The shop proven here is the one the page's ``frame-ancestors`` names
(``g.frame_shop``, web/security.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Response, g, request
from sqlalchemy import select

from ..config import SHOP_DOMAIN_RE
from ..runtime import Runtime, current_runtime
from ..shopify import client as shopify_client
from ..shopify import session_tokens
from ..shopify.shops import ShopTokenError, TokenStore
from ..shopify.shops import shops as shop_rows
from ..web.errors import error_response
from . import queries

log = logging.getLogger(__name__)
#: Signed queries older than this are refused (Shopify's libraries use a day too).
MAX_QUERY_AGE_SECONDS = 24 * 60 * 60
DEV_SHOP = "dev-store.myshopify.com"


@dataclass(frozen=True)
class Admin:
    """Who is asking: the shop and the staff member (the token's ``sub``), or dev mode."""

    shop: str
    user: str
    dev: bool = False


class Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- who is asking ------------------------------------------------------------------------------


def serves(runtime: Runtime, shop: str) -> bool:
    """A shop this service serves: the configured one, or one installed through OAuth."""
    configured = runtime.settings.shopify_shop_domain
    if configured is not None:
        return shop == configured
    with queries.reading(runtime) as connection:
        row = connection.execute(
            select(shop_rows.c.shop).where(
                shop_rows.c.shop == shop, shop_rows.c.uninstalled_at.is_(None)
            )
        ).first()
    return row is not None


def secrets(runtime: Runtime) -> list[str]:
    settings = runtime.settings
    return [s for s in (settings.shopify_api_secret, settings.shopify_api_secret_previous) if s]


def _bearer() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(*, document: bool) -> Admin:
    """The admin of this request, or Refused. ``document``: a page load, whose token may come
    as the ``id_token`` query parameter (actions and JSON calls: the header only)."""
    runtime = current_runtime()
    settings = runtime.settings
    token = _bearer() or (request.args.get("id_token") if document else None)
    if token is None and settings.admin_dev_mode:
        admin = Admin(settings.shopify_shop_domain or DEV_SHOP, "dev", dev=True)
        g.frame_shop = admin.shop
        return admin
    try:
        verified = session_tokens.verify(
            token or "",
            api_key=settings.shopify_api_key,
            secrets=secrets(runtime),
            now=runtime.clock(),
        )
    except session_tokens.InvalidSessionToken as exc:
        raise Refused(exc.reason) from None
    if not serves(runtime, verified.shop):
        raise Refused("unknown_shop")
    g.frame_shop = verified.shop
    return Admin(verified.shop, verified.user)


def bad_signed_query(runtime: Runtime, shop: str) -> Response | None:
    settings = runtime.settings
    if not SHOP_DOMAIN_RE.match(shop):
        return error_response(400, "invalid_shop", "shop must be a name.myshopify.com domain")
    params = shopify_client.query_params(request.args.items(multi=True))
    if params is None:
        return error_response(400, "invalid_request", "a query parameter is repeated")
    if not shopify_client.verify_query_hmac(params, secrets(runtime)):
        return error_response(401, "invalid_hmac", "the request is not signed by Shopify")
    try:
        age = runtime.clock().timestamp() - int(params.get("timestamp", ""))
    except ValueError:
        return error_response(401, "invalid_hmac", "the signed request has no valid timestamp")
    if abs(age) > MAX_QUERY_AGE_SECONDS:
        return error_response(401, "stale_request", "the signed request is too old")
    if settings.shopify_shop_domain and shop != settings.shopify_shop_domain:
        return error_response(403, "shop_not_allowed", "this service serves another shop")
    return None


def has_token(runtime: Runtime, shop: str) -> bool:
    try:
        TokenStore.for_runtime(runtime).access_token(shop)
    except ShopTokenError:
        return False
    except Exception:  # Shopify unreachable for a refresh: the shop is installed all the same
        log.warning("admin.token_check_failed shop=%s", shop, exc_info=True)
    return True
