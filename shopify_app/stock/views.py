"""The ``/stock`` REST API: turn a request into a service call, and a result or error into JSON."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, request
from spectree import Response as Answers

from ..observability.events import emit, holder_hash
from ..ratelimit import RateLimited
from ..runtime import current_runtime
from ..web.auth import require_bearer
from ..web.errors import error_response
from ..web.openapi import (
    BEARER,
    api,
    check_json_body,
    documented,
    link,
    parse_body,
    self_parsing,
)
from ..web.schemas import Error, ValidationFailed
from . import services
from .domain import (
    AlreadyConfirmed,
    Hold,
    HoldGone,
    HoldLimitExceeded,
    HoldNotFound,
    HoldSource,
    HoldStatus,
    Line,
    OutOfStock,
    UnknownSku,
)
from .schemas import (
    ConfirmIn,
    ConfirmOut,
    LimitError,
    OutOfStockError,
    ReservationOut,
    ReservationsError,
    ReservationsOut,
    ReserveIn,
    ReserveLinesIn,
    SetStockIn,
    StockOut,
)

bp = Blueprint("stock", __name__, url_prefix="/stock")
TAGS = ["stock"]
MAX_SKU_LENGTH = 255


@bp.before_request
def _authenticate_then_parse() -> Response | None:
    return require_bearer(current_runtime().settings.stock_api_token) or check_json_body()


# --- errors of the domain, as the README's HTTP API names them ---------------------------------


@bp.app_errorhandler(UnknownSku)
def _unknown_sku(exc: UnknownSku) -> Response:
    return error_response(404, "unknown_sku", str(exc), skus=exc.skus)


@bp.app_errorhandler(OutOfStock)
def _out_of_stock(exc: OutOfStock) -> Response:
    return error_response(
        409,
        "out_of_stock",
        "Esgotado: não há unidades suficientes deste produto.",
        available=min(exc.available.values()),
        shortfalls=exc.available,
    )


@bp.app_errorhandler(RateLimited)
def _rate_limited(exc: RateLimited) -> Response:
    response = error_response(
        429,
        "rate_limited",
        f"Muitas tentativas em pouco tempo; tente de novo em {exc.retry_after} s.",
        limit=str(exc.limit),
        per=exc.key,
        retry_after=exc.retry_after,
    )
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


@bp.app_errorhandler(HoldLimitExceeded)
def _hold_limit(exc: HoldLimitExceeded) -> Response:
    if exc.limit == "units_per_sku":
        message = f"Limite de {exc.maximum} unidades deste produto por carrinho."
    else:
        message = f"Limite de {exc.maximum} reservas ativas por carrinho."
    extra: dict[str, Any] = {"limit": exc.limit, "maximum": exc.maximum, "held": exc.held}
    if exc.retry_after is None:  # more than one cart may ever hold: retrying cannot help
        return error_response(422, "hold_limit_exceeded", message, skus=exc.skus, **extra)
    message += f" Tente de novo em {exc.retry_after} s."  # when the cart's own holds run out
    response = error_response(
        429, "hold_limit_exceeded", message, skus=exc.skus, retry_after=exc.retry_after, **extra
    )
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


@bp.app_errorhandler(HoldNotFound)
def _hold_not_found(exc: HoldNotFound) -> Response:
    return error_response(404, "reservation_not_found", str(exc), reservation_ids=exc.ids)


@bp.app_errorhandler(HoldGone)
def _hold_gone(exc: HoldGone) -> Response:
    released = all(h.status is HoldStatus.RELEASED for h in exc.holds)
    code = "reservation_released" if released else "reservation_expired"
    return error_response(410, code, str(exc), reservation_ids=exc.ids)


@bp.app_errorhandler(AlreadyConfirmed)
def _already_confirmed(exc: AlreadyConfirmed) -> Response:
    return error_response(409, "already_confirmed", str(exc), reservation_ids=exc.ids)


# --- helpers --------------------------------------------------------------------------------


def check_sku(sku: str) -> None:
    if len(sku) > MAX_SKU_LENGTH:
        raise UnknownSku([sku[:MAX_SKU_LENGTH] + "…"])
    if "\x00" in sku:  # no SKU can hold NUL (PostgreSQL text cannot), so none is tracked
        raise UnknownSku([sku.replace("\x00", "\\x00")])


def reserve_for(
    lines: list[Line],
    holder: str | None,
    ttl_seconds: int | None,
    source: HoldSource = HoldSource.API,
    line_ref: uuid.UUID | None = None,
) -> list[Hold]:
    """Reserve through the service layer with this process's unit of work and default TTL."""
    runtime = current_runtime()
    rates = runtime.rate_limits
    counting = None
    try:
        if rates.enabled:
            # The shopper's address is known on App Proxy calls (Shopify forwards it); a REST
            # caller is a server holding the API token, relaying many shoppers: it is limited
            # by cart. On the database's counters the reservation's own transaction counts them.
            ip = rates.client_ip(request, via_shopify=True) if source is HoldSource.PROXY else None
            counting = rates.counting("reserve", ip=ip, cart=holder)
            if counting is None:
                rates.check("reserve", ip=ip, cart=holder)
        ttl = timedelta(seconds=ttl_seconds or runtime.settings.reservation_ttl_seconds)
        if source is HoldSource.PROXY:
            # Pending until a cart webhook lists it (domain.Hold.pending): it lives for the
            # grace window, then as long as any cart hold once listed.
            ttl = min(ttl, timedelta(seconds=runtime.settings.cart_hold_grace_seconds))
        return runtime.reservations.reserve(
            lines,
            holder=holder,
            source=source,
            ttl=ttl,
            limits=runtime.hold_limits,
            line_ref=line_ref,
            counting=counting,
        )
    except RateLimited as exc:
        emit(
            "reservation.rejected",
            skus=sorted({line.sku for line in lines}),
            quantity=sum(line.quantity for line in lines),
            source=source.value,
            holder_hash=holder_hash(holder),
            outcome="rate_limited",
            limit=exc.key,
        )
        raise


