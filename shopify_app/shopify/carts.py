"""Carts and checkouts: the cart webhooks keep each cart's holds in step with its lines, by the
storefront hold rule (``sync_cart``); a checkout keeps them for CHECKOUT_HOLD_SECONDS.

The storefront asks for a hold before it adds to the cart (the App Proxy); a webhook cannot
refuse an add-to-cart, it only keeps the ledger in step, recording what it could not hold.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from datetime import timedelta

from ..observability.events import holder_hash
from ..orders.services import demand_of, named_holds
from ..stock.domain import Hold, HoldSource, HoldStatus, StockLevel
from ..stock.services import expire_due_holds
from ..unit_of_work import UnitOfWork
from .payloads import (
    LineItem,
    PayloadError,
    cart_token_of,
    line_items,
    normalize_token,
    parse_time,
)
from .topics import Delivery, Policy, handles, log_untracked

log = logging.getLogger(__name__)


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
    context = f"cart {holder_hash(token)}"
    items = line_items(payload, context=context)
    demand = demand_of(items)
    named = named_holds(items)
    # The fixed order: the cart's row, the holder's lock, then the SKU rows, sorted, and the
    # holds read under those locks; all in one round trip on PostgreSQL (the cart's answer
    # waits for the others'). A stale delivery has taken them for nothing, and gives them back.
    cart_of = uow.shopify.lock_cart_ahead(delivery.shop, token, variant_ids(items))
    levels, holds = uow.stock.lock_for_holder(token, demand)
    cart = cart_of()
    if cart.ordered or updated_at <= cart.cart_updated_at:
        return "stale"
    log_untracked(demand, levels, context)
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
    uow.shopify.remember_variants(
        delivery.shop, variants_of(items, levels), untracked_variants(items, levels)
    )
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


def variant_ids(items: list[LineItem]) -> set[int]:
    """The variants the lines name (what ``remember_variants`` will be given)."""
    return {i.variant_id for i in items if i.variant_id is not None}


def variants_of(items: list[LineItem], tracked: Collection[str]) -> dict[int, str]:
    """Variant id → SKU of the lines whose SKU is tracked (the App Proxy's variant routes)."""
    return {i.variant_id: i.sku for i in items if i.variant_id is not None and i.sku in tracked}


def untracked_variants(items: list[LineItem], tracked: Collection[str]) -> set[int]:
    """Variants whose lines carry a SKU the ledger does not track: a variant remembered with
    another SKU is forgotten (and its stock metafield deleted)."""
    return {i.variant_id for i in items if i.variant_id is not None and i.sku not in tracked}


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
        expire_due_holds(uow, level)
    granted = min(need, max(level.available, 0))
    if granted:
        uow.stock.add_hold(
            level.reserve(granted, holder=holder, source=HoldSource.CART, now=uow.now, ttl=ttl)
        )
    return granted


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
