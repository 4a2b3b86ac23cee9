"""Refunds and order edits: units leave an order's lines, or join them, after the sale.

``adjust`` runs in the webhook's transaction (``refunds/create``, ``orders/edited``), under the
order's lock, once per adjustment (``refund:{id}``, ``edit:{id}``: a refund is applied once even
when Shopify delivers it under several webhook ids). Per line:

- **Removed units** (a restocked refund line, an edit's removal) leave the line
  (``OrderLine.removed``). Not yet acknowledged by the ERP, they leave ``committed`` here
  (sellable again) and the forward sends only what remains; acknowledged, they come back
  ``on_hand`` here. A refund with ``no_restock`` changes nothing.
- **Added units** (an edit's addition) are committed from available (an oversell recorded as
  the sale's); on an acknowledged order they leave ``on_hand`` at once. A line the order did not
  have is named by id only (``orders/edited`` carries no SKU): it is applied later, as its own
  adjustment (``edit:{id}:new_lines``), by the ``EDIT_LINES`` job, which reads its SKU from
  Shopify (shopify/order_edits.py).
- **The ERP.** When its sales order may be made already (a create requested, or known), the
  difference is a stock entry (``StockEntry``: + back in stock, − out of it), recorded here and
  sent by the ``STOCK_ENTRY`` job once the order's own posting is acknowledged (``enter_stock``;
  the forward queues it then). Before that the sales order is made from the corrected lines
  and no entry is needed. A cancelled (or test) order gave all its units back already: the
  adjustment is recorded and changes nothing.

``enter_stock`` records each entry as requested before it is sent, so it is sent at most once;
one whose answer was lost is never re-sent (the ERP keeps no key for it): it is dead-lettered
for a person to check in the ERP, and ``outbox retry`` after marking nothing changes that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..outbox import PermanentFailure
from ..outbox.kinds import EDIT_LINES, STOCK_ENTRY
from ..unit_of_work import UnitOfWork
from .model import (
    Adjustment,
    BlingOrder,
    EntryState,
    ForwardStatus,
    LineChange,
    Order,
    OrderLine,
    StockEntry,
)
from .ports import ErpFailure, ErpGateway, ErpRefused

log = logging.getLogger(__name__)

__all__ = ["Adjustment", "LineChange", "adjust", "enter_stock"]

Units = Callable[..., UnitOfWork]


@dataclass
class AdjustmentResult:
    #: ``adjusted``, ``duplicate_adjustment``, ``unknown_order``, ``order_closed`` (cancelled or
    #: a test order: its units are back already) or ``nothing_to_adjust``.
    outcome: str
    #: Line ids the order does not have and the payload gave no SKU for (not applied here: the
    #: ``EDIT_LINES`` job reads their SKUs from Shopify and applies them).
    unknown_lines: list[int] = field(default_factory=list)


def entry_key(order: Order, adjustment: str) -> str:
    return f"{order.shop}:{order.order_id}:{adjustment}"


def queue_stock_entries(uow: UnitOfWork, order: Order) -> None:
    """Queue a job per adjustment with entries still to send (the order is acknowledged)."""
    for adjustment in sorted({e.adjustment for e in order.stock_entries if _due(e)}):
        payload = {"shop": order.shop, "order_id": order.order_id, "adjustment": adjustment}
        uow.enqueue(STOCK_ENTRY, entry_key(order, adjustment), payload)


#: The key of the additions an edit made of lines the order did not have, applied once their
#: SKUs are read from Shopify (``EDIT_LINES``): the edit's own key is taken by the rest of it.
NEW_LINES_SUFFIX = ":new_lines"


def queue_new_lines(uow: UnitOfWork, order: Order, change: Adjustment, unknown: list[int]) -> None:
    """Queue the ``EDIT_LINES`` job of an edit's added lines that have no SKU here."""
    wanted = set(unknown)
    lines = [{"id": c.line_id, "quantity": c.quantity} for c in change.added if c.line_id in wanted]
    payload = {
        "shop": order.shop,
        "order_id": order.order_id,
        "adjustment": change.key + NEW_LINES_SUFFIX,
        "lines": lines,
    }
    uow.enqueue(EDIT_LINES, entry_key(order, change.key), payload)
    uow.record(
        "order.adjustment_lines_to_read",
        shop=order.shop,
        order=order.order_id,
        adjustment=change.key,
        lines=unknown,
    )


