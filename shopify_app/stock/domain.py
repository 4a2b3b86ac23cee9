"""The stock ledger's rules, in plain Python (no Flask, no SQL).

Figures per SKU (docs/architecture.md): ``on_hand`` (what Bling says can be sold), ``reserved``
(active holds), ``committed`` (sold here, not yet acknowledged by Bling) and ``available`` = on_hand
− reserved − committed, derived and never stored. Every change to a figure is a :class:`Movement`;
the repository applies the same movements to the counters and to the append-only ledger, so the two
cannot disagree.

Long because StockLevel and Hold change each other (every hold transition moves a SKU's counters
and writes its movement), so the ledger's rules stay in one module.
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..ids import random_uuid

#: A new hold id (UUID version 4): random, so a hold id on a cart line cannot be guessed.
new_hold_id = random_uuid


class HoldStatus(enum.StrEnum):
    ACTIVE = "active"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"


class HoldSource(enum.StrEnum):
    API = "api"
    PROXY = "proxy"
    CART = "cart"
    CHECKOUT = "checkout"


class Reason(enum.StrEnum):
    RESERVE = "reserve"
    RELEASE = "release"
    EXPIRE = "expire"
    CONFIRM = "confirm"
    COMMIT = "commit"
    CANCEL = "cancel"
    ACKNOWLEDGE = "acknowledge"
    RESTOCK = "restock"
    SYNC = "sync"
    ADJUST = "adjust"


#: The sweeper's batches (stock/services.py, stock/fast_path.py): the SKUs one transaction
#: expires holds of, and on PostgreSQL the holds one statement expires at most, which bounds how
#: long a hot SKU's row stays locked while a wave of holds runs out.
SWEEP_SKUS = 50
SWEEP_HOLDS = 500

#: On-hand changes Shopify did not count itself: Bling's balances (a sale at the shop counter,
#: a correction in Bling) and manual counts. Shopify's own sales, cancellations and restocks it
#: counted already; these it must be told (shopify/inventory_follower.py sends their sum as
#: deltas). The repository adds them up per SKU in ``skus.external_on_hand``.
FROM_OUTSIDE_SHOPIFY = frozenset({Reason.SYNC, Reason.ADJUST})


# --- errors a caller can act on ------------------------------------------------------------


class StockError(Exception):
    """Base of the ledger's business errors."""


class UnknownSku(StockError):
    def __init__(self, skus: Iterable[str]) -> None:
        self.skus = sorted(skus)
        super().__init__(f"unknown SKU: {', '.join(self.skus)}")


class OutOfStock(StockError):
    def __init__(self, available: dict[str, int]) -> None:
        self.available = available
        super().__init__(
            "not enough stock: " + ", ".join(f"{s} has {n}" for s, n in sorted(available.items()))
        )


class HoldNotFound(StockError):
    def __init__(self, ids: Iterable[uuid.UUID]) -> None:
        self.ids = sorted(str(i) for i in ids)
        super().__init__(f"unknown reservation: {', '.join(self.ids)}")


class HoldGone(StockError):
    """The hold expired or was released, so it no longer guarantees anything."""

    def __init__(self, holds: Iterable[Hold]) -> None:
        self.holds = sorted(holds, key=lambda h: str(h.id))
        self.ids = [str(h.id) for h in self.holds]
        super().__init__(f"reservation no longer held: {', '.join(self.ids)}")


class AlreadyConfirmed(StockError):
    def __init__(self, holds: Iterable[Hold]) -> None:
        self.holds = sorted(holds, key=lambda h: str(h.id))
        self.ids = [str(h.id) for h in self.holds]
        super().__init__(f"reservation already confirmed for another order: {', '.join(self.ids)}")


class HoldLimitExceeded(StockError):
    """The holder (a cart) already holds as much as one holder may (denial-of-inventory cap).

    ``retry_after`` is the number of seconds until enough of the holder's own holds run out for
    the same request to fit; None when it never can (more units than one holder may ever hold).
    """

    def __init__(
        self, limit: str, maximum: int, held: int, skus: Iterable[str], retry_after: int | None
    ) -> None:
        self.limit = limit
        self.maximum = maximum
        self.held = held
        self.skus = sorted(skus)
        self.retry_after = retry_after
        what = "units of one SKU" if limit == "units_per_sku" else "active holds"
        super().__init__(f"a holder may have at most {maximum} {what}; it has {held}")


