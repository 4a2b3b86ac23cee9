"""Bling as the orders' ERP: the ``ErpGateway`` of orders/ports.py over Bling API v3.

Long because every ERP call of an order's life (sales order, posting, reversal, cancellation,
stock entries) and the one translation of Bling's errors into the outbox's outcomes live
together: split, each part would need the others' translation and catalog lookups.

The steps and their rules (re-read, sales order, stock posting, acknowledge; reversal) are the
use cases' (orders/forwarding.py); this module only speaks Bling:

- the sales order is found by ``numeroLoja`` (the Shopify order name) or created
  (``bling.orders.find_own_sales_order``, then ``create_sales_order``), with the customer's
  contact (found or created by e-mail, else Bling's built-in "Consumidor Final") and the lines
  mapped to Bling's product ids;
- "ours" is told by the marker every sales order we create carries in its internal notes
  (``observacoesInternas``: ``Shopify order {id} ({shop})``), not by its channel (``loja``):
  Bling's own Shopify integration imports into a channel the merchant may well have given us
  too, and ``BLING_STORE_ID`` is optional. An order with the number in any channel that lacks
  the marker is another integration's (``ForeignSalesOrder``); one carrying it is adopted; one
  carrying our marker for another shop (``KIN``) is another store's, and passed over;
- the stock posting is ``lancar-estoque`` on the configured deposit, its reversal
  ``estornar-estoque``; Bling answers a second posting (or a reversal of nothing) with a 400,
  which the use cases read;
- a cancelled order's sales order moves to the situation "Cancelado" (``PATCH
  …/situacoes/{id}``), whose id differs per account: discovered once per process
  (``GET /situacoes/modulos``, bling/situations.py) unless ``BLING_CANCELLED_SITUATION_ID``
  names it;
- Bling's failures become the outbox's outcomes here, once (``_outcome``): the per-day 429
  pauses the whole kind until Bling's midnight; "not connected" pauses it for a few minutes;
  Bling down (no connection, 502/503/504) pauses it briefly; other 429/5xx/timeouts retry this
  job with backoff;
- a refund or an edit after the sales order was made, before its stock was posted, rewrites
  the sales order (``PUT /pedidos/vendas/{id}``, the whole order as the create sent it, with
  Bling's contact and number kept), so the posting and the warehouse take the corrected
  quantities; once posted, the sales order is left as it is (the spec says nothing of what a
  PUT does to a posted order's stock, and the reversal must undo exactly what was posted);
- a refund's or an edit's difference Bling's sales order does not carry is a stock movement
  (``POST /estoques``, ``operacao`` ``E``/``S``, on the same deposit), sent at most once;
- an acknowledged posting is remembered in ``bling_acks`` (``note_acknowledged``), so that a
  balance read before it is applied without those units (stock_sync.py).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

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
    NotOurSalesOrder,
    OrderLine,
    SalesOrderInput,
    consumer_final,
    create_sales_order,
    find_or_create_contact,
    find_own_sales_order,
    get_sales_order,
    post_stock,
    reverse_stock,
    set_sales_order_status,
    update_sales_order,
)
from bling.products import post_stock_entry
from bling.situations import CANCELLED, SituationNotFound, sales_order_situation

from .. import outbox
from ..config import Settings
from ..observability.events import emit
from ..orders import adjustments, forwarding
from ..orders.model import Order
from ..orders.ports import ErpFailure, ErpRefused, ErpSession, ForeignSalesOrder
from ..outbox import PauseKind, RetryLater
from ..runtime import Runtime
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
#: Refused before anything was done: the request certainly had no effect.
NOTHING_DONE = (
    BlingRateLimited,
    BlingDailyLimitReached,
    BlingUnauthorized,
    BlingForbidden,
    BlingNotFound,
)


def register(settings: Settings, registry: outbox.Registry | None = None) -> None:
    """Run the order kinds the Shopify side enqueues on Bling."""
    forwarding.register_jobs(
        forward_order,
        reverse_order,
        cancel_order,
        stock_entry,
        settings.bling_job_lease_seconds,
        registry,
    )


def forward_order(runtime: Runtime, payload: dict[str, Any]) -> None:
    """The outbox handler of ``bling.forward_order`` (payload ``{"shop", "order_id"}``)."""
    shop, order_id = forwarding.order_key(payload)
    deadline = forwarding.Deadline(runtime.settings.bling_job_lease_seconds)
    forwarding.forward(runtime.uow, BlingGateway(runtime), shop, order_id, deadline)


def reverse_order(runtime: Runtime, payload: dict[str, Any]) -> None:
    """The outbox handler of ``bling.reverse_order``: undo the stock posting in Bling."""
    shop, order_id = forwarding.order_key(payload)
    forwarding.reverse(runtime.uow, BlingGateway(runtime), shop, order_id)


def cancel_order(runtime: Runtime, payload: dict[str, Any]) -> None:
    """The outbox handler of ``bling.cancel_order``: the sales order goes to "Cancelado"."""
    shop, order_id = forwarding.order_key(payload)
    forwarding.cancel_sales_order(runtime.uow, BlingGateway(runtime), shop, order_id)


def stock_entry(runtime: Runtime, payload: dict[str, Any]) -> None:
    """The outbox handler of ``bling.stock_entry``: a refund's or an edit's units in Bling's
    stock (``POST /estoques`` on the deposit sold from)."""
    shop, order_id = forwarding.order_key(payload)
    key = forwarding.adjustment_of(payload)
    adjustments.enter_stock(runtime.uow, BlingGateway(runtime), shop, order_id, key)


def marker(order: Order) -> str:
    """What every sales order we create carries in its internal notes, and how we know ours."""
    return f"Shopify order {order.order_id} ({order.shop})"


#: The marker of any order this service made, for whichever shop: another store's order under
#: the same number (two stores each have a "#1001", one Bling account) is not an import of ours.
KIN = re.compile(r"Shopify order \d+ \([^)\s]+\)")


def _store_number(order: Order) -> str:
    """``numeroLoja``: the Shopify order name ("#1001"), the key searched before creating."""
    return order.name or str(order.order_id)


class BlingGateway:
    """Bling, for the jobs of one runtime (a client per job: it holds an HTTP session only)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @contextmanager
    def session(self, order: Order) -> Iterator[ErpSession]:
        with _translated(self.runtime, order):
            client = bling_client(self.runtime)
        with client:
            yield _BlingSession(self.runtime, client, order)

    def note_acknowledged(
        self, uow: UnitOfWork, quantities: dict[str, int], reference: str
    ) -> None:
        for sku, quantity in sorted(quantities.items()):
            record_acknowledgement(uow, sku, quantity, reference)


