"""Orders out: a confirmed order reaches the ERP, then its stock is posted there; a cancelled
one is undone there.

Long because the way there and the way back are one set of recorded steps over one order row
(each run re-reads it, records a step before the next, and hands a cancellation that landed
mid-way to the other side); split, each half would need the other's helpers.

The use cases of three outbox kinds (``FORWARD_ORDER``, ``REVERSE_ORDER``, ``CANCEL_ORDER``;
the fourth, ``STOCK_ENTRY``, is orders/adjustments.py's, registered here with them), over the
ports of orders/ports.py: the unit of work and an ``ErpGateway`` (Bling's is erp/forwarding.py;
a store without an ERP uses ``NullGateway``). The outbox runs
them at least once, never exactly once: a worker killed after the ERP answered but before the
result was written, a lost answer, a lease that ran out all make a step run again. The ERP has
no idempotency key, so every step is made safe to repeat:

1. **Re-read the order.** Gone (``shop/redact``), cancelled, not paid yet, a test order, or
   already forwarded: stop.
2. **Sales order.** Unless its ERP id is recorded, the gateway finds the one this service made
   (Bling: by ``numeroLoja``, the Shopify order name, and our marker in its internal notes) or
   creates it; a create is recorded as requested before it is sent (under the order's lock: a
   cancelled order gets none), the id once known. A sales order under the order's number that
   this service did not make (another integration imported the order) is never adopted: the
   order is marked ``foreign``, the event alerts, and the job is dead-lettered, nothing posted.
3. **Correction.** Refunds and edits since the sales order was made (its stock entries,
   pending) are written into it while its stock is certainly not posted (``bling_stock``
   ``none``): the whole sales order is rewritten from the lines as they are now, and those
   entries are void (the posting carries them). Once the posting may be made, the sales order
   is left as it is and the entries are sent after it (orders/adjustments.py).
4. **Stock posting.** The ERP's sales order says nowhere whether its stock was posted, so the
   attempt is recorded first (``bling_stock = requested``). The ERP refuses a second posting;
   when the previous attempt's outcome was never learnt (lost answer, 5xx, crash), that refusal
   is read as "it was posted".
5. **Acknowledge**, in one transaction: the order is ``forwarded``, and each line's commitment
   becomes an ``on_hand`` decrease (``StockLevel.acknowledge``), which the gateway notes too;
   the stock entries of refunds and edits made after its sales order are queued.

The sales order is made from the lines as they stand when its create is requested (a refund or
an edit before that only changes the lines); a reversal undoes the entries Bling was told of.

A cancellation that lands while a forward is under way gave the units back already; the forward
then ends by queueing the ERP's side of it: the reversal of whatever it posted, or the
cancellation of the sales order it made; a create whose answer was lost is looked up first.
``reverse`` undoes the posting and, if the order had been acknowledged, puts its units back on
hand; then the sales order's cancellation is queued. ``cancel_sales_order`` moves it to the
ERP's cancelled situation (the reversal comes first), so nobody ships it; a refusal is recorded,
alerted and dead-lettered.

A failure of the ERP reaches the outbox as the outcome the gateway chose (``ErpFailure``): retry
with backoff, pause the kind, or dead-letter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

from ..observability.events import emit
from ..outbox import JobPolicy, PermanentFailure, RetryLater
from ..outbox import registry as outbox_registry
from ..outbox.kinds import CANCEL_ORDER, FORWARD_ORDER, REVERSE_ORDER, STOCK_ENTRY
from ..outbox.registry import Handler
from ..unit_of_work import UnitOfWork
from .adjustments import enter_stock, queue_stock_entries, undo_entries
from .model import BlingOrder, BlingStock, EntryState, ForwardStatus, Order, StockEntry
from .ports import ErpFailure, ErpGateway, ErpRefused, ErpSession, ForeignSalesOrder
from .services import quantities, queue_erp_work

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

#: How a use case opens a transaction (``Runtime.uow``).
Units = Callable[..., UnitOfWork]
#: How long a sales order's cancellation waits for its stock reversal to be done first.
WAIT_FOR_REVERSAL = 30.0


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
    cancel_job: Handler,
    entry_job: Handler,
    lease_seconds: float,
    registry: outbox_registry.Registry | None = None,
) -> None:
    """Run the four order kinds with these outbox handlers (each ERP's module has its set:
    module functions, so registering again, as every ``create_app`` does, is a no-op)."""
    target = registry or outbox_registry.default_registry
    job_policy = policy(lease_seconds)
    target.register(FORWARD_ORDER, forward_job, policy=job_policy)
    target.register(REVERSE_ORDER, reverse_job, policy=job_policy)
    target.register(CANCEL_ORDER, cancel_job, policy=job_policy)
    target.register(STOCK_ENTRY, entry_job, policy=job_policy)


@contextmanager
def _outcomes() -> Iterator[None]:
    """The ERP's failures become the outbox outcome the gateway chose for them."""
    try:
        yield
    except ErpFailure as failure:
        raise failure.outcome from failure


