"""An order the ledger sold, and where it stands with Bling.

Statuses (enums; the database stores their values):

- ``status``: ``confirmed`` (sold here) or ``cancelled``.
- ``forward_status``, the order's life with Bling: ``pending`` (units committed, not yet in
  Bling) → ``forwarded`` (Bling has the sales order and its stock posting). An order not paid yet
  (boleto, PIX: Shopify's ``financial_status`` ``pending``) waits in ``awaiting_payment`` with its
  units committed, and becomes ``pending`` when paid. A cancellation before Bling has it →
  ``cancelled`` (the units went back to the ledger; Bling never hears of it); after it →
  ``reversal_pending`` (the worker must reverse the posting in Bling) → ``reversed``. A test order
  (Shopify's ``test: true``) is ``test``: its units go back at once and it never reaches Bling.
- ``bling_stock``, the stock posting, recorded before each Bling call so a retry never posts
  twice: ``none`` → ``requested`` (sent, answer unknown) → ``posted``; on reversal
  ``reversing`` → ``reversed``.
- ``bling_order``, the ERP's sales order: ``none`` → ``requested`` (a create is being sent; its
  id may never come back) → ``created`` (its id is known: made or found by us); once the order
  is cancelled here and nothing of its stock is left to reverse, → ``cancelled`` (moved to the
  ERP's cancelled situation, so the warehouse cannot ship it), or ``cancel_refused`` (the ERP
  would not; recorded and alerted). ``foreign``: the ERP had a sales order under this order's
  number that we did not create (another integration imported it): not adopted, nothing posted.

The transitions are methods, so the rules ("a forwarded order needs a reversal when cancelled",
"a sales order of ours is cancelled once its stock is back") are written once. The use cases
(orders/services.py: sell, pay, cancel; orders/forwarding.py: the order's way to the ERP) call
them; the repository (orders/repository.py) stores the result.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime


class OrderStatus(enum.StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class ForwardStatus(enum.StrEnum):
    PENDING = "pending"
    AWAITING_PAYMENT = "awaiting_payment"
    TEST = "test"
    FORWARDED = "forwarded"
    CANCELLED = "cancelled"
    REVERSAL_PENDING = "reversal_pending"
    REVERSED = "reversed"


class BlingStock(enum.StrEnum):
    NONE = "none"
    REQUESTED = "requested"
    POSTED = "posted"
    REVERSING = "reversing"
    REVERSED = "reversed"


class BlingOrder(enum.StrEnum):
    NONE = "none"
    REQUESTED = "requested"
    CREATED = "created"
    CANCELLED = "cancelled"
    CANCEL_REFUSED = "cancel_refused"
    FOREIGN = "foreign"


@dataclass(frozen=True)
class OrderDetails:
    """What a Bling sales order needs from an order besides its lines.

    The customer's name and e-mail are kept only until the order reaches Bling (they find or
    create its contact there) and are erased by ``customers/redact``; an order without them goes
    to Bling's built-in "Consumidor Final".
    """

    placed_at: datetime | None
    shipping_cents: int | None
    discount_cents: int | None
    customer_name: str | None
    customer_email: str | None


@dataclass
class OrderLine:
    """One line as sold: how many of its units came from holds, from available, and how many
    nothing covered (``oversold``: Shopify had sold them already)."""

    line_id: int
    sku: str
    quantity: int
    from_holds: int
    from_available: int
    oversold: int
    unit_price_cents: int | None = None
    title: str | None = None
    #: Units taken off the line since (a restocked refund, an order edit's removal).
    removed: int = 0

    @property
    def remaining(self) -> int:
        """Units the order still sells of this line (what the ERP gets and the ledger counts)."""
        return self.quantity - self.removed


class EntryState(enum.StrEnum):
    """An ERP stock entry of an adjustment: ``pending`` (waits for the order's posting, or for
    its job) → ``requested`` (sent; recorded first, so it is never sent twice) → ``posted``;
    ``void`` when the order was cancelled before its posting (the reversal covers it)."""

    PENDING = "pending"
    REQUESTED = "requested"
    POSTED = "posted"
    VOID = "void"


@dataclass
class StockEntry:
    """A change of the ERP's stock an adjustment of the order needs, beyond its sales order's
    posting: ``quantity`` > 0 puts units back in the ERP's stock, < 0 takes them out."""

    adjustment: str
    sku: str
    quantity: int
    state: EntryState = EntryState.PENDING

    def __post_init__(self) -> None:
        self.state = EntryState(self.state)