class _BlingSession:
    def __init__(self, runtime: Runtime, client: BlingClient, order: Order) -> None:
        self.runtime = runtime
        self.client = client
        self.order = order

    @property
    def calls(self) -> int:
        return self.client.http_calls

    def ensure_sales_order(self, order: Order, before_write: Callable[[str], None]) -> int | None:
        settings = self.runtime.settings
        if settings.bling_payment_method_id is None:
            raise ErpFailure(
                PauseKind(
                    self.runtime.clock() + WAIT_FOR_OPERATOR,
                    "BLING_PAYMENT_METHOD_ID is unset: Bling needs it for the order's installment",
                ),
                nothing_done=True,
            )
        with _translated(self.runtime, order):
            # Search before create, and adopt only an order of ours (the marker).
            try:
                found = find_own_sales_order(
                    self.client, _store_number(order), marker(order), kin=KIN
                )
            except NotOurSalesOrder as exc:
                raise ForeignSalesOrder(exc.ids) from exc
            created = found is None
            if found is not None:
                bling_id = found.id
            else:
                products = _product_ids(self.runtime, order)
                sales_order = _sales_order(self.runtime, self.client, order, products)
                before_write("create the sales order")
                try:
                    bling_id = create_sales_order(self.client, sales_order).id
                except BlingValidationError as exc:
                    raise ErpRefused(str(exc)) from exc
        log.info(
            "bling.sales_order shop=%s order=%s bling_order=%s created=%s",
            order.shop,
            order.order_id,
            bling_id,
            created,
        )
        return bling_id

    def find_sales_order(self, order: Order) -> int | None:
        with _translated(self.runtime, order):
            try:
                found = find_own_sales_order(
                    self.client, _store_number(order), marker(order), kin=KIN
                )
            except NotOurSalesOrder:
                return None  # another integration's: never ours to cancel
        return found.id if found else None

    def cancel_sales_order(self, erp_order_id: int) -> None:
        situation = _cancelled_situation(self.runtime, self.client, self.order)
        with _translated(self.runtime, self.order):
            try:
                set_sales_order_status(self.client, erp_order_id, situation)
            except (BlingValidationError, BlingNotFound) as exc:
                # 400: Bling will not move it (invoiced, shipped…); 404: the order is gone, or
                # the situation is not a sales order's. A person must look, either way.
                raise ErpRefused(f"{exc} (situation {situation})") from exc

    def update_sales_order(self, order: Order, erp_order_id: int) -> None:
        products = _product_ids(self.runtime, order)
        with _translated(self.runtime, order):
            try:
                # Rewritten whole (a PUT replaces it): its contact and number stay Bling's.
                current = get_sales_order(self.client, erp_order_id)
                contact_id = current.contact_id or _contact_id(self.client, order)
                sales_order = _sales_order(self.runtime, self.client, order, products, contact_id)
                update_sales_order(self.client, erp_order_id, sales_order, numero=current.numero)
            except (BlingValidationError, BlingNotFound) as exc:
                # 400: Bling will not change it (invoiced, in a situation that locks it…);
                # 404: gone. Either way its posting takes it as it is; a person must look.
                raise ErpRefused(str(exc)) from exc
        log.info(
            "bling.sales_order_updated shop=%s order=%s bling_order=%s",
            order.shop,
            order.order_id,
            erp_order_id,
        )

    def post_stock(self, erp_order_id: int | None) -> None:
        if erp_order_id is None:
            raise ValueError("Bling posts the stock of a sales order: its id is needed")
        with _translated(self.runtime, self.order):
            try:
                post_stock(self.client, erp_order_id, configured_deposit(self.runtime.settings))
            except BlingValidationError as exc:
                raise ErpRefused(str(exc)) from exc

    def reverse_stock(self, erp_order_id: int | None) -> None:
        if erp_order_id is None:
            raise ValueError("Bling reverses the stock of a sales order: its id is needed")
        with _translated(self.runtime, self.order):
            try:
                reverse_stock(self.client, erp_order_id)
            except BlingValidationError as exc:
                raise ErpRefused(str(exc)) from exc

    def enter_stock(self, sku: str, quantity: int, note: str) -> None:
        product = _product_ids(self.runtime, self.order, [sku])[sku]
        deposit = configured_deposit(self.runtime.settings)
        with _translated(self.runtime, self.order):
            try:
                post_stock_entry(self.client, product, deposit, quantity, note)
            except BlingValidationError as exc:
                raise ErpRefused(str(exc)) from exc


