"""The order use cases on top of the stock ledger: sell an order, take its payment, cancel it.

The payment rule: an order reaches the ERP once it is paid. One sold unpaid (boleto, PIX: the
shop's payment is ``pending``) keeps its units committed and waits (``awaiting_payment``) until
the shop says it is paid (``pay``, Shopify's ``orders/paid``); cancelled before that (the boleto
expired), its units go back and the ERP never hears of it. A test order never reaches the ERP:
its units go back at once.

They take plain values (``Sale``: a delivery parsed once by shopify/payloads.py) and a unit of
work, and run inside the caller's transaction: the Shopify handlers (shopify/handlers.py) are
topic → parse → one of these. The lock order is the caller's cart row first (if any), then the
order row, then the SKU rows in sorted order (``uow.stock.lock``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..observability.events import holder_hash
from ..outbox.kinds import CANCEL_ORDER, FORWARD_ORDER, REVERSE_ORDER
from ..stock.domain import Hold, HoldStatus, StockLevel
from ..stock.services import expire_due_holds
from ..unit_of_work import UnitOfWork
from .model import Order, OrderDetails, OrderLine

log = logging.getLogger(__name__)


class Item(Protocol):
    """A line as ordered (shopify/payloads.py ``LineItem`` is one)."""

    @property
    def line_id(self) -> int: ...
    @property
    def sku(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def unit_price_cents(self) -> int | None: ...
    @property
    def title(self) -> str | None: ...
    @property
    def hold_id(self) -> uuid.UUID | None: ...


@dataclass(frozen=True)
class Sale:
    """An order to sell, as the shop reported it."""

    shop: str
    order_id: int
    name: str | None
    #: The cart it was bought from (its holds are the order's), if known.
    cart_token: str | None
    items: Sequence[Item]
    details: OrderDetails | None = None
    #: Created and cancelled before we heard of it: recorded, nothing sold.
    cancelled: bool = False
    #: The shop has the money (or holds it: authorized). False for a payment still pending
    #: (boleto, PIX): the order waits for it before it goes to the ERP.
    paid: bool = True
    #: A test order (Shopify's ``test: true``): never sent to the ERP, its units given back.
    test: bool = False


@dataclass
class SaleResult:
    #: ``confirmed``, ``awaiting_payment``, ``test_order``, ``cancelled``, ``paid`` (recorded
    #: before unpaid: now on its way to the ERP) or ``duplicate_order`` (nothing changed).
    outcome: str
    order: Order
    #: The order's SKUs this ledger tracks.
    tracked: set[str] = field(default_factory=set)


def demand_of(items: Iterable[Item]) -> dict[str, int]:
    """Units wanted per SKU, all lines of a SKU together."""
    demand: dict[str, int] = {}
    for item in items:
        demand[item.sku] = demand.get(item.sku, 0) + item.quantity
    return demand


def named_holds(items: Iterable[Item]) -> dict[str, set[uuid.UUID]]:
    """Per SKU, the hold ids the lines of that SKU name (a claim: only the cart's own count)."""
    named: dict[str, set[uuid.UUID]] = {}
    for item in items:
        if item.hold_id is not None:
            named.setdefault(item.sku, set()).add(item.hold_id)
    return named


def quantities(order: Order) -> dict[str, int]:
    """Units sold per SKU (what is left of each line after refunds and edits)."""
    totals: dict[str, int] = {}
    for line in order.lines:
        if line.remaining:
            totals[line.sku] = totals.get(line.sku, 0) + line.remaining
    return totals


def enqueue_order_job(uow: UnitOfWork, kind: str, order: Order) -> None:
    """Queue an ERP job for ``order`` (outbox/kinds.py: payload and key), in ``uow``'s txn."""
    key = f"{order.shop}:{order.order_id}"
    payload = {"shop": order.shop, "order_id": order.order_id}
    uow.enqueue(kind, key, payload)


def queue_erp_work(uow: UnitOfWork, order: Order) -> None:
    """Queue what the ERP must still do for a cancelled order: reverse its stock posting first,
    then, with nothing left to reverse, cancel its sales order (one whose id we know; a create
    whose answer was lost is the forward's to find, orders/forwarding.py). Queuing twice is a
    no-op (the outbox's key)."""
    if order.needs_reversal:
        enqueue_order_job(uow, REVERSE_ORDER, order)
    elif order.erp_cancellation_due and order.bling_order_id is not None:
        enqueue_order_job(uow, CANCEL_ORDER, order)


# --- sell ----------------------------------------------------------------------------------------


def sell(uow: UnitOfWork, sale: Sale) -> SaleResult:
    """Sell the order's lines: consume the cart's holds (those its lines name first), take
    uncovered units from available, and record an oversell loudly when even that falls short
    (the shop has sold them already). Selling the same order twice changes nothing."""
    order = Order(sale.shop, sale.order_id, sale.name, sale.cart_token, details=sale.details)
    if not uow.orders.claim(order):
        if sale.paid and not sale.test and pay(uow, sale.shop, sale.order_id):
            return SaleResult("paid", order)
        return SaleResult("duplicate_order", order)
    reference = f"shopify:{order.order_id}"
    named = named_holds(sale.items)
    token = order.cart_token
    holds = uow.stock.active_holds_of(token) if token else []
    _log_foreign_names(named, holds, order)
    # Holds the storefront confirmed through POST /stock/confirm for this very order are sold
    # already: they cover their units, which must not be taken from available a second time.
    early = (
        uow.stock.holds_confirmed_for(token, {str(order.order_id), order.name or ""})
        if token
        else []
    )
    demand = demand_of(sale.items)
    levels = uow.stock.lock(set(demand) | {h.sku for h in holds}, missing_ok=True)
    unused = {h.id: h for h in holds}
    for sku, quantity in demand.items():
        if sku in levels:
            confirmed = sum(h.quantity for h in early if h.sku == sku)
            first = named.get(sku, set())
            sold = _sell(uow, levels[sku], quantity, unused, reference, confirmed, first)
            order.lines.extend(_split(sold, [i for i in sale.items if i.sku == sku]))
    for hold in unused.values():  # the cart is done: nothing of it stays held
        if hold.sku in levels and hold.status is HoldStatus.ACTIVE:
            levels[hold.sku].release(hold)
    tracked = set(demand) & levels.keys()
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
    if sale.cancelled:
        _cancel(uow, levels, order, reference)
        uow.orders.save(order)
        return SaleResult("cancelled", order, tracked)
    if sale.test:
        for line in order.test_only():  # the ERP never sees it: its units are sellable again
            levels[line.sku].uncommit(line.remaining, reference)
        uow.orders.save(order)
        units = sum(line.quantity for line in order.lines)
        uow.record("order.test", shop=order.shop, order=order.order_id, units=units)
        return SaleResult("test_order", order, tracked)
    if not sale.paid:
        order.await_payment()
    uow.orders.save(order)
    uow.record(
        "order.confirmed",
        channel="shopify",
        shop=order.shop,
        order=order.order_id,
        name=order.name,
        units=sum(line.quantity for line in order.lines),
        from_holds=sum(line.from_holds for line in order.lines),
        holder_hash=holder_hash(token),
        paid=sale.paid,
    )
    if not sale.paid:
        return SaleResult("awaiting_payment", order, tracked)
    if order.lines:
        # Same transaction as the sale: the order reaches the ERP if and only if it was
        # confirmed here. An order of untracked products only has nothing of its stock to post.
        enqueue_order_job(uow, FORWARD_ORDER, order)
    return SaleResult("confirmed", order, tracked)


# --- pay -----------------------------------------------------------------------------------------


def pay(uow: UnitOfWork, shop: str, order_id: int) -> bool:
    """The shop says the order is paid (``orders/paid``): one sold unpaid now goes to the ERP.
    True when it was waiting for this; a paid, test, cancelled or unknown order is left alone."""
    order = uow.orders.get(shop, order_id, lock=True)
    if order is None or not order.pay():
        return False
    uow.orders.save(order)
    uow.record("order.paid", shop=shop, order=order_id, name=order.name)
    if order.lines:
        enqueue_order_job(uow, FORWARD_ORDER, order)
    return True


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


def _split(sold: _Sold, items: Sequence[Item]) -> list[OrderLine]:
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


# --- cancel --------------------------------------------------------------------------------------


def cancel(uow: UnitOfWork, shop: str, order_id: int, name: str | None) -> str:
    """Give back what the ERP has not heard of yet (not forwarded, or unpaid); mark the rest
    for reversal there, and its sales order for cancellation."""
    order = uow.orders.get(shop, order_id, lock=True)
    if order is None:
        # Cancelled before its creation arrived: a tombstone makes that one a no-op.
        uow.orders.claim(Order.tombstone(shop, order_id, name))
        return "unknown_order"
    if order.cancelled:
        return "already_cancelled"
    levels = uow.stock.lock({line.sku for line in order.lines})
    _cancel(uow, levels, order, f"shopify:{order_id}")
    uow.orders.save(order)
    uow.record(
        "order.cancelled", shop=order.shop, order=order_id, forward_status=order.forward_status
    )
    return "cancelled"


def _cancel(uow: UnitOfWork, levels: dict[str, StockLevel], order: Order, reference: str) -> None:
    for line in order.cancel():  # the ERP never had these units: sellable again
        levels[line.sku].uncommit(line.remaining, reference)
    # The ERP has it (its posting to reverse, or a sales order to cancel): the worker does it.
    queue_erp_work(uow, order)