def hold_json(hold: Hold) -> dict[str, Any]:
    return {
        "reservation_id": str(hold.id),
        "sku": hold.sku,
        "quantity": hold.quantity,
        "expires_at": hold.expires_at.isoformat(),
        "line_hold": str(hold.line_id),
    }


def level_of(sku: str) -> dict[str, Any]:
    """The JSON figures of one SKU as buyers see them; UnknownSku (404) if it is not tracked."""
    check_sku(sku)
    view = current_runtime().reservations.level(sku)
    if view is None:
        raise UnknownSku([sku])
    return level_json(view)


def level_json(view: services.LevelView) -> dict[str, Any]:
    return {
        "sku": view.sku,
        "on_hand": view.on_hand,
        "reserved": view.reserved,
        "committed": view.committed,
        "available": view.available,
    }


COMMON = {"HTTP_401": Error, "HTTP_413": Error, "HTTP_400": Error, "HTTP_422": ValidationFailed}
#: What the two reserve routes answer besides their 200: sold out, unknown SKU, over a limit.
RESERVE_REFUSALS = {
    "HTTP_409": OutOfStockError,
    "HTTP_404": Error,
    "HTTP_429": LimitError,
    **COMMON,
}

# --- routes ---------------------------------------------------------------------------------


@bp.get("/<sku>")
@documented(  # the hot read: its answer is built from typed figures
    api.validate(
        resp=Answers(HTTP_200=StockOut, HTTP_404=Error, HTTP_401=Error), tags=TAGS, security=BEARER
    )
)
def show(sku: str) -> Any:
    """The SKU's figures; holds past their time already excluded."""
    return level_of(sku)


@bp.put("/<sku>")
@api.validate(
    json=SetStockIn, resp=Answers(HTTP_200=StockOut, **COMMON), tags=TAGS, security=BEARER
)
def set_stock(sku: str) -> Any:
    """Manual stock count: set on_hand (creates the SKU if new); audited in the movement ledger."""
    # 422s carry ``details`` (ValidationFailed): spectree checks the answer and would 500 without.
    if len(sku) > MAX_SKU_LENGTH:
        message = f"sku longer than {MAX_SKU_LENGTH} characters"
        return error_response(422, "invalid_request", message, details=[])
    if "\x00" in sku:
        return error_response(422, "invalid_request", "sku contains a NUL character", details=[])
    # spectree's validate sets request.context (the checked body); Flask's Request lacks it.
    body: SetStockIn = request.context.json  # type: ignore[attr-defined]
    view = services.set_on_hand(current_runtime().uow(), sku, body.on_hand, reference="api")
    return level_json(view)


