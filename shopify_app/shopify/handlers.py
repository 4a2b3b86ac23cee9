"""Orders, the app's life cycle and privacy: what those webhook topics do to the ledger and the
order records (the cart and checkout topics are in ``carts.py``; the dispatch table in
``topics.py``). Importing this module registers every topic's handler.

Lock order everywhere: the cart row, then the holder, then the SKU rows in sorted order.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from ..observability.events import holder_hash
from ..orders.model import Order, OrderLine
from ..outbox.kinds import FORWARD_ORDER, REVERSE_ORDER
from ..stock.domain import Hold, HoldStatus, StockLevel
from ..unit_of_work import UnitOfWork
from . import carts  # noqa: F401 - registers the carts/* and checkouts/* handlers
from .carts import named_holds, variants_of
from .payloads import (
    CART_ATTRIBUTE,
    LineItem,
    attribute,
    demand_of,
    is_id,
    line_items,
    list_of,
    normalize_token,
    order_details,
    order_id_of,
    order_name_of,
)
from .shops import forget_shop
from .topics import HANDLERS, Delivery, Policy, expire_due_holds, handles, log_untracked

__all__ = ["HANDLERS", "Delivery", "Policy", "enqueue_order_job"]

log = logging.getLogger(__name__)


# --- orders --------------------------------------------------------------------------------


@handles("orders/create", "orders/paid")
def confirm_order(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """Sell the order's lines: consume the cart's holds, take uncovered units from available,
    and record an oversell loudly when even that falls short (Shopify has sold it already).

    ``orders/paid`` runs the same code, so an order whose ``orders/create`` never arrived is
    still confirmed; whichever comes second finds the order recorded and does nothing.
    """
    payload = delivery.payload
    order_id = order_id_of(payload)
    items = line_items(payload, context=f"order {order_id}")
    named = named_holds(items)
    order = Order(
        delivery.shop,
        order_id,
        order_name_of(payload),
        _holder_of(uow, delivery, named),
        details=order_details(payload),
    )
    reference = f"shopify:{order.order_id}"
    if order.cart_token is not None:
        cart = uow.shopify.lock_cart(delivery.shop, order.cart_token)
    if not uow.shopify.claim_order(order):
        return "duplicate_order"
    holds = uow.stock.active_holds_of(order.cart_token) if order.cart_token else []
    _log_foreign_names(named, holds, order)
    # Holds the storefront confirmed through POST /stock/confirm for this very order are sold
    # already: they cover their units, which must not be taken from available a second time.
    early = (
        uow.stock.holds_confirmed_for(order.cart_token, {str(order.order_id), order.name or ""})
        if order.cart_token
        else []
    )
    levels = uow.stock.lock({i.sku for i in items} | {h.sku for h in holds}, missing_ok=True)
    log_untracked(demand_of(items), levels, f"order {order.order_id}")
    unused = {h.id: h for h in holds}
    for sku, quantity in demand_of(items).items():
        if sku in levels:
            confirmed = sum(h.quantity for h in early if h.sku == sku)
            first = named.get(sku, set())
            sold = _sell(uow, levels[sku], quantity, unused, reference, confirmed, first)
            order.lines.extend(_split(sold, [i for i in items if i.sku == sku]))
    for hold in unused.values():  # the cart is done: nothing of it stays held
        if hold.sku in levels and hold.status is HoldStatus.ACTIVE:
            levels[hold.sku].release(hold)
    if order.cart_token is not None:
        cart.ordered = True
        uow.shopify.save_cart(cart)
    uow.shopify.remember_variants(delivery.shop, variants_of(items, levels))
    if order.oversold:
        oversold = {line.sku: line.oversold for line in order.lines if line.oversold}
        uow.record(
            "order.oversold",
            level=logging.ERROR,
            shop=order.shop,
            order=order.order_id,
            name=order.name,
            lines=oversold,
            units=sum(oversold.values()),
        )
    if payload.get("cancelled_at"):
        # Created and cancelled before we heard of it: record both, sell nothing.
        _cancel(uow, levels, order, reference)
        uow.shopify.save_order(order)
        return "cancelled"
    uow.shopify.save_order(order)
    uow.record(
        "order.confirmed",
        channel="shopify",
        shop=order.shop,
        order=order.order_id,
        name=order.name,
        units=sum(line.quantity for line in order.lines),
        from_holds=sum(line.from_holds for line in order.lines),
        holder_hash=holder_hash(order.cart_token),
    )
    if order.lines:
        # Same transaction as the sale: the order reaches Bling if and only if it was confirmed
        # here. An order of untracked products only has nothing of Bling's stock to post.
        enqueue_order_job(uow, FORWARD_ORDER, order)
    return "confirmed"


def enqueue_order_job(uow: UnitOfWork, kind: str, order: Order) -> None:
    """Queue a Bling job for ``order`` (outbox/kinds.py: payload and key), in ``uow``'s txn."""
    key = f"{order.shop}:{order.order_id}"
    payload = {"shop": order.shop, "order_id": order.order_id}
    uow.enqueue(kind, key, payload)


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