def _due(entry: StockEntry) -> bool:
    return entry.state in (EntryState.PENDING, EntryState.REQUESTED)


def adjust(uow: UnitOfWork, change: Adjustment) -> AdjustmentResult:
    """Apply a refund's restocked lines or an edit's additions and removals, once."""
    order = uow.orders.get(change.shop, change.order_id, lock=True)
    if order is None:
        return AdjustmentResult("unknown_order")
    if change.key in order.adjustments:
        return AdjustmentResult("duplicate_adjustment")
    order.adjustments.append(change.key)
    if order.cancelled or order.forward_status is ForwardStatus.TEST:
        uow.orders.save(order)
        return AdjustmentResult("order_closed")
    lines = {line.line_id: line for line in order.lines}
    unknown = [c.line_id for c in change.added if c.line_id not in lines and not c.sku]
    skus = {lines[c.line_id].sku for c in change.removed if c.line_id in lines}
    skus |= {lines[c.line_id].sku if c.line_id in lines else c.sku or "" for c in change.added}
    levels = uow.stock.lock(skus - {""}, missing_ok=True)
    acknowledged = order.acknowledged
    # The ERP may hold a sales order made from the lines as they were: it gets the difference.
    erp_has_order = acknowledged or order.bling_order in (BlingOrder.REQUESTED, BlingOrder.CREATED)
    reference = f"shopify:{order.order_id}:{change.key}"
    differences: dict[str, int] = {}
    for removal in change.removed:
        line = lines.get(removal.line_id)
        units = min(removal.quantity, line.remaining) if line else 0
        if line is None or units <= 0 or line.sku not in levels:
            continue
        line.removed += units
        if acknowledged:
            levels[line.sku].restock(units, reference)
        else:
            levels[line.sku].uncommit(units, reference)
        differences[line.sku] = differences.get(line.sku, 0) + units
    oversold: dict[str, int] = {}
    for addition in change.added:
        line = lines.get(addition.line_id)
        sku = line.sku if line else addition.sku
        if sku is None or sku not in levels or addition.quantity <= 0:
            continue
        short = levels[sku].commit(addition.quantity, reference)
        if acknowledged:
            levels[sku].acknowledge(addition.quantity, reference)
        if line is None:
            line = OrderLine(
                addition.line_id,
                sku,
                addition.quantity,
                0,
                addition.quantity,
                short,
                addition.unit_price_cents,
                addition.title,
            )
            order.lines.append(line)
            lines[line.line_id] = line
        else:
            line.quantity += addition.quantity
            line.from_available += addition.quantity
            line.oversold += short
        if short:
            oversold[sku] = oversold.get(sku, 0) + short
        differences[sku] = differences.get(sku, 0) - addition.quantity
    if erp_has_order:
        for sku, quantity in sorted(differences.items()):
            if quantity:
                order.stock_entries.append(StockEntry(change.key, sku, quantity))
    uow.orders.save(order)
    if oversold:
        uow.record(
            "order.oversold",
            level=logging.ERROR,
            shop=order.shop,
            order=order.order_id,
            name=order.name,
            lines=oversold,
            units=sum(oversold.values()),
        )
    if unknown:
        # orders/edited names an added line by id only; one the order did not have (a new
        # variant) has no SKU here: the EDIT_LINES job reads it from Shopify and applies it.
        queue_new_lines(uow, order, change, unknown)
    if acknowledged:
        queue_stock_entries(uow, order)  # else the forward's acknowledgement queues them
    if not differences:
        return AdjustmentResult("nothing_to_adjust", unknown)
    uow.record(
        "order.adjusted",
        shop=order.shop,
        order=order.order_id,
        adjustment=change.key,
        units=differences,
        forwarded=acknowledged,
    )
    return AdjustmentResult("adjusted", unknown)