def _sales_order(
    runtime: Runtime,
    client: BlingClient,
    order: Order,
    products: dict[str, int],
    contact_id: int | None = None,
) -> SalesOrderInput:
    settings = runtime.settings
    details = order.details
    if contact_id is None:
        contact_id = _contact_id(client, order)
    placed = details.placed_at if details and details.placed_at else runtime.clock()
    lines = [
        OrderLine(
            product_id=products[line.sku],
            quantity=line.remaining,
            unit_price=_money(line.unit_price_cents),
            description=line.title or line.sku,
            sku=line.sku,
        )
        for line in order.lines
        if line.remaining  # refunded or edited away before the sales order was made
    ]
    items = sum((line.amount for line in lines), Decimal(0))
    shipping = _money(details.shipping_cents if details else None)
    # Lines this service does not track (no SKU, not sold from Bling's stock) are not sent, so
    # Shopify's discount may exceed what is left: never let the order go below zero.
    discount = min(_money(details.discount_cents if details else None), items + shipping)
    return SalesOrderInput(
        store_number=_store_number(order),
        order_date=placed.astimezone(BLING_TZ).date(),
        contact_id=contact_id,
        lines=lines,
        payment_method_id=int(settings.bling_payment_method_id or 0),
        store_id=int(settings.bling_store_id) if settings.bling_store_id else None,
        shipping=shipping,
        discount=discount,
        internal_notes=marker(order),
    )