# --- FORWARD_ORDER ---------------------------------------------------------------------------


class _Stop(Exception):
    """The forward ends here with ``outcome`` (the order changed under it)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def forward(units: Units, gateway: ErpGateway, shop: str, order_id: int, deadline: Deadline) -> str:
    """Bring one confirmed order to the ERP and acknowledge it; returns what happened."""
    try:
        return _forward(units, gateway, shop, order_id, deadline)
    except _Stop as stop:
        return stop.outcome


def _forward(
    units: Units, gateway: ErpGateway, shop: str, order_id: int, deadline: Deadline
) -> str:
    order = _read(units, shop, order_id)
    if order is None:
        log.info("bling.forward_skipped shop=%s order=%s reason=unknown_order", shop, order_id)
        return "unknown_order"
    if order.forward_status is ForwardStatus.TEST:
        return "test_order"  # never sent to the ERP, cancelled or not
    if order.cancelled:
        return _after_cancellation(units, gateway, order)
    if order.forward_status is ForwardStatus.AWAITING_PAYMENT:
        return "awaiting_payment"  # queued again by its payment (orders/services.py, pay)
    if order.forward_status is not ForwardStatus.PENDING:
        return "already_forwarded"  # a repeated run
    if not quantities(order):
        return "nothing_to_post"  # nothing tracked here was sold: no ERP stock to post
    with _outcomes(), gateway.session(order) as erp:
        if order.bling_order_id is None:
            _ensure_sales_order(units, erp, order, deadline)
        if order.bling_stock is BlingStock.NONE and order.bling_order_id is not None:
            _correct_sales_order(units, erp, order, deadline)
        if order.bling_stock is not BlingStock.POSTED:
            deadline.check("post the stock")
            _post_stock(units, gateway, erp, order)
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
    def before_create(what: str) -> None:
        deadline.check(what)
        _request_sales_order(units, order)

    try:
        erp_order_id = erp.ensure_sales_order(order, before_create)
    except ErpRefused as exc:
        # Refused: nothing was made (our search found none of ours before the create).
        _record_erp_order(units, order, lambda o: o.no_sales_order())
        raise PermanentFailure(f"Bling refused the sales order: {exc}") from exc
    except ForeignSalesOrder as foreign:
        _refuse_foreign(units, order, foreign)
    if erp_order_id is None:
        return  # an ERP without sales orders
    current = _record_erp_order(units, order, lambda o: o.sales_order_known(erp_order_id))
    if current.cancelled:
        # orders/cancelled landed while the ERP made it: its units are back, so no posting;
        # the sales order is cancelled there instead.
        raise _Stop("cancelled_meanwhile")


def _correct_sales_order(units: Units, erp: ErpSession, order: Order, deadline: Deadline) -> None:
    """Refunds and edits since the sales order was made wait as stock entries (pending). Its
    stock certainly not posted yet, the sales order itself is rewritten from the lines as they
    are now, so the posting (and the warehouse) take the corrected quantities; the entries it
    carries are then void, never sent. Rewriting twice gives the same order, so a lost answer
    or a crash before the entries are marked only rewrites it again. One that lands after the
    lines were read stays pending, and is sent after the posting. Refused (the ERP will not
    change it): the entries stay, and the posting takes the order as it was made."""
    current = _read(units, order.shop, order.order_id)
    if current is None:
        raise _Stop("erased")
    pending = {(e.adjustment, e.sku) for e in current.stock_entries if _in_order_due(e)}
    if not pending or current.cancelled or current.bling_order_id is None:
        return
    deadline.check("correct the sales order")
    try:
        erp.update_sales_order(current, current.bling_order_id)
    except ErpRefused as exc:
        emit(
            "bling.sales_order_update_refused",
            level=logging.ERROR,
            shop=order.shop,
            order=order.order_id,
            name=order.name,
            bling_order=current.bling_order_id,
            reason=str(exc)[:300],
        )
        return
    with units() as uow:
        locked = uow.orders.get(order.shop, order.order_id, lock=True)
        if locked is None:
            raise _Stop("erased")
        for entry in locked.stock_entries:
            if (entry.adjustment, entry.sku) in pending and entry.state is EntryState.PENDING:
                entry.state = EntryState.VOID  # carried by the sales order itself now
        uow.orders.save_stock_entries(locked)
        uow.record(
            "bling.sales_order_corrected",
            shop=order.shop,
            order=order.order_id,
            bling_order=current.bling_order_id,
            adjustments=sorted({adjustment for adjustment, _ in pending}),
        )
        uow.commit()
    order.lines = current.lines


def _in_order_due(entry: StockEntry) -> bool:
    """An entry the sales order can carry instead: pending, and not an undo of a posted one."""
    return entry.state is EntryState.PENDING and not entry.adjustment.startswith("undo:")


def _request_sales_order(units: Units, order: Order) -> None:
    """Record, under the order's lock, that a create is about to be sent; a cancelled (or
    erased) order gets no sales order."""
    with units() as uow:
        current = uow.orders.get(order.shop, order.order_id, lock=True)
        if current is None:
            raise _Stop("erased")
        if not current.request_sales_order():
            # Cancelled: no create. The search just made found none of ours, so an earlier
            # create whose answer was lost never landed either.
            current.no_sales_order()
            uow.orders.save_erp_order(current)
            uow.orders.save_stock_entries(current)
            outcome = _after_cancellation_in(uow, current)
            uow.commit()
            raise _Stop(outcome)
        uow.orders.save_erp_order(current)
        uow.commit()
    order.bling_order = current.bling_order
    # A refund or an edit may have changed the lines since the first read: the sales order is
    # made from them as they are now (later changes become stock entries, orders/adjustments.py).
    order.lines = current.lines


def _record_erp_order(units: Units, order: Order, change: Callable[[Order], None]) -> Order:
    """Apply ``change`` to the order's sales-order state under its lock, write it, and queue the
    ERP's work if the order is cancelled by now; returns the order as it now stands."""
    with units() as uow:
        current = uow.orders.get(order.shop, order.order_id, lock=True)
        if current is None:  # erased meanwhile (shop/redact): nothing left to account for
            raise _Stop("erased")
        change(current)
        uow.orders.save_erp_order(current)
        uow.orders.save_stock_entries(current)  # a create that never landed voids them
        if current.cancelled:
            queue_erp_work(uow, current)
        uow.commit()
    order.bling_order_id, order.bling_order = current.bling_order_id, current.bling_order
    return current