def _log_foreign_names(named: dict[str, set[uuid.UUID]], holds: list[Hold], order: Order) -> None:
    """Hold ids named on the order's lines that are not live holds of its cart are ignored: made
    up, another cart's, or already gone. Never consumed, only logged."""
    own = {(h.sku, i) for h in holds for i in (h.id, h.line_id)}
    foreign = sum(1 for sku, ids in named.items() for i in ids if (sku, i) not in own)
    if foreign:
        log.info("order %s: %d named hold(s) not of its cart; ignored", order.order_id, foreign)


@dataclass
class _Sold:
    from_holds: int
    from_available: int
    oversold: int


def _sell(
    uow: UnitOfWork,
    level: StockLevel,
    quantity: int,
    unused: dict[Any, Hold],
    reference: str,
    confirmed: int = 0,
    first: set[uuid.UUID] | frozenset[uuid.UUID] = frozenset(),
) -> _Sold:
    """Sell ``quantity`` of one SKU (all the order's lines of it together); ``confirmed`` units
    of it were committed for this order already (POST /stock/confirm). The cart's holds named
    by the lines (``first``) are used first, then its other holds, oldest first."""
    from_holds = min(confirmed, quantity)
    if confirmed > quantity:
        log.warning(
            "order.confirmed_more_than_ordered sku=%s order=%s confirmed=%d ordered=%d",
            level.sku,
            reference,
            confirmed,
            quantity,
        )
    remaining = quantity - from_holds
    mine = sorted(
        (h for h in unused.values() if h.sku == level.sku),
        key=lambda h: (not h.named_by(first), h.created_at, str(h.id)),
    )
    for hold in mine:
        del unused[hold.id]
        if hold.is_due(uow.now):
            level.expire(hold)
        elif remaining <= 0:
            level.release(hold)
        else:
            if hold.quantity > remaining:
                # Holds more than the lines need: the rest goes back, the hold covers them.
                level.release_part(hold, hold.quantity - remaining)
            level.confirm(hold, reference)
            remaining -= hold.quantity
            from_holds += hold.quantity
    oversold = 0
    if remaining:
        if level.available < remaining:
            expire_due_holds(uow, level)
        oversold = level.commit(remaining, reference)
    return _Sold(from_holds, remaining, oversold)


def _split(sold: _Sold, items: list[LineItem]) -> list[OrderLine]:
    """Attribute a SKU's figures to its lines in order: holds first, the oversold part last."""
    lines = []
    holds_left, oversold_left = sold.from_holds, sold.oversold
    for position, item in enumerate(items):
        from_holds = min(item.quantity, holds_left)
        holds_left -= from_holds
        from_available = item.quantity - from_holds
        # The oversold units are the last ones sold, so they sit on the last lines.
        later = sum(i.quantity for i in items[position + 1 :])
        oversold = min(from_available, max(0, oversold_left - later))
        oversold_left -= oversold
        lines.append(
            OrderLine(
                item.line_id,
                item.sku,
                item.quantity,
                from_holds,
                from_available,
                oversold,
                item.unit_price_cents,
                item.title,
            )
        )
    return lines


def _cancel(uow: UnitOfWork, levels: dict[str, StockLevel], order: Order, reference: str) -> None:
    for line in order.cancel():  # Bling never had these units: sellable again
        levels[line.sku].uncommit(line.quantity, reference)
    if order.needs_reversal:  # Bling has it: the worker must reverse it there
        enqueue_order_job(uow, REVERSE_ORDER, order)


@handles("orders/cancelled")
def cancel_order(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """Give back what Bling has not heard of yet; mark the rest for reversal in Bling."""
    order_id = order_id_of(delivery.payload)
    order = uow.shopify.order(delivery.shop, order_id, lock=True)
    if order is None:
        # Cancelled before its orders/create arrived: a tombstone makes that one a no-op.
        uow.shopify.claim_order(
            Order.tombstone(delivery.shop, order_id, order_name_of(delivery.payload))
        )
        return "unknown_order"
    if order.cancelled:
        return "already_cancelled"
    levels = uow.stock.lock({line.sku for line in order.lines})
    _cancel(uow, levels, order, f"shopify:{order_id}")
    uow.shopify.save_order(order)
    uow.record(
        "order.cancelled", shop=order.shop, order=order_id, forward_status=order.forward_status
    )
    return "cancelled"


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
    held = [i for i in requested if is_id(i) and uow.shopify.order(delivery.shop, i)]
    log.info("privacy.data_request orders_requested=%d orders_held=%s", len(requested), held)
    return "answered"


@handles("customers/redact")
def customer_redact(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """Forget the cart tokens that tie this customer's orders to their carts and holds."""
    ids = [i for i in list_of(delivery.payload, "orders_to_redact") if is_id(i)]
    tokens = uow.shopify.forget_cart_tokens(delivery.shop, ids)
    uow.stock.forget_holders(tokens)
    return "redacted"


@handles("shop/redact")
def shop_redact(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """48 h after uninstall: erase the shop's carts, orders, deliveries and hold holders."""
    uow.shopify.erase_shop(delivery.shop)
    uow.stock.forget_holders(None)
    return "redacted"
