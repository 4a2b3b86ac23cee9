"""Orders out: a confirmed order reaches the ERP, then its stock is posted there.

The use cases of the two outbox kinds (``FORWARD_ORDER``, ``REVERSE_ORDER``), over the ports of
orders/ports.py: the unit of work and an ``ErpGateway`` (Bling's is erp/forwarding.py; a store
without an ERP uses ``NullGateway``). The outbox runs them at least once, never exactly once: a
worker killed after the ERP answered but before the result was written, a lost answer, a lease
that ran out all make a step run again. The ERP has no idempotency key, so every step is made
safe to repeat:

1. **Re-read the order.** Gone (``shop/redact``), cancelled, or already forwarded: stop.
2. **Sales order.** Unless its ERP id is recorded, the gateway finds it (Bling: by
   ``numeroLoja``, the Shopify order name) or creates it; the id is recorded.
3. **Stock posting.** The ERP's sales order says nowhere whether its stock was posted, so the
   attempt is recorded first (``bling_stock = requested``). The ERP refuses a second posting;
   when the previous attempt's outcome was never learnt (lost answer, 5xx, crash), that refusal
   is read as "it was posted".
4. **Acknowledge**, in one transaction: the order is ``forwarded``, and each line's commitment
   becomes an ``on_hand`` decrease (``StockLevel.acknowledge``), which the gateway notes too.

A cancellation that lands while a forward is under way gave the units back already; the forward
then ends by queueing the reversal of whatever it posted. ``reverse`` undoes the posting and, if
the order had been acknowledged, puts its units back on hand.

A failure of the ERP reaches the outbox as the outcome the gateway chose (``ErpFailure``): retry
with backoff, pause the kind, or dead-letter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..observability.events import emit
from ..outbox import JobPolicy, PermanentFailure, RetryLater
from ..outbox import registry as outbox_registry
from ..outbox.kinds import FORWARD_ORDER, REVERSE_ORDER
from ..outbox.registry import Handler
from ..unit_of_work import UnitOfWork
from .model import BlingStock, ForwardStatus, Order
from .ports import ErpFailure, ErpGateway, ErpRefused, ErpSession
from .services import enqueue_order_job, quantities

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

#: How a use case opens a transaction (``Runtime.uow``).
Units = Callable[..., UnitOfWork]


def policy(lease_seconds: float) -> JobPolicy:
    """Retries spread up to 5 minutes apart (an ERP outage is retried at a calm pace, and the
    backlog drains soon after it ends); about a day of them before a job is dead-lettered."""
    return JobPolicy(
        backoff_base_seconds=1.0,
        backoff_cap_seconds=300.0,
        max_attempts=300,
        lease_seconds=lease_seconds,
    )


class Deadline:
    """A second run of a job may start once its lease ends, and two runs that both search and
    then both create would make two sales orders. So a run starts no ERP write after a third of
    the lease: a write (no resend once sent; a few 429 retries) ends well inside the rest."""

    def __init__(
        self, lease_seconds: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.monotonic = monotonic
        self.latest_write = monotonic() + lease_seconds / 3

    def check(self, what: str) -> None:
        if self.monotonic() > self.latest_write:
            raise RetryLater(f"too late in this run to {what}; the next attempt will", delay=0)


def order_key(payload: dict[str, Any]) -> tuple[str, int]:
    """The order a job is about (payload ``{"shop", "order_id"}``, outbox/kinds.py)."""
    try:
        return str(payload["shop"]), int(payload["order_id"])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure(f"not an order job payload: {payload!r}") from None


def register_jobs(
    forward_job: Handler,
    reverse_job: Handler,
    lease_seconds: float,
    registry: outbox_registry.Registry | None = None,
) -> None:
    """Run the two order kinds with these outbox handlers (each ERP's module has its pair:
    module functions, so registering again, as every ``create_app`` does, is a no-op)."""
    target = registry or outbox_registry.default_registry
    job_policy = policy(lease_seconds)
    target.register(FORWARD_ORDER, forward_job, policy=job_policy)
    target.register(REVERSE_ORDER, reverse_job, policy=job_policy)


@contextmanager
def _outcomes() -> Iterator[None]:
    """The ERP's failures become the outbox outcome the gateway chose for them."""
    try:
        yield
    except ErpFailure as failure:
        raise failure.outcome from failure