def _refuse_foreign(units: Units, order: Order, foreign: ForeignSalesOrder) -> NoReturn:
    """Another integration made the ERP's sales order for this order (Bling's own Shopify import):
    adopting it would post the stock twice, so nothing is posted; the units stay committed here
    (the safe side) until someone settles it."""
    ids = list(foreign.erp_order_ids)
    _record_erp_order(units, order, lambda o: o.refuse_foreign())
    emit(
        "bling.foreign_sales_order",
        level=logging.ERROR,
        shop=order.shop,
        order=order.order_id,
        name=order.name,
        bling_orders=ids,
    )
    raise PermanentFailure(
        f"Bling already has sales order(s) {ids} numbered {order.name or order.order_id} that "
        "this service did not create (Bling's own Shopify order import?): not adopted, nothing "
        "posted. Turn that import off, cancel or delete the order in Bling, then `outbox retry`"
    )


def _post_stock(units: Units, gateway: ErpGateway, erp: ErpSession, order: Order) -> None:
    outcome_unknown = order.bling_stock is BlingStock.REQUESTED
    _save_stock_state(units, order, BlingStock.REQUESTED)
    try:
        erp.post_stock(order.bling_order_id)
    except ErpRefused as exc:
        if not outcome_unknown:  # refused outright: nothing was posted
            _save_stock_state(units, order, BlingStock.NONE)
            current = _read(units, order.shop, order.order_id)
            if current is not None and current.cancelled:
                # Cancelled meanwhile (the ERP may refuse to post a cancelled sales order): the
                # units are back here and nothing was posted; the cancellation goes on.
                raise _Stop(_after_cancellation(units, gateway, current)) from exc
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
            queue_erp_work(uow, current)
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
        queue_stock_entries(uow, current)  # refunds and edits made after its sales order
        uow.commit()
    return "forwarded"