# --- values and entities ---------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One SKU and a quantity asked for."""

    sku: str
    quantity: int

    def __post_init__(self) -> None:
        if self.quantity < 1:
            raise ValueError("quantity must be at least 1")


def merge_lines(lines: Iterable[Line]) -> dict[str, int]:
    """Sum the demand per SKU, so two lines of one SKU are checked against stock together."""
    demand: dict[str, int] = {}
    for line in lines:
        demand[line.sku] = demand.get(line.sku, 0) + line.quantity
    return demand


@dataclass(frozen=True)
class Movement:
    """One signed change to a SKU's figures, with why and because of what."""

    sku: str
    reason: Reason
    reference: str | None
    on_hand: int = 0
    reserved: int = 0
    committed: int = 0


@dataclass
class Hold:
    """A reservation: ``quantity`` units of ``sku`` kept for ``holder`` until ``expires_at``.

    A hold the storefront asked for (source ``proxy``) is *pending* until a cart webhook lists
    its SKU for its cart (``listed_at``): Shopify's webhooks run behind the theme's calls, so one
    describing an earlier state of the cart must not release it. A pending hold lives for the
    grace window only (CART_HOLD_GRACE_SECONDS); once listed it lives as long as a cart's hold.
    The rule is applied by the cart webhook (shopify/carts.py, ``sync_cart``).
    """

    id: uuid.UUID
    sku: str
    quantity: int
    holder: str | None
    source: HoldSource
    status: HoldStatus
    created_at: datetime
    expires_at: datetime
    order_ref: str | None = None
    listed_at: datetime | None = None
    #: The hold whose cart line these units joined (a quantity increase, or the same variant
    #: added again): that line names one id, ``line_id``, for all of its holds. None: its own.
    line_ref: uuid.UUID | None = None

    @property
    def line_id(self) -> uuid.UUID:
        """The id the cart line carries (``_bazico_hold``) for this hold's units."""
        return self.line_ref or self.id

    def named_by(self, ids: set[uuid.UUID] | frozenset[uuid.UUID]) -> bool:
        """True when ``ids`` (the hold ids a cart line names) name this hold's line."""
        return self.id in ids or self.line_id in ids

    @property
    def pending(self) -> bool:
        """Granted to the storefront, and no cart webhook has listed its SKU for the cart yet."""
        return self.source is HoldSource.PROXY and self.listed_at is None

    def extend(self, until: datetime) -> None:
        """Keep an active hold at least until ``until`` (a checkout in progress); never shortens."""
        if self.status is HoldStatus.ACTIVE and until > self.expires_at:
            self.expires_at = until

    def list_in_cart(self, now: datetime, until: datetime) -> None:
        """A cart webhook lists this hold's units: it is the cart's now, kept until ``until``."""
        if self.listed_at is None:
            self.listed_at = now
        self.extend(until)

    def is_due(self, now: datetime) -> bool:
        """True when the hold is active but its time is up (it no longer counts for buyers)."""
        return self.status is HoldStatus.ACTIVE and self.expires_at <= now


@dataclass(frozen=True)
class HoldChange:
    """A hold's transition, as it happened (``created``, ``released``, ``expired``,
    ``confirmed``): the business event the unit of work emits once the transaction commits."""

    action: str
    hold: Hold


