"""Orders, the app's life cycle and privacy: each topic parsed once, then one use case (orders
are sold and cancelled by orders/services.py; the cart and checkout topics are in ``carts.py``;
the dispatch table in ``topics.py``). Importing this module registers every topic's handler.

Lock order everywhere: the cart row, then the holder, then the SKU rows in sorted order.
"""

from __future__ import annotations

import logging
import uuid

from ..orders import adjustments, services
from ..orders.services import Sale, demand_of, named_holds
from ..stock.domain import HoldStatus
from ..unit_of_work import UnitOfWork
from . import carts  # noqa: F401 - registers the carts/* and checkouts/* handlers
from .carts import untracked_variants, variant_ids, variants_of
from .payloads import (
    CART_ATTRIBUTE,
    attribute,
    edit_adjustment,
    is_id,
    is_test,
    line_items,
    list_of,
    normalize_token,
    order_details,
    order_id_of,
    order_name_of,
    payment_pending,
    refund_adjustment,
)
from .ports import CartRaced, DuplicateDelivery
from .shops import forget_shop
from .topics import HANDLERS, Delivery, Policy, handles, log_untracked

__all__ = ["HANDLERS", "Delivery", "Policy", "process"]

log = logging.getLogger(__name__)


def process(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """Apply one verified delivery exactly once; returns what happened (for logs and tests)."""
    try:
        return _apply(uow, delivery, policy)
    except CartRaced:
        # A concurrent first delivery of the cart inserted its row while this one was taking
        # its locks; everything was rolled back, and the row is there now.
        return _apply(uow, delivery, policy)


def _apply(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    handler = HANDLERS.get(delivery.topic)
    with uow:
        if not uow.shopify.record_receipt(delivery.shop, delivery.webhook_id, delivery.topic):
            return "duplicate"
        outcome = handler(uow, delivery, policy) if handler else "ignored_topic"
        try:
            uow.commit()
        except DuplicateDelivery:
            return "duplicate"  # a twin committed first: nothing of this one stays
    return outcome


# --- orders --------------------------------------------------------------------------------


@handles("orders/create", "orders/paid")
def confirm_order(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """Sell the order (orders/services.py ``sell``) from the cart it was bought from.

    ``orders/paid`` runs the same code, so an order whose ``orders/create`` never arrived is
    still confirmed; whichever comes second finds the order recorded and does nothing, except
    that ``orders/paid`` sends an order sold unpaid (``financial_status`` ``pending``: boleto,
    PIX) on to Bling. A test order (``test: true``) never reaches Bling.
    """
    payload = delivery.payload
    order_id = order_id_of(payload)
    paid = delivery.topic == "orders/paid" or not payment_pending(payload)
    items = line_items(payload, context=f"order {order_id}")
    token = _holder_of(uow, delivery, named_holds(items))
    # Lock order: the cart row first, as every cart webhook does.
    cart = (
        uow.shopify.lock_cart(delivery.shop, token, variant_ids(items))
        if token is not None
        else None
    )
    sale = Sale(
        delivery.shop,
        order_id,
        order_name_of(payload),
        token,
        items,
        order_details(payload),
        cancelled=bool(payload.get("cancelled_at")),
        paid=paid,
        test=is_test(payload),
    )
    result = services.sell(uow, sale)
    if result.outcome in ("duplicate_order", "paid"):
        return result.outcome
    log_untracked(demand_of(items), result.tracked, f"order {order_id}")
    if cart is not None:
        cart.ordered = True
        uow.shopify.save_cart(cart)
    uow.shopify.remember_variants(
        delivery.shop,
        variants_of(items, result.tracked),
        untracked_variants(items, result.tracked),
    )
    return result.outcome


def _holder_of(uow: UnitOfWork, delivery: Delivery, named: dict[str, set[uuid.UUID]]) -> str | None:
    """The cart the order was bought from: its ``cart_token``, the ``_bazico_cart`` attribute,
    the cart its checkout was made from, or the one cart whose live holds its lines name."""
    payload = delivery.payload
    token = normalize_token(payload.get("cart_token")) or attribute(payload, CART_ATTRIBUTE)
    if token is None:
        checkout = normalize_token(payload.get("checkout_token"))
        if checkout is not None:
            token = uow.shopify.cart_token_of_checkout(delivery.shop, checkout)
    if token is None and named:
        # Shopify left the cart unnamed, but the lines carry the hold ids the storefront got
        # for its cart (unguessable): their cart is the order's. Several carts: trust none.
        ids = set().union(*named.values())
        found = uow.stock.holds_by_id(ids).values()
        holders = {h.holder for h in found if h.status is HoldStatus.ACTIVE and h.holder}
        if len(holders) == 1:
            (token,) = holders
    return token


@handles("orders/cancelled")
def cancel_order(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """Give back what Bling has not heard of yet; mark the rest for reversal in Bling."""
    payload = delivery.payload
    return services.cancel(uow, delivery.shop, order_id_of(payload), order_name_of(payload))


@handles("refunds/create")
def refund_order(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """A refund's restocked lines go back to the ledger (and to Bling's stock), once per refund
    id (orders/adjustments.py)."""
    change = refund_adjustment(delivery.shop, delivery.payload)
    return _adjusted(adjustments.adjust(uow, change))


@handles("orders/edited")
def edit_order(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """An order edit's added and removed units move the ledger (and Bling), once per edit."""
    change = edit_adjustment(delivery.shop, delivery.payload)
    return _adjusted(adjustments.adjust(uow, change))


def _adjusted(result: adjustments.AdjustmentResult) -> str:
    if result.unknown_lines:
        # Lines the order lacks and the payload names no SKU for: the EDIT_LINES job reads them
        # from Shopify and applies them (shopify/order_edits.py).
        return "adjusted_partly"
    return result.outcome


# --- app life cycle and privacy --------------------------------------------------------------


@handles("checkouts/delete", "orders/fulfilled")
def acknowledge(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """Nothing to do: a deleted checkout's holds run out on their own; fulfilment is Bling's."""
    return "acknowledged"


@handles("app/uninstalled")
def app_uninstalled(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """The merchant removed the app: its tokens are useless now, so they are erased."""
    forget_shop(uow, delivery.shop)
    return "uninstalled"


@handles("customers/data_request")
def customer_data_request(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """We hold no customer profile; the orders asked about are listed for the merchant."""
    requested = list_of(delivery.payload, "orders_requested")
    held = [i for i in requested if is_id(i) and uow.orders.get(delivery.shop, i)]
    log.info("privacy.data_request orders_requested=%d orders_held=%s", len(requested), held)
    return "answered"


@handles("customers/redact")
def customer_redact(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """Forget the cart tokens that tie this customer's orders to their carts and holds."""
    ids = [i for i in list_of(delivery.payload, "orders_to_redact") if is_id(i)]
    tokens = uow.orders.forget_customers(delivery.shop, ids)
    uow.shopify.forget_carts(delivery.shop, tokens)
    uow.stock.forget_holders(tokens)
    return "redacted"


@handles("shop/redact")
def shop_redact(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """48 h after uninstall: erase the shop's carts, orders, deliveries and hold holders."""
    uow.orders.erase_shop(delivery.shop)
    uow.shopify.erase_shop(delivery.shop)
    uow.stock.forget_holders(None)
    return "redacted"