# --- Bling's failures, told to the outbox ------------------------------------------------------


@contextmanager
def _translated(runtime: Runtime, order: Order) -> Iterator[None]:
    """Bling's failures are logged once (``bling.failed``) and become ``ErpFailure``s carrying
    the outbox's outcome."""
    try:
        yield
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
        raise ErpFailure(
            _outcome(runtime, exc), nothing_done=isinstance(exc, NOTHING_DONE)
        ) from exc


def _outcome(runtime: Runtime, error: BlingError) -> Exception:
    if isinstance(error, BlingDailyLimitReached):
        return PauseKind(error.until, f"Bling's daily request limit is spent: {error}")
    if isinstance(error, BlingNotConnected | InvalidGrant):
        return PauseKind(runtime.clock() + WAIT_FOR_OPERATOR, str(error))
    if isinstance(error, BlingUnreachable) or (
        isinstance(error, BlingServerError) and error.status in DOWN_STATUSES
    ):
        # Bling is down for everyone, not for this order: a payload cannot refuse a connection
        # or make a load balancer answer 503. (A 500 or a timeout may be this order's own
        # doing, so those retry this job alone, with backoff, below.)
        return PauseKind(runtime.clock() + WAIT_FOR_BLING, f"Bling is down: {error}")
    if isinstance(error, BlingRateLimited):
        return RetryLater(str(error), delay=max(error.retry_after, 1.0))
    if isinstance(error, BlingOutcomeUnknown | BlingServerError | BlingUnavailable):
        return RetryLater(str(error))
    return RetryLater(f"{type(error).__name__}: {error}")


# --- the cancelled situation -------------------------------------------------------------------

_situations: dict[str, int] = {}
_situations_lock = threading.Lock()


def _cancelled_situation(runtime: Runtime, client: BlingClient, order: Order) -> int:
    """The id of the sales orders' "Cancelado" in this account: ``BLING_CANCELLED_SITUATION_ID``
    when set, else discovered once per process and account (two requests; a standard situation
    keeps its id for good)."""
    configured = runtime.settings.bling_cancelled_situation_id
    if configured:
        return int(configured)
    account = client.base_url
    with _situations_lock:
        cached = _situations.get(account)
    if cached is not None:
        return cached
    with _translated(runtime, order):
        try:
            found = sales_order_situation(client, CANCELLED).id
        except SituationNotFound as exc:
            raise ErpFailure(
                PauseKind(
                    runtime.clock() + WAIT_FOR_OPERATOR,
                    f"Bling's sales orders have no {CANCELLED!r} situation ({exc}): set "
                    "BLING_CANCELLED_SITUATION_ID",
                ),
                nothing_done=True,
            ) from exc
    with _situations_lock:
        _situations[account] = found
    return found


# --- the catalog and the contact ---------------------------------------------------------------


def _product_ids(runtime: Runtime, order: Order, only: list[str] | None = None) -> dict[str, int]:
    skus = sorted(set(only) if only is not None else {line.sku for line in order.lines})
    with runtime.uow(read_only=True) as uow:
        rows = uow.connection.execute(
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