@dataclass
class StockLevel:
    """The ledger row of one SKU; it changes only through methods that record a Movement, and
    each hold transition it makes is recorded as a HoldChange."""

    sku: str
    on_hand: int
    reserved: int
    committed: int
    pending: list[Movement] = field(default_factory=list)
    changes: list[HoldChange] = field(default_factory=list)

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.committed

    def _record(self, movement: Movement) -> None:
        self.on_hand += movement.on_hand
        self.reserved += movement.reserved
        self.committed += movement.committed
        self.pending.append(movement)

    def reserve(
        self,
        quantity: int,
        *,
        holder: str | None,
        source: HoldSource,
        now: datetime,
        ttl: timedelta,
    ) -> Hold:
        if quantity > self.available:
            raise OutOfStock({self.sku: max(self.available, 0)})
        hold = Hold(
            id=new_hold_id(),
            sku=self.sku,
            quantity=quantity,
            holder=holder,
            source=source,
            status=HoldStatus.ACTIVE,
            created_at=now,
            expires_at=now + ttl,
        )
        self._record(Movement(self.sku, Reason.RESERVE, str(hold.id), reserved=quantity))
        self.changes.append(HoldChange("created", hold))
        return hold

    def _check_active(self, hold: Hold) -> None:
        # A programming error, not a business case: callers check status under the row lock.
        if hold.sku != self.sku or hold.status is not HoldStatus.ACTIVE:
            raise RuntimeError(f"hold {hold.id} is {hold.status} for {hold.sku}, not active here")

    def _end(self, hold: Hold, status: HoldStatus, reason: Reason) -> None:
        self._check_active(hold)
        hold.status = status
        self._record(Movement(self.sku, reason, str(hold.id), reserved=-hold.quantity))
        self.changes.append(HoldChange(status.value, hold))

    def expire(self, hold: Hold) -> None:
        self._end(hold, HoldStatus.EXPIRED, Reason.EXPIRE)

    def release(self, hold: Hold) -> None:
        self._end(hold, HoldStatus.RELEASED, Reason.RELEASE)

    def release_part(self, hold: Hold, units: int) -> None:
        """Give back ``units`` of an active hold and keep the rest under the same id (the id
        the cart line names); all of them releases the hold."""
        self._check_active(hold)
        if not 1 <= units <= hold.quantity:
            raise ValueError(f"cannot release {units} of a hold of {hold.quantity}")
        if units == hold.quantity:
            self.release(hold)
            return
        hold.quantity -= units
        self._record(Movement(self.sku, Reason.RELEASE, str(hold.id), reserved=-units))

    def confirm(self, hold: Hold, order_ref: str | None) -> None:
        """Turn an active hold into a commitment: the unit is sold, Bling not yet told."""
        self._check_active(hold)
        hold.status = HoldStatus.CONFIRMED
        hold.order_ref = order_ref
        self._record(
            Movement(
                self.sku,
                Reason.CONFIRM,
                order_ref or str(hold.id),
                reserved=-hold.quantity,
                committed=hold.quantity,
            )
        )
        self.changes.append(HoldChange("confirmed", hold))

    def commit(self, quantity: int, order_ref: str) -> int:
        """Sell ``quantity`` units straight from ``available`` (an order line no hold covered).

        Shopify has already sold them, so this never refuses: it returns how many units were
        oversold (0 when available covered them), and ``available`` may then go negative.
        """
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        oversold = max(0, quantity - max(self.available, 0))
        self._record(Movement(self.sku, Reason.COMMIT, order_ref, committed=quantity))
        return oversold

    def uncommit(self, quantity: int, order_ref: str) -> None:
        """An order cancelled before Bling heard of it: its units are sellable again."""
        if not 1 <= quantity <= self.committed:
            raise ValueError(f"cannot uncommit {quantity} of {self.committed} committed")
        self._record(Movement(self.sku, Reason.CANCEL, order_ref, committed=-quantity))

    def acknowledge(self, quantity: int, order_ref: str) -> None:
        """Bling posted the order's stock: the commitment becomes a smaller ``on_hand``.

        ``available`` does not move: the units were already unavailable while committed.
        ``on_hand`` stops at zero, as a Bling balance does when applied (``apply_balance``): an
        oversold order (Shopify sold more than there was, e.g. of a SKU Bling had at 0) takes
        what is left, and Bling's balance, below zero now, reads as 0.
        """
        if not 1 <= quantity <= self.committed:
            raise ValueError(f"cannot acknowledge {quantity} of {self.committed} committed")
        self._record(
            Movement(
                self.sku,
                Reason.ACKNOWLEDGE,
                order_ref,
                on_hand=-min(quantity, self.on_hand),
                committed=-quantity,
            )
        )

    def restock(self, quantity: int, order_ref: str) -> None:
        """Bling reversed an acknowledged order's stock posting (the order was cancelled after it
        reached Bling): its units are back on hand and sellable again."""
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        self._record(Movement(self.sku, Reason.RESTOCK, order_ref, on_hand=quantity))

    def apply_balance(self, balance: int, offset: int, reference: str) -> None:
        """Take Bling's balance, read at some time T, as the new ``on_hand``, minus ``offset``.

        ``offset`` is what the balance may count that ``on_hand`` must not (erp/stock_sync.py,
        ``balance_offsets``): the units this service acknowledged (and so already took off
        ``on_hand``) after T, which the balance read at T may predate, so a slow sync never
        resurrects a sold unit; and those of reversals under way, which the balance may show
        back before they are restocked. When Bling had in fact posted them before T (or not yet
        reversed them) this undercounts until the next sync, which is the safe side.
        """
        target = max(0, balance - offset)
        if target != self.on_hand:
            self._record(Movement(self.sku, Reason.SYNC, reference, on_hand=target - self.on_hand))

    def set_on_hand(self, on_hand: int, reference: str | None) -> None:
        """A manual adjustment: the counted stock replaces ``on_hand``; holds stay as they are."""
        if on_hand < 0:
            raise ValueError("on_hand must be >= 0")
        if on_hand != self.on_hand:
            self._record(
                Movement(self.sku, Reason.ADJUST, reference, on_hand=on_hand - self.on_hand)
            )


