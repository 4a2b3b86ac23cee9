"""The App Proxy: the storefront asks for a hold before it adds to cart, and reads availability.

Shopify forwards ``/apps/bazico/...`` on the shop's domain to ``/proxy/...`` here, signing the
query string (``signature``: hex HMAC-SHA256 of the sorted ``key=value`` pairs). The body is not
signed; it only names the shopper's own cart, which is what a hold is keyed by.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Blueprint, Response, request
from pydantic import Field
from spectree import Response as Answers

from ..config import SHOP_DOMAIN_RE
from ..runtime import current_runtime
from ..stock.domain import HoldSource, Line
from ..stock.schemas import MAX_QUANTITY, ReservationOut, StockOut
from ..stock.views import RESERVE_REFUSALS, check_sku, hold_json, level_of, reserve_for
from ..web.errors import error_response
from ..web.openapi import api, check_json_body, documented, parse_body, self_parsing
from ..web.schemas import NO_NUL, Error, RequestBody
from .payloads import is_id, normalize_token
from .signatures import verify_proxy
from .webhooks import webhook_secrets

log = logging.getLogger(__name__)
bp = Blueprint("shopify_proxy", __name__, url_prefix="/proxy")
TAGS = ["storefront (App Proxy)"]
#: How far a signed request's timestamp may be from now (Shopify's own libraries use 90 s).
MAX_SKEW_SECONDS = 120


class ProxyReserveIn(RequestBody):
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY, strict=True)
    cart_token: str = Field(
        min_length=1, max_length=512, pattern=NO_NUL, description="The shopper's cart token"
    )
    hold_id: uuid.UUID | None = Field(
        default=None,
        description="The `_bazico_hold` of the cart line these units join (a quantity "
        "increase, or the same variant added again): the answer's `line_hold` is then that "
        "line's id. Ignored unless it is a live hold of this cart and SKU.",
    )


def _verify() -> Response | None:
    runtime = current_runtime()
    params = request.args.to_dict(flat=False)
    if not verify_proxy(params, webhook_secrets(runtime.settings)):
        return error_response(401, "invalid_signature", "App Proxy signature invalid")
    shop = request.args.get("shop", "")
    expected = runtime.settings.shopify_shop_domain
    if not SHOP_DOMAIN_RE.match(shop) or (expected and shop != expected):
        return error_response(401, "unknown_shop", "requests from this shop are not accepted")
    try:
        stamp = int(request.args.get("timestamp", ""))
    except ValueError:
        return error_response(401, "invalid_signature", "timestamp missing")
    if abs(runtime.clock().timestamp() - stamp) > MAX_SKEW_SECONDS:
        return error_response(401, "stale_request", "signed request too old (or from the future)")
    return None


@bp.before_request
def _verify_then_parse() -> Response | None:
    return _verify() or check_json_body()


@bp.get("/stock/<sku>")
@api.validate(resp=Answers(HTTP_200=StockOut, HTTP_404=Error, HTTP_401=Error), tags=TAGS)
def show(sku: str) -> Any:
    """Availability for the storefront (signed by Shopify's App Proxy)."""
    return level_of(sku)


#: The reserve routes answer as the REST one does (stock/views.py names its refusals once).
RESERVE_ANSWERS = Answers(HTTP_200=ReservationOut, **RESERVE_REFUSALS)


@bp.post("/stock/<sku>/reserve")
@documented(  # the storefront's hot path: parse_body validates with one pydantic call
    api.validate(json=ProxyReserveIn, resp=RESERVE_ANSWERS, tags=TAGS)
)
def reserve(sku: str) -> Any:
    """Hold units for the shopper's cart before the theme adds them: 200, or 409 sold out.

    The hold is pending until a cart webhook lists it (CART_HOLD_GRACE_SECONDS); the theme adds
    the item with the line property ``_bazico_hold`` = ``line_hold``.
    """
    check_sku(sku)
    body = parse_body(ProxyReserveIn)
    if isinstance(body, Response):
        return body
    holder = normalize_token(body.cart_token)
    (hold,) = reserve_for([Line(sku, body.quantity)], holder, None, HoldSource.PROXY, body.hold_id)
    return hold_json(hold)


self_parsing("shopify_proxy.reserve")


def _sku_of_variant(variant_id: str) -> str:
    """The SKU of a variant this service has seen in Shopify's payloads; 404 otherwise (the
    storefront then adds the item as usual: untracked products are not this service's)."""
    plain = variant_id.isascii() and variant_id.isdigit() and len(variant_id) <= 19  # not "²"
    number = int(variant_id) if plain else 0
    sku = None
    if is_id(number):
        with current_runtime().uow(read_only=True) as uow:
            sku = uow.shopify.sku_of_variant(request.args.get("shop", ""), number)
    if sku is None:
        raise UnknownVariant(variant_id[:32])
    return sku


class UnknownVariant(Exception):
    def __init__(self, variant_id: str) -> None:
        self.variant_id = variant_id
        super().__init__(f"unknown variant: {variant_id}")


@bp.errorhandler(UnknownVariant)
def _unknown_variant(exc: UnknownVariant) -> Response:
    return error_response(404, "unknown_variant", str(exc), variant_id=exc.variant_id)


@bp.get("/variants/<variant_id>")
@api.validate(resp=Answers(HTTP_200=StockOut, HTTP_404=Error, HTTP_401=Error), tags=TAGS)
def show_variant(variant_id: str) -> Any:
    """Availability of the SKU a variant carries (signed by Shopify's App Proxy)."""
    return level_of(_sku_of_variant(variant_id))


@bp.post("/variants/<variant_id>/reserve")
@documented(api.validate(json=ProxyReserveIn, resp=RESERVE_ANSWERS, tags=TAGS))
def reserve_variant(variant_id: str) -> Any:
    """As the SKU route, for a variant id: 404 ``unknown_variant`` when its SKU is not known."""
    body = parse_body(ProxyReserveIn)
    if isinstance(body, Response):
        return body
    sku = _sku_of_variant(variant_id)
    holder = normalize_token(body.cart_token)
    (hold,) = reserve_for([Line(sku, body.quantity)], holder, None, HoldSource.PROXY, body.hold_id)
    return hold_json(hold)


self_parsing("shopify_proxy.reserve_variant")
