"""What the order use cases need from the outside: their repository and the ERP.

Protocols, so the use cases run over in-memory fakes in the unit tests (tests/support/fakes.py)
as well as over the SQL repository (orders/repository.py) and Bling (erp/forwarding.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from .model import Order

if TYPE_CHECKING:
    from ..unit_of_work import UnitOfWork


class OrderRepository(Protocol):
    """The orders' rows, in the unit of work's transaction (orders/repository.py)."""

    def get(self, shop: str, order_id: int, *, lock: bool = False) -> Order | None: ...

    def claim(self, order: Order) -> bool:
        """Record a new order; False if it was recorded before."""
        ...

    def save(self, order: Order) -> None:
        """Write every state column and the new lines (the order was read locked or claimed)."""
        ...

    def save_erp_order(self, order: Order) -> None:
        """Write only the ERP's sales order: its id and where it stands (``bling_order``)."""
        ...

    def save_stock_state(self, order: Order) -> None:
        """Write only where the ERP's stock posting stands."""
        ...

    def save_stock_entries(self, order: Order) -> None:
        """Write only the order's ERP stock entries (new ones, and where each stands)."""
        ...

    def units_in_reversal(self, skus: Iterable[str]) -> dict[str, int]:
        """Per SKU, the units of acknowledged orders whose ERP posting is being reversed and
        that are not back on hand yet: the ERP may show them already."""
        ...

    def forget_customers(self, shop: str, order_ids: Iterable[int]) -> list[str]: ...

    def erase_shop(self, shop: str) -> None: ...


class ErpRefused(Exception):
    """The ERP understood the request and refused it (a validation error): sending it again as
    it is would be refused again."""


class ForeignSalesOrder(Exception):
    """The ERP has sales orders under this order's number that this service did not create:
    another integration imported the order (Bling's own Shopify integration does). Adopting one
    would post its stock a second time, and creating ours would duplicate the sale."""

    def __init__(self, erp_order_ids: Iterable[int]) -> None:
        self.erp_order_ids = tuple(sorted(erp_order_ids))
        super().__init__(f"sales orders {list(self.erp_order_ids)} were not made by this service")


class ErpFailure(Exception):
    """The ERP did not do what was asked, or may have done it without saying so.

    ``outcome`` is what the outbox does about it: one of its ``RetryLater``, ``PauseKind`` or
    ``PermanentFailure``, chosen by the gateway, which alone knows the ERP's errors.
    ``nothing_done`` is True when the request certainly had no effect (refused before anything
    happened: a rate limit, an authorization error); False when the outcome is unknown (a lost
    answer, a 5xx, a timeout).
    """

    def __init__(self, outcome: Exception, *, nothing_done: bool) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome
        self.nothing_done = nothing_done


class ErpSession(Protocol):
    """One job's conversation with the ERP. Every method raises ``ErpFailure`` for a failure
    and ``ErpRefused`` where the ERP refuses the request itself."""

    @property
    def calls(self) -> int:
        """Requests made so far (for the log line of the job)."""
        ...

    def ensure_sales_order(self, order: Order, before_write: Callable[[str], None]) -> int | None:
        """The ERP's sales order for ``order``, found (one this service made: a repeated run) or
        created; its id, or None for an ERP that keeps no sales orders. ``before_write(what)`` is
        called before each write the ERP cannot undo, and may raise to stop the run there.
        ``ForeignSalesOrder`` when the ERP has the order's number only on sales orders this
        service did not make."""
        ...

    def find_sales_order(self, order: Order) -> int | None:
        """The sales order this service made for ``order`` (a create whose answer was lost), or
        None; never creates one, never returns another integration's."""
        ...

    def cancel_sales_order(self, erp_order_id: int) -> None:
        """Move the sales order to the ERP's cancelled situation, so nobody ships it. Doing it
        again changes nothing. ``ErpRefused`` when the ERP will not cancel it."""
        ...

    def update_sales_order(self, order: Order, erp_order_id: int) -> None:
        """Rewrite the ERP's sales order ``erp_order_id`` from ``order``'s lines as they are now
        (its stock not posted yet: the posting then takes the corrected quantities, and the
        warehouse ships them). Doing it again changes nothing. ``ErpRefused`` when the ERP will
        not change it."""
        ...

    def post_stock(self, erp_order_id: int | None) -> None:
        """Take the order's units out of the ERP's stock. ``ErpRefused`` when the ERP refuses:
        it refuses a second posting of one order too."""
        ...

    def reverse_stock(self, erp_order_id: int | None) -> None:
        """Put a posted order's units back in the ERP's stock. ``ErpRefused`` when there is
        nothing posted to reverse."""
        ...

    def enter_stock(self, sku: str, quantity: int, note: str) -> None:
        """Change the ERP's stock of ``sku`` in the deposit sold from by ``quantity`` (> 0: an
        entry, units back in stock; < 0: units out), outside any sales order (a refund, an
        order edit after the posting). The ERP keeps no key for it: sent once, never twice.
        ``ErpRefused`` when the ERP refuses it."""
        ...


class ErpGateway(Protocol):
    """The ERP the confirmed orders go to: Bling (erp/forwarding.py) or none (NullGateway)."""

    def session(self, order: Order) -> AbstractContextManager[ErpSession]:
        """A session for one job about ``order``; raises ``ErpFailure`` when the ERP cannot be
        used now (not connected, its configuration incomplete)."""
        ...

    def note_acknowledged(
        self, uow: UnitOfWork, quantities: dict[str, int], reference: str
    ) -> None:
        """Called in the transaction that turns the order's commitments into on-hand decreases,
        so the ERP side can keep its own books of them (Bling: a balance read earlier is applied
        without these units, erp/stock_sync.py)."""
        ...