# --- FORWARD_ORDER ---------------------------------------------------------------------------


def forward(units: Units, gateway: ErpGateway, shop: str, order_id: int, deadline: Deadline) -> str:
    """Bring one confirmed order to the ERP and acknowledge it; returns what happened."""
    order = _read(units, shop, order_id)
    if order is None:
        log.info("bling.forward_skipped shop=%s order=%s reason=unknown_order", shop, order_id)
        return "unknown_order"
    if order.cancelled:
        return _after_cancellation(units, order)
    if order.forward_status is not ForwardStatus.PENDING:
        return "already_forwarded"  # a repeated run
    if not order.lines:
        return "nothing_to_post"  # nothing tracked here was sold: no ERP stock to post
    with _outcomes(), gateway.session(order) as erp:
        if order.bling_order_id is None:
            _ensure_sales_order(units, erp, order, deadline)
        if order.bling_stock is not BlingStock.POSTED:
            deadline.check("post the stock")
            _post_stock(units, erp, order)
        calls = erp.calls
    outcome = _acknowledge(units, gateway, order)
    emit(
        "bling.forwarded",
        shop=shop,
        order=order_id,
        name=order.name,
        bling_order=order.bling_order_id,
        calls=calls,
        outcome=outcome,
    )
    return outcome


def _ensure_sales_order(units: Units, erp: ErpSession, order: Order, deadline: Deadline) -> None:
    try:
        order.bling_order_id = erp.ensure_sales_order(order, deadline.check)
    except ErpRefused as exc:
        raise PermanentFailure(f"Bling refused the sales order: {exc}") from exc
    if order.bling_order_id is not None:
        with units() as uow:
            uow.orders.save_erp_order(order)
            uow.commit()


def _post_stock(units: Units, erp: ErpSession, order: Order) -> None:
    outcome_unknown = order.bling_stock is BlingStock.REQUESTED
    _save_stock_state(units, order, BlingStock.REQUESTED)
    try:
        erp.post_stock(order.bling_order_id)
    except ErpRefused as exc:
        if not outcome_unknown:  # refused outright: nothing was posted
            _save_stock_state(units, order, BlingStock.NONE)
            raise PermanentFailure(f"Bling refused the stock posting: {exc}") from exc
        # Asked before without learning the answer, and now refused: the ERP refuses a second
        # posting of one order, so the first one went through.
        log.warning(
            "bling.stock_already_posted order=%s bling_order=%s answer=%s",
            order.order_id,
            order.bling_order_id,
            exc,
        )
    except ErpFailure as failure:
        if failure.nothing_done and not outcome_unknown:
            _save_stock_state(units, order, BlingStock.NONE)  # certainly not posted
        raise
    order.record_stock(BlingStock.POSTED)


def _acknowledge(units: Units, gateway: ErpGateway, order: Order) -> str:
    """The ERP has the order and its stock: turn the commitments into smaller on-hand figures."""
    reference = f"shopify:{order.order_id}"
    with units() as uow:
        current = uow.orders.get(order.shop, order.order_id, lock=True)
        if current is None:  # erased meanwhile (shop/redact): nothing left to account for
            return "erased"
        if current.undo_late_posting(posted=True):
            # orders/cancelled gave the units back while this forward was in the ERP; the
            # posting just made must be undone there.
            uow.orders.save(current)
            enqueue_order_job(uow, REVERSE_ORDER, current)
            uow.commit()
            return "cancelled_meanwhile"
        if current.forward_status is not ForwardStatus.PENDING:
            return str(current.forward_status)  # a twin run acknowledged it first
        sold = quantities(current)
        levels = uow.stock.lock(sold)
        for sku, quantity in sorted(sold.items()):
            levels[sku].acknowledge(quantity, reference)
        gateway.note_acknowledged(uow, sold, reference)
        current.acknowledge(uow.now)
        uow.orders.save(current)
        uow.commit()
    return "forwarded"