# --- STOCK_ENTRY ---------------------------------------------------------------------------


def enter_stock(units: Units, gateway: ErpGateway, shop: str, order_id: int, key: str) -> str:
    """Send one adjustment's stock entries to the ERP, each at most once."""
    with units(read_only=True) as uow:
        order = uow.orders.get(shop, order_id)
    if order is None:
        return "unknown_order"
    entries = [e for e in order.stock_entries if e.adjustment == key and _due(e)]
    if not entries:
        return "nothing_to_enter"
    if not order.acknowledged:
        if order.cancelled:
            # Cancelled before its posting was acknowledged: the reversal puts back what the
            # posting took; these differences never reach the ERP.
            _record(units, order, key, {e.sku for e in entries}, EntryState.VOID)
            return "void"
        return "awaiting_forward"  # the acknowledgement queues this job again
    lost = [e.sku for e in entries if e.state is EntryState.REQUESTED]
    if lost:
        raise PermanentFailure(
            f"the stock entry of {', '.join(lost)} for order {order.name or order_id} ({key}) "
            "was sent and its answer lost: check the SKU's stock movements in Bling; it is never "
            "sent twice"
        )
    try:
        with gateway.session(order) as erp:
            for entry in entries:
                _record(units, order, key, {entry.sku}, EntryState.REQUESTED)
                note = f"Shopify {order.name or order_id} {key}"
                try:
                    erp.enter_stock(entry.sku, entry.quantity, note)
                except ErpRefused as exc:
                    _record(units, order, key, {entry.sku}, EntryState.PENDING)
                    raise PermanentFailure(f"Bling refused the stock entry: {exc}") from exc
                except ErpFailure as failure:
                    if failure.nothing_done:
                        _record(units, order, key, {entry.sku}, EntryState.PENDING)
                    raise
                _posted(units, gateway, order, entry)
    except ErpFailure as failure:
        raise failure.outcome from failure
    log.info("bling.stock_entered shop=%s order=%s adjustment=%s", shop, order_id, key)
    return "entered"


def _posted(units: Units, gateway: ErpGateway, order: Order, entry: StockEntry) -> None:
    """Record the entry as made. Units taken out of the ERP's stock are noted like an
    acknowledged posting (the ledger took them off ``on_hand`` already), so a balance read
    before this is applied without them (erp/stock_sync.py); units put back need no note: a
    balance without them only undercounts until the next one."""
    entry.state = EntryState.POSTED
    with units() as uow:
        if entry.quantity < 0:
            uow.stock.lock({entry.sku}, missing_ok=True)
            reference = f"shopify:{order.order_id}:{entry.adjustment}"
            gateway.note_acknowledged(uow, {entry.sku: -entry.quantity}, reference)
        uow.orders.save_stock_entries(order)
        uow.commit()


def undo_entries(order: Order) -> None:
    """The order's posting is reversed in the ERP, which puts back what its sales order took,
    not what the entries changed since: an entry not sent yet is void, and each one made is
    undone by its opposite (adjustment ``undo:{key}``, queued with the others). One whose
    answer was lost stays with its dead-lettered job, for a person to settle."""
    for entry in list(order.stock_entries):
        if entry.adjustment.startswith("undo:"):
            continue
        if entry.state is EntryState.PENDING:
            entry.state = EntryState.VOID
        elif entry.state is EntryState.POSTED:
            key = f"undo:{entry.adjustment}"
            if not any(e.adjustment == key and e.sku == entry.sku for e in order.stock_entries):
                order.stock_entries.append(StockEntry(key, entry.sku, -entry.quantity))


def _record(units: Units, order: Order, key: str, skus: set[str], state: EntryState) -> None:
    for entry in order.stock_entries:
        if entry.adjustment == key and entry.sku in skus:
            entry.state = state
    with units() as uow:
        uow.orders.save_stock_entries(order)
        uow.commit()
