"""Stock in from Bling: the full sync, the worker's reconciliation, and webhook stock events.

Bling is the source of truth for ``on_hand`` (its ``saldoVirtual`` in ``BLING_DEPOSIT_ID``). A
balance is always applied **race-free** (docs/architecture.md, The ledger): a balance that was
current at T is taken minus what this service acknowledged since T (``bling_acks``), because Bling's
number may predate those postings while ``on_hand`` already excludes them. T is noted *before* the
balance request leaves (sync) or is the event's ``date`` (webhook). It is also taken minus the
units of reversals under way (an acknowledged order cancelled, its ``estornar-estoque`` sent or
about to be): Bling's number may include them already while ``on_hand`` gets them only once the
answer is back, and a balance applied in between would be restocked a second time.

A webhook's T needs one allowance. Bling sends a stock event for the service's *own* postings too
(``lancar-estoque``), dated when Bling made the posting: moments *before* the service hears the
204 and acknowledges it, yet its balance already excludes those units. Taken "minus what was
acknowledged since T", every forwarded order would be subtracted twice ("Esgotado" while units
remain, until the next reconciliation). So an acknowledgement made within ``OWN_POSTING_WINDOW``
after an event's date counts as already in that event's balance; only later ones are subtracted.

Transactions stay short and never span an HTTP call: Bling is read first, then each batch of SKUs
is locked (sorted order, through the stock repository) and written in one transaction.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from bling.client import BlingClient
from bling.errors import BLING_TZ, BlingNotConnected
from bling.products import BALANCE_BATCH, MAX_PAGE_SIZE, iter_products, stock_balances
from bling.webhooks import BlingEvent

from ..clock import Clock, utc_now
from ..config import ConfigError, Settings
from ..db import dialect
from ..runtime import Runtime
from ..stock.domain import StockLevel
from ..unit_of_work import UnitOfWork
from .account import BlingAccount, DepositUnknown, remembered_deposit, sales_deposit
from .connection import bling_client, ensure_account, is_configured
from .stock_tables import bling_acks, bling_events, bling_products

log = logging.getLogger(__name__)

UowFactory = Callable[[], UnitOfWork]

# A sync records its read time minus this as the SKU's ``balance_as_of``. Bling stamps events in
# whole seconds on its own clock, so an event stamped a second before our read may still describe
# a change made after it; such an event is applied rather than dropped (the next sync corrects
# either choice, and dropping a real change is the worse error).
CLOCK_TOLERANCE = timedelta(seconds=2)

#: An acknowledgement this soon after a stock event's ``date`` is taken to be of a posting the
#: event's balance already shows: Bling stamps the event when it posts (in whole seconds, on its
#: clock) and the service acknowledges once the answer is back, a moment later. It covers the
#: dropped fraction of a second, clock skew (CLOCK_TOLERANCE) and the answer's way back. The cost
#: of the allowance: an event of *another* change dated in this window before one of our postings
#: is applied as if it showed the posting (too high by that order) until our posting's own event,
#: dated after it, arrives; an acknowledgement later than the window (a forward whose answer was
#: lost and was retried) is still subtracted, the old, safe-side undercount.
OWN_POSTING_WINDOW = timedelta(seconds=5)


def sellable_units(balance: float) -> int:
    """Bling's balance (a decimal: it allows fractional stock) as whole units that can be sold.

    Rounded **down**: 2.5 units of a garment are 2 that exist, and rounding up would sell one
    that does not. It is first rounded to 6 places, far below Bling's 4 decimals, so a float such
    as 2.9999999999 read for 3 still counts 3.
    """
    return math.floor(round(balance, 6))


def configured_deposit(settings: Settings) -> int:
    """The Bling deposit whose balance is sold and where orders post their stock, the same one
    for both (erp/account.py): ``BLING_DEPOSIT_ID``, else the account's default deposit as this
    process's ``bling_client`` last read it. Ask it once a client is built; never None, so no
    caller falls back to Bling's all-deposit totals: ``DepositUnknown`` when neither is known."""
    raw = settings.bling_deposit_id
    if raw is None:
        remembered = remembered_deposit(settings)
        if remembered is None:
            return sales_deposit(settings, BlingAccount())  # raises DepositUnknown, saying why
        return remembered
    try:
        return int(raw)
    except ValueError:
        raise ConfigError([f"BLING_DEPOSIT_ID must be an integer id, got {raw!r}"]) from None


# --- rows of the Bling tables, in the caller's transaction -----------------------------------