def _after_cancellation(units: Units, order: Order) -> str:
    """The order was cancelled before it was forwarded; its units are back already."""
    if order.forward_status is not ForwardStatus.CANCELLED:
        return "reversal_owned"  # reversal_pending/reversed: the reversal job owns it
    if order.bling_stock in (BlingStock.REQUESTED, BlingStock.POSTED):
        # A forward got as far as asking the ERP to post the stock: undo it there.
        with units() as uow:
            current = uow.orders.get(order.shop, order.order_id, lock=True)
            if current is not None and current.undo_late_posting():
                uow.orders.save(current)
                enqueue_order_job(uow, REVERSE_ORDER, current)
                uow.commit()
        return "reversal_queued"
    if order.bling_order_id is not None:
        log.warning(
            "bling.orphan_sales_order shop=%s order=%s bling_order=%s: the order was cancelled "
            "after its Bling sales order was created; cancel it in Bling",
            order.shop,
            order.order_id,
            order.bling_order_id,
        )
    return "cancelled"


# --- REVERSE_ORDER ---------------------------------------------------------------------------


def reverse(units: Units, gateway: ErpGateway, shop: str, order_id: int) -> str:
    """Undo the order's stock posting in the ERP; an acknowledged order's units go back on
    hand here."""
    order = _read(units, shop, order_id)
    if order is None or not order.needs_reversal:
        return "nothing_to_reverse"
    if order.bling_order_id is not None and order.stock_maybe_posted:
        with _outcomes(), gateway.session(order) as erp:  # one write only, at the start
            _save_stock_state(units, order, BlingStock.REVERSING)
            try:
                erp.reverse_stock(order.bling_order_id)
            except ErpRefused as exc:
                # The ERP refuses to reverse what is not posted: either an earlier attempt whose
                # answer was lost reversed it, or the posting asked for never happened. Both
                # mean "done".
                log.warning(
                    "bling.nothing_to_reverse order=%s bling_order=%s answer=%s",
                    order.order_id,
                    order.bling_order_id,
                    exc,
                )
    reference = f"shopify:{order_id}"
    with units() as uow:
        current = uow.orders.get(shop, order_id, lock=True)
        if current is None or not current.needs_reversal:
            return "nothing_to_reverse"
        restocked = current.acknowledged
        if restocked:
            sold = quantities(current)
            levels = uow.stock.lock(sold)
            for sku, quantity in sorted(sold.items()):
                levels[sku].restock(quantity, reference)
        current.reversed()
        uow.orders.save(current)
        uow.commit()
    log.info("bling.reversed shop=%s order=%s restocked=%s", shop, order_id, restocked)
    return "reversed"


# --- helpers ---------------------------------------------------------------------------------


def _read(units: Units, shop: str, order_id: int) -> Order | None:
    with units(read_only=True) as uow:
        return uow.orders.get(shop, order_id)


def _save_stock_state(units: Units, order: Order, state: BlingStock) -> None:
    order.record_stock(state)
    with units() as uow:
        uow.orders.save_stock_state(order)
        uow.commit()


# --- a store without an ERP ------------------------------------------------------------------


class _NullSession:
    calls = 0

    def ensure_sales_order(self, order: Order, before_write: Callable[[str], None]) -> int | None:
        return None

    def post_stock(self, erp_order_id: int | None) -> None:
        return None

    def reverse_stock(self, erp_order_id: int | None) -> None:
        return None


class NullGateway:
    """No ERP (``ERP_BACKEND=none``): the ledger's own ``on_hand`` is the truth, so a confirmed
    order is acknowledged at once (its units leave ``on_hand``) and nothing is sent anywhere."""

    @classmethod
    def register(
        cls, lease_seconds: float, registry: outbox_registry.Registry | None = None
    ) -> None:
        register_jobs(_forward_without_erp, _reverse_without_erp, lease_seconds, registry)

    @contextmanager
    def session(self, order: Order) -> Iterator[ErpSession]:
        yield _NullSession()

    def note_acknowledged(
        self, uow: UnitOfWork, quantities: dict[str, int], reference: str
    ) -> None:
        return None


def _forward_without_erp(runtime: Runtime, payload: dict[str, Any]) -> None:
    shop, order_id = order_key(payload)
    deadline = Deadline(runtime.settings.bling_job_lease_seconds)
    forward(runtime.uow, NullGateway(), shop, order_id, deadline)


def _reverse_without_erp(runtime: Runtime, payload: dict[str, Any]) -> None:
    shop, order_id = order_key(payload)
    reverse(runtime.uow, NullGateway(), shop, order_id)