@bp.post("/<sku>/reserve")
@documented(  # the hot path: parse_body validates with one pydantic call
    api.validate(
        json=ReserveIn,
        resp=Answers(HTTP_200=ReservationOut, **RESERVE_REFUSALS),
        tags=TAGS,
        security=BEARER,
    )
)
def reserve(sku: str) -> Any:
    """Hold `quantity` units of one SKU: 200 with the hold, or 409 when not enough is available."""
    check_sku(sku)
    body = parse_body(ReserveIn)
    if isinstance(body, Response):
        return body
    (hold,) = reserve_for([Line(sku, body.quantity)], body.holder, body.ttl_seconds)
    return hold_json(hold)


self_parsing("stock.reserve")


@bp.post("/reserve")
@api.validate(
    json=ReserveLinesIn,
    resp=Answers(HTTP_200=ReservationsOut, **RESERVE_REFUSALS),
    tags=TAGS,
    security=BEARER,
)
def reserve_lines() -> Any:
    """Hold several SKUs at once, all or nothing (one hold per SKU; repeated SKUs are summed)."""
    # spectree's validate sets request.context (the checked body); Flask's Request lacks it.
    body: ReserveLinesIn = request.context.json  # type: ignore[attr-defined]
    lines = [Line(line.sku, line.quantity) for line in body.lines]
    holds = reserve_for(lines, body.holder, body.ttl_seconds)
    return {"reservations": [hold_json(h) for h in holds]}


@bp.post("/confirm")
@api.validate(
    json=ConfirmIn,
    resp=Answers(
        HTTP_200=ConfirmOut,
        HTTP_404=ReservationsError,
        HTTP_409=ReservationsError,
        HTTP_410=ReservationsError,
        **COMMON,
    ),
    tags=TAGS,
    security=BEARER,
)
def confirm() -> Any:
    """Turn holds into sold units; 410 if one expired (nothing changes); same order again: 200."""
    # spectree's validate sets request.context (the checked body); Flask's Request lacks it.
    body: ConfirmIn = request.context.json  # type: ignore[attr-defined]
    holds = services.confirm(current_runtime().uow(), body.ids, order_ref=body.order_id)
    return {
        "status": "confirmed",
        "order_id": body.order_id,
        "reservations": [hold_json(h) for h in holds],
    }


@bp.delete("/reservations/<reservation_id>")
@api.validate(
    resp=Answers(
        HTTP_204=None, HTTP_404=ReservationsError, HTTP_409=ReservationsError, HTTP_401=Error
    ),
    tags=TAGS,
    security=BEARER,
)
def release(reservation_id: str) -> Any:
    """Give a hold's units back: 204 (also when it had already ended); 409 if it was confirmed."""
    try:
        hold_id = uuid.UUID(reservation_id)
    except ValueError:
        return error_response(
            404, "reservation_not_found", "no such reservation", reservation_ids=[reservation_id]
        )
    services.release(current_runtime().uow(), hold_id)
    return Response(status=204)


# --- OpenAPI links: what a client (or a stateful fuzzer) does next with an answer ------------

_SKU = {"sku": "$response.body#/sku"}
_HOLD = "$response.body#/reservation_id"
link("/stock/{sku}", "put", 200, "Show", "get__stock_{sku}", parameters=_SKU)
link("/stock/{sku}", "put", 200, "Reserve", "post__stock_{sku}_reserve", parameters=_SKU)
link("/stock/{sku}/reserve", "post", 200, "Show", "get__stock_{sku}", parameters=_SKU)
link(
    "/stock/{sku}/reserve",
    "post",
    200,
    "Confirm",
    "post__stock_confirm",
    request_body={"reservation_id": _HOLD},
)
link(
    "/stock/{sku}/reserve",
    "post",
    200,
    "Release",
    "delete__stock_reservations_{reservation_id}",
    parameters={"reservation_id": _HOLD},
)
link(
    "/stock/confirm",
    "post",
    200,
    "Release",
    "delete__stock_reservations_{reservation_id}",
    parameters={"reservation_id": "$response.body#/reservations/0/reservation_id"},
)