def _after_cancellation(units: Units, gateway: ErpGateway, order: Order) -> str:
    """The order was cancelled before it was forwarded; its units are back already. What the
    ERP may hold of it is queued to be undone: a posting the forward asked for, a sales order
    it made. A create whose answer was lost is looked up first (the forward is the one that
    sent it, and only its job runs after it)."""
    if order.forward_status is not ForwardStatus.CANCELLED:
        return "reversal_owned"  # reversal_pending/reversed: the reversal job owns it
    if order.bling_order is BlingOrder.REQUESTED and order.bling_order_id is None:
        with _outcomes(), gateway.session(order) as erp:
            found = erp.find_sales_order(order)
        if found is None:
            _record_erp_order(units, order, lambda o: o.no_sales_order())
            return "cancelled"  # the create never landed: nothing in the ERP
        order = _record_erp_order(units, order, lambda o: o.sales_order_known(found))
    if order.bling_stock not in (BlingStock.REQUESTED, BlingStock.POSTED) and not (
        order.erp_cancellation_due
    ):
        return "cancelled"
    with units() as uow:
        current = uow.orders.get(order.shop, order.order_id, lock=True)
        if current is None:
            return "erased"
        outcome = _after_cancellation_in(uow, current)
        uow.commit()
    return outcome


def _after_cancellation_in(uow: UnitOfWork, current: Order) -> str:
    """In ``uow`` (the order read under its lock): queue the ERP's side of its cancellation."""
    if current.bling_stock in (BlingStock.REQUESTED, BlingStock.POSTED):
        # A forward got as far as asking the ERP to post the stock: undo it there.
        current.undo_late_posting()
        uow.orders.save(current)
    queue_erp_work(uow, current)
    if current.needs_reversal:
        return "reversal_queued"
    if current.erp_cancellation_due:
        return "cancellation_queued"
    return "cancelled"


# --- REVERSE_ORDER ---------------------------------------------------------------------------


def reverse(units: Units, gateway: ErpGateway, shop: str, order_id: int) -> str:
    """Undo the order's stock posting in the ERP; an acknowledged order's units go back on
    hand here. Then its sales order's cancellation is queued."""
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
        undo_entries(current)  # refunds and edits Bling was told of since the posting
        uow.orders.save(current)
        queue_stock_entries(uow, current)
        queue_erp_work(uow, current)  # nothing left to reverse: the sales order is cancelled next
        uow.commit()
    log.info("bling.reversed shop=%s order=%s restocked=%s", shop, order_id, restocked)
    return "reversed"


