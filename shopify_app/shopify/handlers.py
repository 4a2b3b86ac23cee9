"""What each webhook topic does to the ledger. Each handler runs inside the delivery's unit of
work, after its receipt was recorded, so effect and receipt commit (or vanish) together.

Lock order everywhere: the cart row first, then SKU rows in sorted order (repository.lock).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..observability.events import holder_hash
from ..orders.model import Order, OrderLine
from ..outbox.kinds import FORWARD_ORDER, REVERSE_ORDER
from ..stock.domain import Hold, HolderLimits, HoldSource, HoldStatus, StockLevel
from ..unit_of_work import UnitOfWork
from .payloads import (
    CART_ATTRIBUTE,
    LineItem,
    PayloadError,
    attribute,
    cart_token_of,
    demand_of,
    is_id,
    line_items,
    list_of,
    normalize_token,
    order_details,
    order_id_of,
    order_name_of,
    parse_time,
)
from .shops import forget_shop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    shop: str
    topic: str
    webhook_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Policy:
    """What handlers apply: hold lifetimes (RESERVATION_TTL_SECONDS, CHECKOUT_HOLD_SECONDS) and the
    per-cart caps (HOLD_MAX_UNITS_PER_SKU, HOLD_MAX_ACTIVE_HOLDS)."""

    cart_ttl: timedelta
    checkout_ttl: timedelta
    limits: HolderLimits = field(default_factory=HolderLimits)  # none unless configured


Handler = Callable[[UnitOfWork, Delivery, Policy], str]
HANDLERS: dict[str, Handler] = {}


def handles(*topics: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for topic in topics:
            HANDLERS[topic] = handler
        return handler

    return register


def _expire_due(uow: UnitOfWork, level: StockLevel) -> None:
    for hold in uow.stock.due_holds(level.sku):
        level.expire(hold)


# --- carts -------------------------------------------------------------------------------------


@handles("carts/create", "carts/update")
def sync_cart(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """Move the cart's holds to match its lines: reserve what is added (as far as stock allows,
    recording the shortfall), release what is removed, and keep the rest alive for another TTL.

    A webhook cannot refuse an add-to-cart (the storefront asks the App Proxy first); it only
    keeps the ledger in step. Deliveries older than the last one applied change nothing.

    Storefront holds are *pending* until a webhook lists them (domain.Hold.pending). Shopify
    sends webhooks behind the theme's calls, so a delivery describing the cart as it was before
    the shopper's last add does not list a hold granted a moment ago; per SKU:

    - the holds the webhook speaks for (those its lines name by their own id with
      ``_bazico_hold``, then those a webhook listed before) are kept up to the units listed,
      the newest given back first;
    - units listed beyond those are covered by the cart's pending holds, which become listed,
      those that joined a named line first (``Hold.line_id``: a quantity increase keeps the
      line's id, so naming it proves nothing about the new units), then oldest first; a pending
      hold the webhook does not need is left alone (it is for a change the webhook has not seen
      yet) and runs out after CART_HOLD_GRACE_SECONDS;
    - only what neither covers is held anew from stock, so nothing is held twice.
    """
    payload = delivery.payload
    token = cart_token_of(payload)
    updated_at = parse_time(payload.get("updated_at"))
    if updated_at is None:
        raise PayloadError("cart without updated_at")
    cart = uow.shopify.lock_cart(delivery.shop, token)
    if cart.ordered or updated_at <= cart.cart_updated_at:
        return "stale"
    context = f"cart {holder_hash(token)}"
    items = line_items(payload, context=context)
    demand = demand_of(items)
    named = named_holds(items)
    # Same order as every reservation: the holder's lock, then the SKU rows, sorted.
    uow.stock.lock_holder(token)
    holds = uow.stock.active_holds_of(token)
    levels = uow.stock.lock(set(demand) | {h.sku for h in holds}, missing_ok=True)
    _log_untracked(demand, levels, context)
    limits = policy.limits
    # First give back what the cart no longer wants (and what ran out), so the units and the
    # places it frees count before anything new is held...
    covered: dict[str, int] = {}
    for sku in sorted(levels):
        mine = [h for h in holds if h.sku == sku]
        covered[sku] = _follow(
            uow, levels[sku], mine, demand.get(sku, 0), named.get(sku, set()), ttl=policy.cart_ttl
        )
    places = sum(1 for h in holds if h.status is HoldStatus.ACTIVE)
    # ...then hold what is missing, within stock and within the per-cart caps.
    shortfalls: dict[str, tuple[int, dict[str, str]]] = {}
    for sku in sorted(levels):
        need = demand.get(sku, 0) - covered[sku]
        if need <= 0:
            continue
        allowed = limits.grantable(covered[sku], need)
        capped_by = "units_per_sku"
        if allowed and limits.max_active_holds is not None and places >= limits.max_active_holds:
            allowed, capped_by = 0, "active_holds"  # a new hold would be one place too many
        granted = _grant(uow, levels[sku], allowed, holder=token, ttl=policy.cart_ttl)
        places += 1 if granted else 0
        if granted < allowed:
            shortfalls[sku] = (need - granted, {"outcome": "sold_out"})
        elif granted < need:
            shortfalls[sku] = (need - granted, {"outcome": "hold_limit", "limit": capped_by})
    cart.cart_updated_at = updated_at
    uow.shopify.save_cart(cart, {sku: missing for sku, (missing, _) in shortfalls.items()})
    uow.shopify.remember_variants(delivery.shop, _variants(items, levels))
    for sku, (missing, why) in shortfalls.items():
        # A webhook cannot refuse an add-to-cart; the units it could not hold are recorded.
        uow.record(
            "reservation.rejected",
            level=logging.WARNING,
            skus=[sku],
            quantity=missing,
            source="cart",
            holder_hash=holder_hash(token),
            **why,
        )
    return "applied"


def named_holds(items: list[LineItem]) -> dict[str, set[uuid.UUID]]:
    """Per SKU, the hold ids the lines of that SKU name (a claim: only the cart's own count)."""
    named: dict[str, set[uuid.UUID]] = {}
    for item in items:
        if item.hold_id is not None:
            named.setdefault(item.sku, set()).add(item.hold_id)
    return named


def _variants(items: list[LineItem], levels: dict[str, StockLevel]) -> dict[int, str]:
    """Variant id → SKU of the lines whose SKU is tracked (the App Proxy's variant routes)."""
    return {i.variant_id: i.sku for i in items if i.variant_id is not None and i.sku in levels}


def _follow(
    uow: UnitOfWork,
    level: StockLevel,
    holds: list[Hold],
    wanted: int,
    named: set[uuid.UUID],
    *,
    ttl: timedelta,
) -> int:
    """Match the cart's holds on one SKU to the ``wanted`` units a webhook lists (sync_cart's
    rule); returns the units they cover, which are not to be held again."""
    now, until = uow.now, uow.now + ttl
    live = []
    for hold in holds:
        if hold.is_due(now):
            level.expire(hold)
        else:
            live.append(hold)
    spoken = sorted(
        (h for h in live if h.id in named or not h.pending),
        key=lambda h: (not h.named_by(named), h.created_at, str(h.id)),
    )
    spoken_ids = {h.id for h in spoken}
    covered = 0
    for hold in spoken:  # oldest (and named) first, so the newest are the ones given back
        room = wanted - covered
        if room <= 0:
            level.release(hold)
            continue
        if hold.quantity > room:
            level.release_part(hold, hold.quantity - room)  # fewer units: same hold, same id
        covered += hold.quantity
        hold.list_in_cart(now, until)
    rest = (h for h in live if h.id not in spoken_ids)
    for hold in sorted(rest, key=lambda h: (not h.named_by(named), h.created_at, str(h.id))):
        room = wanted - covered
        if room <= 0:
            break  # pending, and not (yet) in the cart as Shopify last described it
        if hold.quantity > room:
            # Covers more than the webhook lists: it is for a change still to come. It stays
            # pending, and what it would cover is not held a second time.
            covered += room
            break
        covered += hold.quantity
        hold.list_in_cart(now, until)
    return covered


def _grant(uow: UnitOfWork, level: StockLevel, need: int, *, holder: str, ttl: timedelta) -> int:
    """Hold up to ``need`` more units of one SKU, as far as available allows; the units held."""
    if need <= 0:
        return 0
    if level.available < need:
        _expire_due(uow, level)
    granted = min(need, max(level.available, 0))
    if granted:
        uow.stock.add_hold(
            level.reserve(granted, holder=holder, source=HoldSource.CART, now=uow.now, ttl=ttl)
        )
    return granted


def _log_untracked(demand: dict[str, int], levels: dict[str, StockLevel], context: str) -> None:
    untracked = sorted(set(demand) - levels.keys())
    if untracked:
        log.info("%s: SKUs not tracked here, skipped: %s", context, ", ".join(untracked))


# --- checkouts -----------------------------------------------------------------------------


@handles("checkouts/create", "checkouts/update")
def extend_for_checkout(uow: UnitOfWork, delivery: Delivery, policy: Policy) -> str:
    """The shopper reached checkout: keep the cart's holds for CHECKOUT_HOLD_SECONDS (a pending
    storefront hold only when the checkout has its SKU; else it waits for its cart webhook)."""
    token = normalize_token(delivery.payload.get("cart_token"))
    if token is None:
        return "no_cart"
    cart = uow.shopify.lock_cart(delivery.shop, token)
    if cart.ordered:
        return "stale"
    cart.checkout_token = normalize_token(delivery.payload.get("token")) or cart.checkout_token
    uow.shopify.save_cart(cart)
    items = line_items(delivery.payload, context=f"checkout of cart {holder_hash(token)}")
    listed, named = demand_of(items), named_holds(items)
    holds = uow.stock.active_holds_of(token)
    levels = uow.stock.lock({h.sku for h in holds})
    until = uow.now + policy.checkout_ttl
    for hold in holds:
        if hold.is_due(uow.now):
            levels[hold.sku].expire(hold)  # too late: the unit may be someone else's by now
        elif not hold.pending:
            hold.extend(until)
        elif hold.sku in listed or hold.named_by(named.get(hold.sku, set())):
            hold.list_in_cart(uow.now, until)  # the checkout has the line: so has the cart
    return "applied"


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
    _log_untracked(demand_of(items), levels, f"order {order.order_id}")
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
    uow.shopify.remember_variants(delivery.shop, _variants(items, levels))
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
            _expire_due(uow, level)
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