class BlingStockRows:
    """Reads and writes of ``bling_*`` within one unit of work (it shares the stock repository's
    connection, so everything commits or rolls back together)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.connection: Connection = uow.connection
        self.now = uow.now

    def record_event(self, event: BlingEvent) -> bool:
        """Note a delivery; False if its eventId was seen before (a concurrent twin waits)."""
        stmt = (
            dialect.insert(self.connection, bling_events)
            .values(event_id=event.event_id[:255], event=event.event[:64], received_at=self.now)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(bling_events.c.event_id)  # psycopg reports rowcount -1 for DO NOTHING
        )
        return self.connection.execute(stmt).first() is not None

    def save_catalog(self, refs: dict[str, int]) -> None:
        """Upsert SKU → product id; a product whose SKU changed in Bling loses its old row."""
        if not refs:
            return
        self.connection.execute(
            delete(bling_products).where(
                bling_products.c.product_id.in_(list(refs.values())),
                bling_products.c.sku.not_in(list(refs)),
            )
        )
        stmt = dialect.insert(self.connection, bling_products)
        stmt = stmt.on_conflict_do_update(
            index_elements=["sku"],
            set_={"product_id": stmt.excluded.product_id, "updated_at": stmt.excluded.updated_at},
            where=bling_products.c.product_id != stmt.excluded.product_id,
        )
        rows = [
            {"sku": s, "product_id": p, "updated_at": self.now} for s, p in sorted(refs.items())
        ]
        self.connection.execute(stmt, rows)

    def sku_of(self, product_id: int) -> str | None:
        row = self.connection.execute(
            select(bling_products.c.sku)
            .where(bling_products.c.product_id == product_id)
            .order_by(bling_products.c.updated_at.desc())
            .limit(1)
        ).first()
        return None if row is None else str(row.sku)

    def balance_as_of(self, skus: Iterable[str]) -> dict[str, datetime | None]:
        rows = self.connection.execute(
            select(bling_products.c.sku, bling_products.c.balance_as_of).where(
                bling_products.c.sku.in_(list(skus))
            )
        )
        return {row.sku: row.balance_as_of for row in rows}

    def mark_applied(self, skus: Iterable[str], as_of: datetime) -> None:
        """Move ``balance_as_of`` forward to ``as_of`` (never back)."""
        column = bling_products.c.balance_as_of
        self.connection.execute(
            update(bling_products)
            .where(
                bling_products.c.sku.in_(list(skus)),
                or_(column.is_(None), column < as_of),
            )
            .values(balance_as_of=as_of)
        )

    def acknowledged_since(self, skus: Iterable[str], moment: datetime) -> dict[str, int]:
        """Per SKU, the units acknowledged at or after ``moment`` (at: the order is unknown, and
        subtracting is the side that never sells a unit twice)."""
        rows = self.connection.execute(
            select(bling_acks.c.sku, func.sum(bling_acks.c.quantity))
            .where(and_(bling_acks.c.sku.in_(list(skus)), bling_acks.c.acknowledged_at >= moment))
            .group_by(bling_acks.c.sku)
        )
        return {row[0]: int(row[1]) for row in rows}

    def add_ack(self, sku: str, quantity: int, reference: str | None) -> None:
        self.connection.execute(
            insert(bling_acks).values(
                sku=sku, quantity=quantity, reference=reference, acknowledged_at=self.now
            )
        )


def balance_offsets(
    uow: UnitOfWork, skus: Iterable[str], acknowledged_from: datetime
) -> dict[str, int]:
    """Per SKU, what to take off a Bling balance before it becomes ``on_hand``, under the SKUs'
    locks: the units acknowledged from ``acknowledged_from`` on (the balance may predate those
    postings) and those of reversals under way (the balance may show them back already; the
    reversal restocks them once its answer is in). Each may undercount until the next balance,
    the safe side; neither lets a unit be counted twice."""
    skus = list(skus)
    acknowledged = Counter(BlingStockRows(uow).acknowledged_since(skus, acknowledged_from))
    return dict(acknowledged + Counter(uow.orders.units_in_reversal(skus)))


def record_acknowledgement(uow: UnitOfWork, sku: str, quantity: int, reference: str) -> None:
    """Remember, in the caller's transaction, that ``quantity`` units of ``sku`` were just
    acknowledged (Bling posted the order's stock and ``StockLevel.acknowledge`` took them off
    ``on_hand``). Call it next to ``acknowledge``, under the same SKU lock, right after Bling's
    answer: a sync's balance read before now is then applied without those units, and so is a
    webhook's dated more than ``OWN_POSTING_WINDOW`` before now (a later one is Bling's event for
    this very posting, or newer)."""
    if quantity < 1:
        raise ValueError("quantity must be at least 1")
    BlingStockRows(uow).add_ack(sku, quantity, reference[:255])


# --- applying one balance ---------------------------------------------------------------------


def _apply(level: StockLevel, balance: float, offset: int, reference: str) -> bool:
    """Apply a balance to a locked level, minus ``offset`` (``balance_offsets``); True if
    on_hand moved."""
    before = level.on_hand
    level.apply_balance(sellable_units(balance), offset, reference)
    return level.on_hand != before


def process_event(uow: UnitOfWork, event: BlingEvent, *, deposit_id: int | None) -> str:
    """Apply one verified webhook delivery exactly once; returns what happened.

    The receipt and the effect share one transaction. A stock event's balance is applied as of
    its ``date`` (minus what was acknowledged more than ``OWN_POSTING_WINDOW`` after it); an
    event older than the balance already applied to that SKU is ``stale``.
    """
    with uow:
        rows = BlingStockRows(uow)
        if not rows.record_event(event):
            return "duplicate"
        outcome = _stock_event(uow, rows, event, deposit_id)
        uow.commit()
    return outcome


def _stock_event(
    uow: UnitOfWork, rows: BlingStockRows, event: BlingEvent, deposit_id: int | None
) -> str:
    change = event.stock_change()
    if change is None:
        return "ignored"  # orders and products are not stock in; the receipt still counts
    balance = change.virtual_in(deposit_id)
    if balance is None or event.date is None:
        # Another deposit, or vinculoComplexo without balances: the reconciliation reads them.
        log.info("bling.event_without_balance id=%s product=%s", event.event_id, change.product_id)
        return "ignored"
    sku = rows.sku_of(change.product_id)
    if sku is None:
        log.warning("bling.unknown_product id=%s product=%s", event.event_id, change.product_id)
        return "ignored_unknown_product"
    # Bling documents UTC ("…Z"); a date without a zone is read on Bling's own clock.
    as_of = event.date if event.date.tzinfo else event.date.replace(tzinfo=BLING_TZ)
    level = uow.stock.lock_or_create(sku)  # Bling is the source of truth: it may add SKUs
    applied_as_of = rows.balance_as_of([sku]).get(sku)
    if applied_as_of is not None and as_of < applied_as_of:
        log.info("bling.stale_event id=%s sku=%s date=%s", event.event_id, sku, as_of)
        return "stale"
    # Acknowledgements within OWN_POSTING_WINDOW of the event are of postings it already shows.
    offset = balance_offsets(uow, [sku], as_of + OWN_POSTING_WINDOW).get(sku, 0)
    _apply(level, balance, offset, f"bling-event:{event.event_id}")
    rows.mark_applied([sku], as_of)
    return "applied"


# --- the full sync ----------------------------------------------------------------------------


@dataclass
class SyncReport:
    products: int = 0  # active Bling products with a SKU, whatever their balance
    updated: int = 0  # SKUs whose on_hand changed
    unchanged: int = 0
    created: int = 0  # SKUs new to the ledger (also counted as updated or unchanged)
    skipped: int = 0  # a webhook newer than our read had been applied meanwhile
    duplicate_skus: int = 0  # SKUs carried by more than one Bling product (first one kept)

    def summary(self) -> str:
        return (
            f"products={self.products} updated={self.updated} unchanged={self.unchanged} "
            f"created={self.created} skipped={self.skipped}"
        )


def full_sync(
    source: Runtime | UowFactory,
    client: BlingClient,
    *,
    deposit_id: int | None,
    batch_size: int = BALANCE_BATCH,
    clock: Clock | None = None,
) -> SyncReport:
    """Read Bling's whole active catalog and its balances, and make ``on_hand`` follow them.

    The catalog is every active product **whatever its balance** (``iter_products`` asks for
    positive, zero and negative ones: Bling's listing shows only positive balances unless told
    otherwise), so a SKU that sold out elsewhere is read at 0 and stops selling here, and one at
    0 from the start is known (its orders can be forwarded, its webhooks applied).

    ``source`` is the Runtime (its units of work and clock) or a factory of units of work (then
    ``clock``, default UTC now). SKUs unknown to the ledger are created: Bling is the source of
    truth. SKUs the ledger has and Bling does not list as active are left as they are.
    """
    if isinstance(source, Runtime):
        uow_factory: UowFactory = source.uow
        clock = clock or source.clock
    else:
        uow_factory, clock = source, clock or utc_now
    report = SyncReport()
    catalog = _read_catalog(client, report)
    for chunk in _chunks(sorted(catalog.items()), MAX_PAGE_SIZE):
        with uow_factory() as uow:
            BlingStockRows(uow).save_catalog(dict(chunk))
            uow.commit()
    for chunk in _chunks(sorted(catalog), batch_size):
        ids = {catalog[sku]: sku for sku in chunk}
        read_at = clock()  # before the request leaves: the balance is at least this recent
        by_id = stock_balances(client, ids, deposit_id, batch_size=batch_size)
        balances = {sku: by_id.get(product_id, 0.0) for product_id, sku in ids.items()}
        _apply_batch(uow_factory, balances, read_at, report)
    log.info("bling.synced %s", report.summary())
    return report


def _read_catalog(client: BlingClient, report: SyncReport) -> dict[str, int]:
    catalog: dict[str, int] = {}
    for ref in iter_products(client):
        report.products += 1
        if ref.codigo in catalog:
            # Two active products with one SKU: which one's stock is sold is ambiguous. Keep the
            # first (Bling lists oldest first) and say so; an operator must fix the catalog.
            report.duplicate_skus += 1
            log.warning(
                "bling.duplicate_sku sku=%s ids=%s,%s", ref.codigo, catalog[ref.codigo], ref.id
            )
            continue
        catalog[ref.codigo] = ref.id
    return catalog


def _apply_batch(
    uow_factory: UowFactory, balances: dict[str, float], read_at: datetime, report: SyncReport
) -> None:
    wanted = sorted(balances)
    with uow_factory() as uow:
        levels = uow.stock.lock(wanted, missing_ok=True)
        missing = [sku for sku in wanted if sku not in levels]
        if not missing:
            _apply_locked(uow, levels, balances, read_at, report)
            uow.commit()
            return
    # New SKUs are created (zero stock) in a transaction of their own, one by one in sorted
    # order, and the batch is then locked afresh: creating them while holding the locks above
    # would take row locks out of sorted order, which is how deadlocks start.
    with uow_factory() as uow:
        for sku in missing:
            uow.stock.lock_or_create(sku)
        uow.commit()
    report.created += len(missing)
    with uow_factory() as uow:
        levels = uow.stock.lock(wanted)
        _apply_locked(uow, levels, balances, read_at, report)
        uow.commit()


def _apply_locked(
    uow: UnitOfWork,
    levels: dict[str, StockLevel],
    balances: dict[str, float],
    read_at: datetime,
    report: SyncReport,
) -> None:
    rows = BlingStockRows(uow)
    applied_as_of = rows.balance_as_of(levels)
    offsets = balance_offsets(uow, levels, read_at)  # under the locks: no ack can slip past
    reference = f"bling-sync:{read_at.isoformat()}"
    applied = []
    for sku in sorted(levels):
        newer = applied_as_of.get(sku)
        if newer is not None and newer > read_at:
            report.skipped += 1  # a webhook stamped after our read was applied meanwhile
            continue
        if _apply(levels[sku], balances[sku], offsets.get(sku, 0), reference):
            report.updated += 1
        else:
            report.unchanged += 1
        applied.append(sku)
    rows.mark_applied(applied, read_at - CLOCK_TOLERANCE)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- the worker's reconciliation --------------------------------------------------------------


def reconcile(runtime: Runtime) -> SyncReport | None:
    """The worker's periodic full sync: the safety net under Bling's webhooks, which Bling
    disables after three days of failed deliveries. Does nothing, quietly, while Bling is not
    configured or not connected (None then); refuses, with an error logged, while the deposit
    to sell from is unknown (erp/account.py). It first learns what is missing of the account
    (a connection made before this release, or one whose first read failed)."""
    if not is_configured(runtime.settings):
        return None
    try:
        ensure_account(runtime)  # asks Bling only for what is not known yet
        with bling_client(runtime) as client:
            return full_sync(runtime, client, deposit_id=configured_deposit(runtime.settings))
    except DepositUnknown as exc:  # not a quiet case: an operator must choose the deposit
        log.error("bling.reconcile_refused %s", exc)
        return None
    except BlingNotConnected as exc:  # also when the connection is lost in the middle
        log.debug("bling.reconcile_skipped reason=%s", exc)
        return None