# --- CANCEL_ORDER ----------------------------------------------------------------------------


def cancel_sales_order(units: Units, gateway: ErpGateway, shop: str, order_id: int) -> str:
    """Move a cancelled order's sales order to the ERP's cancelled situation, once nothing of
    its stock is left to reverse there. The ERP changes nothing when asked twice, so a lost
    answer or a killed worker only asks again. A refusal is recorded (``cancel_refused``),
    alerted, and dead-lettered: ``outbox retry`` asks again once someone has looked."""
    order = _read(units, shop, order_id)
    if order is None or not order.cancelled or order.bling_order_id is None:
        return "nothing_to_cancel"
    if not order.sales_order_maybe_made:
        return "nothing_to_cancel"  # cancelled already (a repeated run), or not ours
    if not order.erp_stock_settled:
        # A posting is (or may be) in the ERP, and its reversal is queued or will be: it first.
        raise RetryLater("the stock reversal comes first", delay=WAIT_FOR_REVERSAL)
    try:
        return _cancel_sales_order(units, gateway, order, order.bling_order_id)
    except _Stop as stop:
        return stop.outcome


def _cancel_sales_order(units: Units, gateway: ErpGateway, order: Order, erp_order_id: int) -> str:
    shop, order_id = order.shop, order.order_id
    with _outcomes(), gateway.session(order) as erp:
        try:
            erp.cancel_sales_order(erp_order_id)
        except ErpRefused as exc:
            _record_erp_order(units, order, lambda o: o.erp_cancel_refused())
            emit(
                "bling.cancellation_refused",
                level=logging.ERROR,
                shop=shop,
                order=order_id,
                name=order.name,
                bling_order=erp_order_id,
                reason=str(exc)[:300],
            )
            raise PermanentFailure(
                f"Bling refused to cancel sales order {erp_order_id}: {exc}. It may still be "
                "shipped: cancel it by hand in Bling, or fix the cause and `outbox retry`"
            ) from exc
        calls = erp.calls
    _record_erp_order(units, order, lambda o: o.erp_cancelled())
    emit(
        "bling.sales_order_cancelled",
        shop=shop,
        order=order_id,
        name=order.name,
        bling_order=erp_order_id,
        calls=calls,
    )
    return "cancelled"


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

    def find_sales_order(self, order: Order) -> int | None:
        return None

    def cancel_sales_order(self, erp_order_id: int) -> None:
        return None

    def update_sales_order(self, order: Order, erp_order_id: int) -> None:
        return None

    def enter_stock(self, sku: str, quantity: int, note: str) -> None:
        return None


class NullGateway:
    """No ERP (``ERP_BACKEND=none``): the ledger's own ``on_hand`` is the truth, so a confirmed
    order is acknowledged at once (its units leave ``on_hand``) and nothing is sent anywhere."""

    @classmethod
    def register(
        cls, lease_seconds: float, registry: outbox_registry.Registry | None = None
    ) -> None:
        register_jobs(
            _forward_without_erp,
            _reverse_without_erp,
            _cancel_without_erp,
            _enter_without_erp,
            lease_seconds,
            registry,
        )

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


def _cancel_without_erp(runtime: Runtime, payload: dict[str, Any]) -> None:
    shop, order_id = order_key(payload)
    cancel_sales_order(runtime.uow, NullGateway(), shop, order_id)


def _enter_without_erp(runtime: Runtime, payload: dict[str, Any]) -> None:
    shop, order_id = order_key(payload)
    enter_stock(runtime.uow, NullGateway(), shop, order_id, adjustment_of(payload))


def adjustment_of(payload: dict[str, Any]) -> str:
    """The adjustment a ``STOCK_ENTRY`` job is about (outbox/kinds.py)."""
    adjustment = payload.get("adjustment")
    if not isinstance(adjustment, str) or not adjustment:
        raise PermanentFailure(f"not a stock entry job payload: {payload!r}")
    return adjustment
