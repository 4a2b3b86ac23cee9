"""Orders out: a confirmed Shopify order becomes a Bling sales order, then its stock is posted.

The outbox (``outbox/``) runs these handlers at least once, never exactly once: a worker killed
after Bling answered but before the result was written, a lost answer, a lease that ran out all
make a step run again. Bling has no idempotency key, so every step is made safe to repeat:

1. **Re-read the order.** Gone (``shop/redact``), cancelled, or already forwarded: stop.
2. **Sales order.** Unless its Bling id is recorded, search by ``numeroLoja`` (the Shopify order
   name) and create it only if absent (``bling.orders.ensure_sales_order``); record the id.
3. **Stock posting** (``lancar-estoque`` on ``BLING_DEPOSIT_ID``). Bling's sales order says
   nowhere whether its stock was posted, so the attempt is recorded first (``bling_stock =
   'requested'``). Bling refuses a second posting with a 400; when the previous attempt's outcome
   was never learnt (lost answer, 5xx, crash), that 400 is read as "it was posted".
4. **Acknowledge**, in one transaction: the order is ``forwarded``, and each line's commitment
   becomes an ``on_hand`` decrease (``StockLevel.acknowledge``), remembered in ``bling_acks`` so
   that a balance read before this moment is applied without those units (stock_sync.py).

A cancellation that lands while a forward is under way gave the units back already
(``orders/cancelled`` releases whatever is not yet forwarded); the forward then ends by queueing
the reversal of whatever it posted. ``REVERSE_ORDER`` reverses the posting (``estornar-estoque``)
and, if the order had been acknowledged, puts its units back on hand.

Bling's failures map onto the outbox's outcomes: the per-day 429 pauses the whole kind until
Bling's midnight; "not connected" pauses it for a few minutes; 429/5xx/timeouts retry with
backoff; a validation error on the sales order is dead-lettered with Bling's message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any, NoReturn

from sqlalchemy import select

from bling.client import BlingClient
from bling.errors import (
    BLING_TZ,
    BlingDailyLimitReached,
    BlingError,
    BlingForbidden,
    BlingNotConnected,
    BlingNotFound,
    BlingOutcomeUnknown,
    BlingRateLimited,
    BlingServerError,
    BlingUnauthorized,
    BlingUnavailable,
    BlingUnreachable,
    BlingValidationError,
    InvalidGrant,
)
from bling.orders import (
    OrderLine,
    SalesOrderInput,
    consumer_final,
    ensure_sales_order,
    find_or_create_contact,
    post_stock,
    reverse_stock,
)

from .. import outbox
from ..config import Settings
from ..observability.events import emit
from ..orders.model import BlingStock, ForwardStatus, Order
from ..outbox import JobPolicy, PauseKind, PermanentFailure, RetryLater
from ..outbox.kinds import FORWARD_ORDER, REVERSE_ORDER
from ..runtime import Runtime
from ..shopify.handlers import enqueue_order_job
from ..unit_of_work import UnitOfWork
from .connection import bling_client
from .stock_sync import configured_deposit, record_acknowledgement
from .stock_tables import bling_products

log = logging.getLogger(__name__)

#: How long the kind waits when Bling is not connected or the configuration is incomplete: long
#: enough not to spin, short enough that forwarding resumes soon after an operator fixes it.
WAIT_FOR_OPERATOR = timedelta(minutes=5)
#: How long the kind waits when Bling is down (no connection, or 502/503/504), before the next
#: job in line tries again: the jobs keep their place and attempts, so however long the outage,
#: the whole backlog is due the moment Bling answers, and drains at the shared request rate.
WAIT_FOR_BLING = timedelta(seconds=10)
DOWN_STATUSES = frozenset({502, 503, 504})
#: A SKU missing from the Bling catalog map: the next reconciliation may bring it.
WAIT_FOR_CATALOG = 600.0


def policy(lease_seconds: float) -> JobPolicy:
    """Retries spread up to 5 minutes apart (a Bling outage is retried at a calm pace, and the
    backlog drains soon after it ends); about a day of them before a job is dead-lettered."""
    return JobPolicy(
        backoff_base_seconds=1.0,
        backoff_cap_seconds=300.0,
        max_attempts=300,
        lease_seconds=lease_seconds,
    )


class _Deadline:
    """A second run of a job may start once its lease ends, and two runs that both search and
    then both create would make two sales orders. So a run starts no Bling write after a third
    of the lease: a write (no resend once sent; a few 429 retries) ends well inside the rest."""

    def __init__(self, lease_seconds: float) -> None:
        self.latest_write = time.monotonic() + lease_seconds / 3

    def check(self, what: str) -> None:
        if time.monotonic() > self.latest_write:
            raise RetryLater(f"too late in this run to {what}; the next attempt will", delay=0)


def register(settings: Settings, registry: outbox.Registry | None = None) -> None:
    """Run the Bling handlers for the order kinds the Shopify side enqueues."""
    target = registry or outbox.default_registry
    job_policy = policy(settings.bling_job_lease_seconds)
    target.register(FORWARD_ORDER, forward_order, policy=job_policy)
    target.register(REVERSE_ORDER, reverse_order, policy=job_policy)


# --- FORWARD_ORDER ---------------------------------------------------------------------------


def forward_order(runtime: Runtime, payload: dict[str, Any]) -> None:
    """The outbox handler of ``bling.forward_order`` (payload ``{"shop", "order_id"}``)."""
    shop, order_id = _key(payload)
    order = _read(runtime, shop, order_id)
    if order is None:
        log.info("bling.forward_skipped shop=%s order=%s reason=unknown_order", shop, order_id)
        return
    if order.cancelled:
        _after_cancellation(runtime, order)
        return
    if order.forward_status is not ForwardStatus.PENDING:
        return  # forwarded already (this is a repeated run)
    if not order.lines:
        return  # nothing tracked here was sold: no Bling stock to post
    settings = runtime.settings
    if settings.bling_payment_method_id is None:
        raise PauseKind(
            runtime.clock() + WAIT_FOR_OPERATOR,
            "BLING_PAYMENT_METHOD_ID is unset: Bling needs it for the order's installment",
        )
    deadline = _Deadline(settings.bling_job_lease_seconds)
    with _bling(runtime, order) as client:
        if order.bling_order_id is None:
            products = _product_ids(runtime, order)
            order.bling_order_id = _ensure_sales_order(runtime, client, order, products, deadline)
        if order.bling_stock is not BlingStock.POSTED:
            deadline.check("post the stock")
            _post_stock(runtime, client, order, order.bling_order_id)
        calls = client.http_calls
    outcome = _acknowledge(runtime, order)
    emit(
        "bling.forwarded",
        shop=shop,
        order=order_id,
        name=order.name,
        bling_order=order.bling_order_id,
        calls=calls,
        outcome=outcome,
    )


def _ensure_sales_order(
    runtime: Runtime,
    client: BlingClient,
    order: Order,
    products: dict[str, int],
    deadline: _Deadline,
) -> int:
    settings = runtime.settings
    details = order.details
    contact_id = _contact_id(client, order)
    placed = details.placed_at if details and details.placed_at else runtime.clock()
    lines = [
        OrderLine(
            product_id=products[line.sku],
            quantity=line.quantity,
            unit_price=_money(line.unit_price_cents),
            description=line.title or line.sku,
            sku=line.sku,
        )
        for line in order.lines
    ]
    items = sum((line.amount for line in lines), Decimal(0))
    shipping = _money(details.shipping_cents if details else None)
    # Lines this service does not track (no SKU, not sold from Bling's stock) are not sent, so
    # Shopify's discount may exceed what is left: never let the order go below zero.
    discount = min(_money(details.discount_cents if details else None), items + shipping)
    sales_order = SalesOrderInput(
        store_number=order.name or str(order.order_id),
        order_date=placed.astimezone(BLING_TZ).date(),
        contact_id=contact_id,
        lines=lines,
        payment_method_id=int(settings.bling_payment_method_id or 0),
        store_id=int(settings.bling_store_id) if settings.bling_store_id else None,
        shipping=shipping,
        discount=discount,
        internal_notes=f"Shopify order {order.order_id} ({order.shop})",
    )
    deadline.check("create the sales order")
    try:
        bling_id, created = ensure_sales_order(client, sales_order)
    except BlingValidationError as exc:
        raise PermanentFailure(f"Bling refused the sales order: {exc}") from exc
    with runtime.uow() as uow:
        uow.shopify.update_order(order.shop, order.order_id, bling_order_id=bling_id)
        uow.commit()
    log.info(
        "bling.sales_order shop=%s order=%s bling_order=%s created=%s",
        order.shop,
        order.order_id,
        bling_id,
        created,
    )
    return bling_id


def _post_stock(runtime: Runtime, client: BlingClient, order: Order, bling_id: int) -> None:
    outcome_unknown = order.bling_stock is BlingStock.REQUESTED
    _set_stock_state(runtime, order, BlingStock.REQUESTED)
    try:
        post_stock(client, bling_id, configured_deposit(runtime.settings))
    except BlingValidationError as exc:
        if not outcome_unknown:
            _set_stock_state(
                runtime, order, BlingStock.NONE
            )  # refused outright: nothing was posted
            raise PermanentFailure(f"Bling refused the stock posting: {exc}") from exc
        # Asked before without learning the answer, and now refused: Bling refuses a second
        # posting of one order, so the first one went through.
        log.warning(
            "bling.stock_already_posted order=%s bling_order=%s answer=%s",
            order.order_id,
            order.bling_order_id,
            exc,
        )
    except (
        BlingRateLimited,
        BlingDailyLimitReached,
        BlingUnauthorized,
        BlingForbidden,
        BlingNotFound,
    ):
        # Refused before anything was done: the posting certainly did not happen.
        if not outcome_unknown:
            _set_stock_state(runtime, order, BlingStock.NONE)
        raise
    order.bling_stock = BlingStock.POSTED


def _acknowledge(runtime: Runtime, order: Order) -> str:
    """Bling has the order and its stock: turn the commitments into smaller on-hand figures."""
    reference = f"shopify:{order.order_id}"
    with runtime.uow() as uow:
        current = uow.shopify.order(order.shop, order.order_id, lock=True)
        if current is None:  # erased meanwhile (shop/redact): nothing left to account for
            return "erased"
        if current.cancelled and current.forward_status is ForwardStatus.CANCELLED:
            # orders/cancelled gave the units back while this forward was in Bling; the posting
            # just made must be undone there.
            uow.shopify.update_order(
                order.shop,
                order.order_id,
                bling_stock=BlingStock.POSTED,
                forward_status=ForwardStatus.REVERSAL_PENDING,
            )
            enqueue_order_job(uow, REVERSE_ORDER, order)
            uow.commit()
            return "cancelled_meanwhile"
        if current.forward_status is not ForwardStatus.PENDING:
            return current.forward_status  # a twin run acknowledged it first
        levels = uow.stock.lock({line.sku for line in current.lines})
        for sku, quantity in sorted(_quantities(current).items()):
            levels[sku].acknowledge(quantity, reference)
            record_acknowledgement(uow, sku, quantity, reference)
        uow.shopify.update_order(
            order.shop,
            order.order_id,
            bling_stock=BlingStock.POSTED,
            forward_status=ForwardStatus.FORWARDED,
            forwarded_at=uow.now,
        )
        uow.commit()
    return "forwarded"


def _after_cancellation(runtime: Runtime, order: Order) -> None:
    """The order was cancelled before it was forwarded; its units are back already."""
    if order.forward_status is not ForwardStatus.CANCELLED:
        return  # reversal_pending/reversed: the reversal job owns it
    if order.bling_stock in (BlingStock.REQUESTED, BlingStock.POSTED):
        # A forward got as far as asking Bling to post the stock: undo it there.
        with runtime.uow() as uow:
            current = uow.shopify.order(order.shop, order.order_id, lock=True)
            if current is not None and current.forward_status is ForwardStatus.CANCELLED:
                uow.shopify.update_order(
                    order.shop, order.order_id, forward_status=ForwardStatus.REVERSAL_PENDING
                )
                enqueue_order_job(uow, REVERSE_ORDER, order)
                uow.commit()
    elif order.bling_order_id is not None:
        log.warning(
            "bling.orphan_sales_order shop=%s order=%s bling_order=%s: the order was cancelled "
            "after its Bling sales order was created; cancel it in Bling",
            order.shop,
            order.order_id,
            order.bling_order_id,
        )


# --- REVERSE_ORDER ---------------------------------------------------------------------------


def reverse_order(runtime: Runtime, payload: dict[str, Any]) -> None:
    """The outbox handler of ``bling.reverse_order``: undo the stock posting in Bling."""
    shop, order_id = _key(payload)
    order = _read(runtime, shop, order_id)
    if order is None or not order.needs_reversal:
        return
    posted = order.stock_maybe_posted
    if order.bling_order_id is not None and posted:
        with _bling(runtime, order) as client:  # one write only, at the start of the run
            _reverse_stock(runtime, client, order, order.bling_order_id)
    reference = f"shopify:{order.order_id}"
    with runtime.uow() as uow:
        current = uow.shopify.order(shop, order_id, lock=True)
        if current is None or not current.needs_reversal:
            return
        acknowledged = _was_acknowledged(uow, shop, order_id)
        if acknowledged:
            levels = uow.stock.lock({line.sku for line in current.lines})
            for sku, quantity in sorted(_quantities(current).items()):
                levels[sku].restock(quantity, reference)
        uow.shopify.update_order(
            shop, order_id, bling_stock=BlingStock.REVERSED, forward_status=ForwardStatus.REVERSED
        )
        uow.commit()
    log.info("bling.reversed shop=%s order=%s restocked=%s", shop, order_id, acknowledged)


def _reverse_stock(runtime: Runtime, client: BlingClient, order: Order, bling_id: int) -> None:
    _set_stock_state(runtime, order, BlingStock.REVERSING)
    try:
        reverse_stock(client, bling_id)
    except BlingValidationError as exc:
        # Bling refuses to reverse what is not posted: either an earlier attempt whose answer was
        # lost reversed it, or the posting we asked for never happened. Both mean "done".
        log.warning(
            "bling.nothing_to_reverse order=%s bling_order=%s answer=%s",
            order.order_id,
            order.bling_order_id,
            exc,
        )


# --- helpers ---------------------------------------------------------------------------------


@contextmanager
def _bling(runtime: Runtime, order: Order) -> Iterator[BlingClient]:
    """A Bling client whose failures are logged once (``bling.failed``) and told to the outbox
    in its own terms."""
    try:
        with bling_client(runtime) as client:
            yield client
    except BlingError as exc:
        emit(
            "bling.failed",
            level=logging.WARNING,
            shop=order.shop,
            order=order.order_id,
            error=type(exc).__name__,
            status=exc.status,
            reason=str(exc)[:300],
        )
        _raise_for_outbox(runtime, exc)


def _raise_for_outbox(runtime: Runtime, error: BlingError) -> NoReturn:
    if isinstance(error, BlingDailyLimitReached):
        reason = f"Bling's daily request limit is spent: {error}"
        raise PauseKind(error.until, reason) from error
    if isinstance(error, BlingNotConnected | InvalidGrant):
        raise PauseKind(runtime.clock() + WAIT_FOR_OPERATOR, str(error)) from error
    if isinstance(error, BlingUnreachable) or (
        isinstance(error, BlingServerError) and error.status in DOWN_STATUSES
    ):
        # Bling is down for everyone, not for this order: a payload cannot refuse a connection
        # or make a load balancer answer 503. (A 500 or a timeout may be this order's own
        # doing, so those retry this job alone, with backoff, below.)
        raise PauseKind(runtime.clock() + WAIT_FOR_BLING, f"Bling is down: {error}") from error
    if isinstance(error, BlingRateLimited):
        raise RetryLater(str(error), delay=max(error.retry_after, 1.0)) from error
    if isinstance(error, BlingOutcomeUnknown | BlingServerError | BlingUnavailable):
        raise RetryLater(str(error)) from error
    raise RetryLater(f"{type(error).__name__}: {error}") from error


def _key(payload: dict[str, Any]) -> tuple[str, int]:
    try:
        return str(payload["shop"]), int(payload["order_id"])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure(f"not an order job payload: {payload!r}") from None


def _read(runtime: Runtime, shop: str, order_id: int) -> Order | None:
    with runtime.uow(read_only=True) as uow:
        return uow.shopify.order(shop, order_id)


def _set_stock_state(runtime: Runtime, order: Order, state: BlingStock) -> None:
    with runtime.uow() as uow:
        uow.shopify.update_order(order.shop, order.order_id, bling_stock=state)
        uow.commit()
    order.bling_stock = state


def _was_acknowledged(uow: UnitOfWork, shop: str, order_id: int) -> bool:
    from ..shopify.tables import orders

    forwarded_at = uow.shopify.connection.execute(
        select(orders.c.forwarded_at).where(orders.c.shop == shop, orders.c.order_id == order_id)
    ).scalar()
    return forwarded_at is not None


def _quantities(order: Order) -> dict[str, int]:
    totals: dict[str, int] = {}
    for line in order.lines:
        totals[line.sku] = totals.get(line.sku, 0) + line.quantity
    return totals


def _product_ids(runtime: Runtime, order: Order) -> dict[str, int]:
    skus = sorted({line.sku for line in order.lines})
    with runtime.uow(read_only=True) as uow:
        rows = uow.shopify.connection.execute(
            select(bling_products.c.sku, bling_products.c.product_id).where(
                bling_products.c.sku.in_(skus)
            )
        ).all()
    found = {row.sku: int(row.product_id) for row in rows}
    missing = [sku for sku in skus if sku not in found]
    if missing:
        raise RetryLater(
            f"SKUs not in Bling's catalog (run `bling sync`): {', '.join(missing)}",
            delay=WAIT_FOR_CATALOG,
        )
    return found


_consumer_final: dict[str, int] = {}
_consumer_final_lock = threading.Lock()


def _contact_id(client: BlingClient, order: Order) -> int:
    details = order.details
    email = details.customer_email if details else None
    if email:
        name = (details.customer_name if details else None) or email.split("@", 1)[0]
        return find_or_create_contact(client, name, email=email)
    # Bling's built-in "Consumidor Final" never changes: one request per process and account.
    account = client.base_url
    with _consumer_final_lock:
        cached = _consumer_final.get(account)
    if cached is None:
        cached = consumer_final(client).id
        with _consumer_final_lock:
            _consumer_final[account] = cached
    return cached


def _money(cents: int | None) -> Decimal:
    return Decimal(cents or 0) / 100