@dataclass(frozen=True)
class LineChange:
    """Units of one order line removed (``quantity`` > 0 in ``removed``) or added. ``sku`` is
    the payload's, when it names one (needed for a line the order did not have)."""

    line_id: int
    quantity: int
    sku: str | None = None
    unit_price_cents: int | None = None
    title: str | None = None


@dataclass(frozen=True)
class Adjustment:
    shop: str
    order_id: int
    #: ``refund:{id}`` or ``edit:{id}``: applied once.
    key: str
    removed: Sequence[LineChange] = ()
    added: Sequence[LineChange] = ()


@dataclass
class Order:
    shop: str
    order_id: int
    name: str | None
    cart_token: str | None
    status: OrderStatus = OrderStatus.CONFIRMED
    forward_status: ForwardStatus = ForwardStatus.PENDING
    lines: list[OrderLine] = field(default_factory=list)
    details: OrderDetails | None = None
    bling_order_id: int | None = None
    bling_stock: BlingStock = BlingStock.NONE
    #: When the ERP's acknowledgement turned the commitments into on-hand decreases (set once).
    forwarded_at: datetime | None = None
    bling_order: BlingOrder = BlingOrder.NONE
    #: Refunds and edits applied (``refund:{id}``, ``edit:{id}``): each is applied once.
    adjustments: list[str] = field(default_factory=list)
    #: The ERP stock entries those adjustments need (orders/adjustments.py).
    stock_entries: list[StockEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Rows and callers may hand plain strings; the enums check they are known values.
        self.status = OrderStatus(self.status)
        self.forward_status = ForwardStatus(self.forward_status)
        self.bling_stock = BlingStock(self.bling_stock)
        self.bling_order = BlingOrder(self.bling_order)

    @classmethod
    def tombstone(cls, shop: str, order_id: int, name: str | None) -> Order:
        """An order cancelled before its creation reached us: recorded so that its late
        ``orders/create`` sells nothing."""
        return cls(shop, order_id, name, None, OrderStatus.CANCELLED, ForwardStatus.CANCELLED)

    @property
    def oversold(self) -> bool:
        return any(line.oversold for line in self.lines)

    @property
    def cancelled(self) -> bool:
        return self.status is OrderStatus.CANCELLED

    @property
    def awaiting_bling(self) -> bool:
        """Its units are committed here and it is due in Bling, which has not posted them yet."""
        return self.forward_status is ForwardStatus.PENDING and not self.cancelled

    @property
    def stock_maybe_posted(self) -> bool:
        """Bling may hold a posting of this order's stock (sent, even if never answered)."""
        return self.bling_stock in (BlingStock.REQUESTED, BlingStock.POSTED, BlingStock.REVERSING)

    # --- payment and test orders -----------------------------------------------------------

    def await_payment(self) -> None:
        """Sold unpaid (boleto, PIX): the units stay committed, the ERP waits for the payment."""
        if self.forward_status is not ForwardStatus.PENDING or self.cancelled:
            raise ValueError(f"order {self.order_id} is {self.forward_status}, not new")
        self.forward_status = ForwardStatus.AWAITING_PAYMENT

    @property
    def awaiting_payment(self) -> bool:
        return self.forward_status is ForwardStatus.AWAITING_PAYMENT and not self.cancelled

    def pay(self) -> bool:
        """The shop says it is paid. True when the order must now go to the ERP (it was waiting
        for the payment); a paid, cancelled or test order is left as it is."""
        if not self.awaiting_payment:
            return False
        self.forward_status = ForwardStatus.PENDING
        return True

    def test_only(self) -> list[OrderLine]:
        """A test order (Shopify's ``test: true``, e.g. the Bogus gateway): it never reaches the
        ERP, whose stock it never changes, so the units it sold go back to the ledger now.
        Returns those lines."""
        if self.forward_status is not ForwardStatus.PENDING or self.cancelled:
            return []
        self.forward_status = ForwardStatus.TEST
        return [line for line in self.lines if line.remaining]

    # --- cancellation ---------------------------------------------------------------------

    def cancel(self) -> list[OrderLine]:
        """Shopify cancelled the order. Returns the lines whose units go back to the ledger now
        (Bling never had them: not forwarded yet, or never to be, unpaid); an order Bling has
        needs a reversal there instead. A test order gave its units back already."""
        if self.cancelled:
            return []
        self.status = OrderStatus.CANCELLED
        if self.forward_status in (ForwardStatus.PENDING, ForwardStatus.AWAITING_PAYMENT):
            self.forward_status = ForwardStatus.CANCELLED
            return [line for line in self.lines if line.remaining]
        if self.forward_status is ForwardStatus.FORWARDED:
            self.forward_status = ForwardStatus.REVERSAL_PENDING
        return []

    @property
    def needs_reversal(self) -> bool:
        return self.forward_status is ForwardStatus.REVERSAL_PENDING

    @property
    def acknowledged(self) -> bool:
        """Its units left ``on_hand`` when the ERP posted them (a reversal puts them back)."""
        return self.forwarded_at is not None

    def record_stock(self, state: BlingStock) -> None:
        """Note where the ERP's stock posting stands, before and after each call to it."""
        self.bling_stock = BlingStock(state)

    def acknowledge(self, at: datetime) -> None:
        """The ERP has the sales order and its stock posting: the order is forwarded."""
        if not self.awaiting_bling:
            raise ValueError(f"order {self.order_id} is {self.forward_status}, not pending")
        self.forward_status = ForwardStatus.FORWARDED
        self.bling_stock = BlingStock.POSTED
        self.forwarded_at = at

    def undo_late_posting(self, *, posted: bool = False) -> bool:
        """The order was cancelled before it was forwarded (its units are back here), yet a
        forward asked the ERP to post its stock: that posting must be reversed there. True when
        this asks for the reversal; ``posted`` records that the posting is known to be made."""
        if not (self.cancelled and self.forward_status is ForwardStatus.CANCELLED):
            return False
        self.forward_status = ForwardStatus.REVERSAL_PENDING
        if posted:
            self.bling_stock = BlingStock.POSTED
        return True

    def reversed(self) -> None:
        """The ERP's posting is undone (an acknowledged order's units are back on hand)."""
        if not self.needs_reversal:
            raise ValueError(f"order {self.order_id} is {self.forward_status}, not to reverse")
        self.forward_status = ForwardStatus.REVERSED
        self.bling_stock = BlingStock.REVERSED

    # --- the ERP's sales order ------------------------------------------------------------

    def request_sales_order(self) -> bool:
        """A create of the ERP's sales order is about to be sent (its answer may be lost, so
        this is recorded first). False, and nothing changes, when the order is cancelled: a
        cancelled order gets no new sales order."""
        if self.cancelled:
            return False
        if self.bling_order in (BlingOrder.NONE, BlingOrder.FOREIGN):
            self.bling_order = BlingOrder.REQUESTED
        return True

    def sales_order_known(self, erp_order_id: int) -> None:
        """The ERP's sales order of this order is ``erp_order_id`` (made now, or found)."""
        self.bling_order_id = erp_order_id
        if self.bling_order in (BlingOrder.NONE, BlingOrder.REQUESTED, BlingOrder.FOREIGN):
            self.bling_order = BlingOrder.CREATED

    def no_sales_order(self) -> None:
        """A create was refused, or never landed (the ERP has none of ours): nothing to undo.
        The stock entries recorded meanwhile are void: the next create sends the lines as they
        are by then."""
        if self.bling_order is BlingOrder.REQUESTED and self.bling_order_id is None:
            self.bling_order = BlingOrder.NONE
            for entry in self.stock_entries:
                if entry.state is EntryState.PENDING:
                    entry.state = EntryState.VOID

    def refuse_foreign(self) -> None:
        """The ERP has sales orders under this order's number, none of them ours: not adopted."""
        if self.bling_order_id is None:
            self.bling_order = BlingOrder.FOREIGN

    @property
    def sales_order_maybe_made(self) -> bool:
        """The ERP may hold a sales order of ours for this order, still open."""
        return self.bling_order in (
            BlingOrder.REQUESTED,
            BlingOrder.CREATED,
            BlingOrder.CANCEL_REFUSED,
        )

    @property
    def erp_stock_settled(self) -> bool:
        """Nothing of its stock is (or may be) posted in the ERP: never posted, or reversed."""
        return self.bling_stock in (BlingStock.NONE, BlingStock.REVERSED)

    @property
    def erp_cancellation_due(self) -> bool:
        """Cancelled here, and the ERP may hold its sales order, open: it is cancelled there
        once nothing of its stock is left to reverse (the reversal comes first)."""
        return self.cancelled and self.sales_order_maybe_made and self.erp_stock_settled

    def erp_cancelled(self) -> None:
        """The ERP's sales order is in its cancelled situation (or there is none to cancel)."""
        self.bling_order = (
            BlingOrder.CANCELLED if self.bling_order_id is not None else BlingOrder.NONE
        )

    def erp_cancel_refused(self) -> None:
        self.bling_order = BlingOrder.CANCEL_REFUSED
