"""An order the ledger sold, and where it stands with Bling.

Statuses (enums; the database stores their values):

- ``status``: ``confirmed`` (sold here) or ``cancelled``.
- ``forward_status``, the order's life with Bling: ``pending`` (units committed, not yet in
  Bling) → ``forwarded`` (Bling has the sales order and its stock posting). A cancellation before
  that → ``cancelled`` (the units went back to the ledger; Bling never hears of it); after it →
  ``reversal_pending`` (the worker must reverse the posting in Bling) → ``reversed``.
- ``bling_stock``, the stock posting, recorded before each Bling call so a retry never posts
  twice: ``none`` → ``requested`` (sent, answer unknown) → ``posted``; on reversal
  ``reversing`` → ``reversed``.

The transitions are methods, so the rules ("a forwarded order needs a reversal when cancelled")
are written once. The use cases (orders/services.py: sell, cancel; orders/forwarding.py: the
order's way to the ERP) call them; the repository (orders/repository.py) stores the result.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class OrderStatus(enum.StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class ForwardStatus(enum.StrEnum):
    PENDING = "pending"
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

    def __post_init__(self) -> None:
        # Rows and callers may hand plain strings; the enums check they are known values.
        self.status = OrderStatus(self.status)
        self.forward_status = ForwardStatus(self.forward_status)
        self.bling_stock = BlingStock(self.bling_stock)

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
        """Its units are committed here and Bling has not posted them yet."""
        return self.forward_status is ForwardStatus.PENDING and not self.cancelled

    @property
    def stock_maybe_posted(self) -> bool:
        """Bling may hold a posting of this order's stock (sent, even if never answered)."""
        return self.bling_stock in (BlingStock.REQUESTED, BlingStock.POSTED, BlingStock.REVERSING)

    def cancel(self) -> list[OrderLine]:
        """Shopify cancelled the order. Returns the lines whose units go back to the ledger now
        (Bling never had them); an order Bling has needs a reversal there instead."""
        if self.cancelled:
            return []
        self.status = OrderStatus.CANCELLED
        if self.forward_status is ForwardStatus.PENDING:
            self.forward_status = ForwardStatus.CANCELLED
            return list(self.lines)
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