def check_confirmable(holds: Iterable[Hold], order_ref: str | None, now: datetime) -> list[Hold]:
    """Return the holds that still need confirming, or raise why the batch cannot be confirmed.

    A hold already confirmed for the same order is fine (idempotent retry); for another order it
    is a conflict. A hold that expired, is past its time, or was released cannot be confirmed, and
    then nothing in the batch is.
    """
    holds = list(holds)
    conflicts = [h for h in holds if h.status is HoldStatus.CONFIRMED and h.order_ref != order_ref]
    if conflicts:
        raise AlreadyConfirmed(conflicts)
    gone = [
        h for h in holds if h.status in (HoldStatus.EXPIRED, HoldStatus.RELEASED) or h.is_due(now)
    ]
    if gone:
        raise HoldGone(gone)
    return [h for h in holds if h.status is HoldStatus.ACTIVE]


# --- denial-of-inventory caps ------------------------------------------------------------------


@dataclass(frozen=True)
class HolderLimits:
    """What one holder (a cart token) may hold at once; None leaves that cap off.

    A bot that puts every unit of a flash-sale SKU in carts sells it out without buying anything;
    these caps bound what any one cart can take. They are checked with the holder's holds read
    under the same locks as the stock (repository ``lock_holder``), so concurrent requests of one
    holder, on any process, cannot slip past them together.
    """

    max_units_per_sku: int | None = None
    max_active_holds: int | None = None

    @property
    def enabled(self) -> bool:
        return self.max_units_per_sku is not None or self.max_active_holds is not None

    def check(self, holds: Iterable[Hold], demand: dict[str, int], now: datetime) -> None:
        """Raise HoldLimitExceeded if granting ``demand`` would take the holder over a cap.

        ``holds``: the holder's active holds; those past their time no longer count.
        """
        live = [h for h in holds if h.status is HoldStatus.ACTIVE and h.expires_at > now]
        if self.max_units_per_sku is not None:
            cap = self.max_units_per_sku
            for sku in sorted(demand):
                mine = sorted((h for h in live if h.sku == sku), key=lambda h: h.expires_at)
                held = sum(h.quantity for h in mine)
                if held + demand[sku] > cap:
                    frees = [(h.expires_at, h.quantity) for h in mine]
                    wait = _wait(frees, held + demand[sku] - cap, now)
                    raise HoldLimitExceeded("units_per_sku", cap, held, [sku], wait)
        if self.max_active_holds is not None:
            cap = self.max_active_holds
            new = len(demand)
            if len(live) + new > cap:
                frees = sorted((h.expires_at, 1) for h in live)  # each hold frees one place
                wait = _wait(frees, len(live) + new - cap, now)
                raise HoldLimitExceeded("active_holds", cap, len(live), demand, wait)

    def grantable(self, held_units: int, wanted: int) -> int:
        """How many of ``wanted`` more units one SKU may still get (the cart webhook's clamp)."""
        if self.max_units_per_sku is None:
            return wanted
        return max(0, min(wanted, self.max_units_per_sku - held_units))


def _wait(frees: list[tuple[datetime, int]], excess: int, now: datetime) -> int | None:
    """Seconds until the ``(expires_at, units)`` of the holder's holds, soonest first, free
    ``excess`` units; None if they never can."""
    freed = 0
    for expires_at, units in frees:
        freed += units
        if freed >= excess:
            return max(1, math.ceil((expires_at - now).total_seconds()))
    return None
