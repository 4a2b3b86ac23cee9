"""In-memory stand-ins for the repositories, the unit of work and the ERP, so the use cases (the
stock services, the order services, the forwarding steps, the Shopify webhook handlers that keep
carts in step) are unit-tested in milliseconds, without a database.

They keep the port's contract the simple way: one transaction at a time, nothing stored until
``commit`` (so leaving the ``with`` block without it rolls everything back), every read returning
copies that only ``commit`` writes back. The SQL implementations are tested against a real
SQLite and PostgreSQL in tests/integration.

Long because one fake per port (stock, orders, Shopify side, ERP) and the unit of work that
hands them out; they share one StockStore, and apart they would need each other's internals.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime
from typing import Any

from shopify_app.observability.events import Event
from shopify_app.orders.model import BlingStock, Order
from shopify_app.orders.ports import ErpFailure, ErpRefused, ForeignSalesOrder
from shopify_app.orders.services import quantities
from shopify_app.outbox import RetryLater
from shopify_app.shopify.ports import EPOCH, Cart
from shopify_app.stock.domain import (
    Hold,
    HoldStatus,
    Movement,
    Reason,
    StockLevel,
    UnknownSku,
)


@dataclasses.dataclass
class StockStore:
    """What the fake database holds: the SKU rows, the holds and the movement ledger."""

    rows: dict[str, tuple[int, int, int]] = dataclasses.field(default_factory=dict)
    holds: dict[uuid.UUID, Hold] = dataclasses.field(default_factory=dict)
    movements: list[Movement] = dataclasses.field(default_factory=list)
    locked_holders: list[str] = dataclasses.field(default_factory=list)
    carts: dict[tuple[str, str], Cart] = dataclasses.field(default_factory=dict)
    shortfalls: dict[tuple[str, str], dict[str, int]] = dataclasses.field(default_factory=dict)
    orders: dict[tuple[str, int], Order] = dataclasses.field(default_factory=dict)
    variants: dict[tuple[str, int], str] = dataclasses.field(default_factory=dict)
    jobs: list[tuple[str, str, dict[str, Any]]] = dataclasses.field(default_factory=list)

    def figures(self, sku: str) -> dict[str, int]:
        on_hand, reserved, committed = self.rows[sku]
        return {
            "on_hand": on_hand,
            "reserved": reserved,
            "committed": committed,
            "available": on_hand - reserved - committed,
        }

    def stock(self, **levels: int) -> None:
        """Put SKUs on hand directly (as a sync would), with their movements."""
        for sku, on_hand in levels.items():
            self.rows[sku] = (on_hand, 0, 0)
            self.movements.append(Movement(sku, Reason.SYNC, "test", on_hand=on_hand))


class FakeStockRepository:
    """The stock port over a StockStore, for one transaction at time ``now``."""

    def __init__(self, store: StockStore, now: datetime) -> None:
        self.store = store
        self.now = now
        self._levels: dict[str, StockLevel] = {}
        self._holds: dict[uuid.UUID, Hold] = {}
        self._new: list[Hold] = []

    # --- reads under "lock" -------------------------------------------------------------------

    def lock(self, sku_list: Iterable[str], *, missing_ok: bool = False) -> dict[str, StockLevel]:
        wanted = sorted(set(sku_list))
        missing = [s for s in wanted if s not in self.store.rows and s not in self._levels]
        if missing and not missing_ok:
            raise UnknownSku(missing)
        found = {}
        for sku in wanted:
            if sku in self._levels:
                found[sku] = self._levels[sku]
            elif sku in self.store.rows:
                found[sku] = self._levels[sku] = StockLevel(sku, *self.store.rows[sku])
        return found

    def lock_holder(self, holder: str) -> None:
        self.store.locked_holders.append(holder)

    def lock_for_holder(
        self, holder: str, sku_list: Iterable[str]
    ) -> tuple[dict[str, StockLevel], list[Hold]]:
        self.lock_holder(holder)
        holds = self.active_holds_of(holder)
        return self.lock({*sku_list, *(h.sku for h in holds)}, missing_ok=True), holds

    def lock_or_create(self, sku: str) -> StockLevel:
        if sku not in self.store.rows and sku not in self._levels:
            self._levels[sku] = StockLevel(sku, 0, 0, 0)
        return self.lock([sku])[sku]

    def _track(self, hold: Hold) -> Hold:
        if hold.id not in self._holds:
            self._holds[hold.id] = dataclasses.replace(hold)
        return self._holds[hold.id]

    def _all_holds(self) -> list[Hold]:
        return [self._track(h) for h in self.store.holds.values()] + self._new

    def due_holds(self, sku: str) -> list[Hold]:
        due = [h for h in self._all_holds() if h.sku == sku and h.is_due(self.now)]
        return sorted(due, key=lambda h: h.expires_at)

    def skus_with_due_holds(self, limit: int) -> list[str]:
        return sorted({h.sku for h in self._all_holds() if h.is_due(self.now)})[:limit]

    def holds_by_id(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Hold]:
        wanted = set(ids)
        return {h.id: h for h in self._all_holds() if h.id in wanted}

    def active_holds_of(self, holder: str) -> list[Hold]:
        mine = [
            h for h in self._all_holds() if h.holder == holder and h.status is HoldStatus.ACTIVE
        ]
        return sorted(mine, key=lambda h: (h.created_at, str(h.id)))

    def holds_confirmed_for(self, holder: str, order_refs: Iterable[str]) -> list[Hold]:
        refs = {r for r in order_refs if r}
        return [
            h
            for h in self._all_holds()
            if h.holder == holder and h.status is HoldStatus.CONFIRMED and h.order_ref in refs
        ]

    def add_hold(self, hold: Hold) -> None:
        self._new.append(hold)

    def forget_holders(self, holders: Iterable[str] | None) -> None:
        chosen = None if holders is None else set(holders)
        for hold in self._all_holds():
            if hold.holder is not None and (chosen is None or hold.holder in chosen):
                hold.holder = None

    # --- plain reads --------------------------------------------------------------------------

    def levels(self, sku: str | None = None) -> list[tuple[StockLevel, int]]:
        out = []
        for name in sorted(self.store.rows):
            if sku is not None and name != sku:
                continue
            due = sum(
                h.quantity
                for h in self.store.holds.values()
                if h.sku == name and h.is_due(self.now)
            )
            out.append((StockLevel(name, *self.store.rows[name]), due))
        return out

    def movement_totals(self) -> dict[str, tuple[int, int, int]]:
        totals: dict[str, tuple[int, int, int]] = {}
        for m in self.store.movements:
            a, b, c = totals.get(m.sku, (0, 0, 0))
            totals[m.sku] = (a + m.on_hand, b + m.reserved, c + m.committed)
        return totals

    def active_hold_totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for h in self.store.holds.values():
            if h.status is HoldStatus.ACTIVE:
                totals[h.sku] = totals.get(h.sku, 0) + h.quantity
        return totals

    # --- commit -------------------------------------------------------------------------------

    def flush(self) -> None:
        for level in self._levels.values():
            self.store.rows[level.sku] = (level.on_hand, level.reserved, level.committed)
            self.store.movements.extend(level.pending)
            level.pending = []
        for hold in [*self._holds.values(), *self._new]:
            self.store.holds[hold.id] = dataclasses.replace(hold)
        self._new = []


class FakeShopifyRepository:
    """The Shopify side's rows (carts, orders, variants) over a StockStore: reads are copies,
    writes are kept apart until ``flush`` (the unit of work's commit)."""

    def __init__(self, store: StockStore, now: datetime) -> None:
        self.store = store
        self.now = now
        self._carts: dict[tuple[str, str], Cart] = {}
        self._shortfalls: dict[tuple[str, str], dict[str, int]] = {}
        self._orders: dict[tuple[str, int], Order] = {}
        self._variants: dict[tuple[str, int], str] = {}
        self._forgotten: set[tuple[str, int]] = set()

    def lock_cart(self, shop: str, token: str, variant_ids: Collection[int] = ()) -> Cart:
        key = (shop, token)
        if key not in self._carts:
            found = self.store.carts.get(key) or Cart(shop, token, None, EPOCH, False)
            self._carts[key] = dataclasses.replace(found)
        return dataclasses.replace(self._carts[key])

    def lock_cart_ahead(
        self, shop: str, token: str, variant_ids: Collection[int] = ()
    ) -> Callable[[], Cart]:
        cart = self.lock_cart(shop, token, variant_ids)
        return lambda: cart

    def save_cart(self, cart: Cart, shortfalls: dict[str, int] | None = None) -> None:
        self._carts[(cart.shop, cart.token)] = dataclasses.replace(cart)
        if shortfalls is not None:
            self._shortfalls[(cart.shop, cart.token)] = dict(shortfalls)

    def cart_token_of_checkout(self, shop: str, checkout_token: str) -> str | None:
        carts = {**self.store.carts, **self._carts}
        for (cart_shop, token), cart in carts.items():
            if cart_shop == shop and cart.checkout_token == checkout_token:
                return token
        return None

    def remember_variants(
        self, shop: str, mapping: dict[int, str], untracked: Collection[int] = ()
    ) -> None:
        self._variants.update({(shop, v): sku for v, sku in mapping.items()})
        for variant_id in untracked:
            if variant_id not in mapping:
                self._variants.pop((shop, variant_id), None)
                self._forgotten.add((shop, variant_id))

    def sku_of_variant(self, shop: str, variant_id: int) -> str | None:
        if (shop, variant_id) in self._forgotten:
            return None
        return {**self.store.variants, **self._variants}.get((shop, variant_id))

    def forget_carts(self, shop: str, tokens: Iterable[str]) -> None:
        for token in tokens:
            self.store.carts.pop((shop, token), None)
            self._carts.pop((shop, token), None)

    def erase_shop(self, shop: str) -> None:
        for table in (self.store.carts, self._carts, self.store.variants, self._variants):
            for key in [k for k in table if k[0] == shop]:
                del table[key]

    def flush(self) -> None:
        self.store.carts.update(self._carts)
        self.store.shortfalls.update(self._shortfalls)
        self.store.variants.update(self._variants)
        for key in self._forgotten:
            self.store.variants.pop(key, None)
        self._carts, self._shortfalls, self._variants = {}, {}, {}


class FakeOrderRepository:
    """The orders' rows over a StockStore: reads are copies, writes wait for ``flush``."""

    def __init__(self, store: StockStore, now: datetime) -> None:
        self.store = store
        self.now = now
        self._orders: dict[tuple[str, int], Order] = {}

    def get(self, shop: str, order_id: int, *, lock: bool = False) -> Order | None:
        found = self._orders.get((shop, order_id)) or self.store.orders.get((shop, order_id))
        return copy.deepcopy(found)

    def claim(self, order: Order) -> bool:
        key = (order.shop, order.order_id)
        if key in self._orders or key in self.store.orders:
            return False
        self._orders[key] = copy.deepcopy(order)
        return True

    def save(self, order: Order) -> None:
        self._orders[(order.shop, order.order_id)] = copy.deepcopy(order)

    def _write(self, order: Order, **fields: Any) -> None:
        current = self.get(order.shop, order.order_id)
        assert current is not None, "a write to an unknown order"
        for name, value in fields.items():
            setattr(current, name, value)
        self._orders[(order.shop, order.order_id)] = current

    def save_erp_order(self, order: Order) -> None:
        self._write(order, bling_order_id=order.bling_order_id, bling_order=order.bling_order)

    def save_stock_state(self, order: Order) -> None:
        self._write(order, bling_stock=order.bling_stock)

    def save_stock_entries(self, order: Order) -> None:
        self._write(order, stock_entries=copy.deepcopy(order.stock_entries))

    def units_in_reversal(self, skus: Iterable[str]) -> dict[str, int]:
        wanted, units = set(skus), Counter[str]()
        for order in {**self.store.orders, **self._orders}.values():
            reversing = order.needs_reversal and order.bling_stock is BlingStock.REVERSING
            if reversing and order.acknowledged:
                units.update({s: n for s, n in quantities(order).items() if s in wanted})
        return dict(units)

    def forget_customers(self, shop: str, order_ids: Iterable[int]) -> list[str]:
        tokens = []
        for order_id in order_ids:
            order = self.get(shop, order_id)
            if order is not None:
                if order.cart_token:
                    tokens.append(order.cart_token)
                order.cart_token = None
                self.save(order)
        return tokens

    def erase_shop(self, shop: str) -> None:
        for table in (self.store.orders, self._orders):
            for key in [k for k in table if k[0] == shop]:
                del table[key]

    def flush(self) -> None:
        self.store.orders.update(self._orders)
        self._orders = {}


class FakeUnitOfWork:
    """A unit of work over a StockStore: nothing is stored until ``commit``; ``events`` are the
    business events the use cases recorded, ``committed_events`` those a commit made true."""

    def __init__(self, store: StockStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        self.commits = 0
        self.committed_events: list[Event] = []

    def __enter__(self) -> FakeUnitOfWork:
        self.now = self.clock()
        self._fresh()
        self.events: list[Event] = []
        return self

    def _fresh(self) -> None:
        self.stock = FakeStockRepository(self.store, self.now)
        self.shopify = FakeShopifyRepository(self.store, self.now)
        self.orders = FakeOrderRepository(self.store, self.now)
        self._jobs: list[tuple[str, str, dict[str, Any]]] = []

    def __exit__(self, *exc: object) -> None:
        self._fresh()  # uncommitted changes are gone

    def commit(self) -> None:
        self.stock.flush()
        self.shopify.flush()
        self.orders.flush()
        self.store.jobs.extend(self._jobs)
        self._jobs = []
        self.commits += 1
        self.committed_events.extend(self.events)
        self.events = []

    def rollback(self) -> None:
        self._fresh()

    @property
    def connection(self) -> Any:
        raise NotImplementedError("an in-memory unit of work has no SQL connection")

    def __call__(self, *, read_only: bool = False, snapshot: bool = False) -> FakeUnitOfWork:
        """Itself, as a fresh transaction: stands for ``Runtime.uow`` (a factory of them)."""
        return self

    def enqueue(self, kind: str, key: str, payload: dict[str, Any]) -> bool:
        if any((k, key2) == (kind, key) for k, key2, _ in [*self.store.jobs, *self._jobs]):
            return False
        self._jobs.append((kind, key, dict(payload)))
        return True

    def record(self, action: str, **fields: Any) -> None:
        fields.pop("level", None)
        self.events.append(Event(action, fields))


class FakeErp:
    """An ERP in memory, for the forwarding use cases (orders/forwarding.py): its sales orders
    by store number, the orders whose stock is posted, the cancelled ones, and failures scripted
    per call.

    ``fail(call, *errors)`` makes the next calls of ``call`` (``session``, ``ensure_sales_order``,
    ``find_sales_order``, ``post_stock``, ``reverse_stock``, ``cancel_sales_order``) raise those
    errors in turn; ``LOST`` as an error does the call, then loses its answer (a 5xx after the
    fact, a timeout: the outcome unknown). ``import_foreign(number)`` stands for another
    integration (Bling's own Shopify import) making a sales order under that number.
    ``after_post`` runs once a posting is made: what happens here while the ERP posts.
    ``lines`` are the units each sales order was made with; ``entries`` the stock entries
    (``enter_stock``: SKU, signed quantity, note) in the order made.
    """

    LOST = object()

    def __init__(self) -> None:
        self.sales_orders: dict[str, int] = {}
        self.foreign: dict[str, int] = {}
        self.posted: set[int] = set()
        self.cancelled: set[int] = set()
        self.calls = 0
        self.writes: list[tuple[str, int]] = []
        self.acknowledged: list[tuple[dict[str, int], str]] = []
        self.failures: dict[str, list[Any]] = {}
        self.lines: dict[int, dict[str, int]] = {}
        self.entries: list[tuple[str, int, str]] = []
        self.after_post: Callable[[], object] | None = None
        self._ids = iter(range(9001, 10_000))

    def fail(self, call: str, *errors: Any) -> None:
        self.failures.setdefault(call, []).extend(errors)

    def import_foreign(self, number: str) -> int:
        self.foreign[number] = 8000 + len(self.foreign)
        return self.foreign[number]

    def _next_failure(self, call: str) -> Any:
        self.calls += 1
        queue = self.failures.get(call) or []
        if not queue:
            return None
        failure = queue.pop(0)
        if failure is not FakeErp.LOST:
            raise failure
        return failure

    @staticmethod
    def _lost() -> Exception:
        return ErpFailure(RetryLater("answer lost"), nothing_done=False)

    @contextlib.contextmanager
    def session(self, order: Order) -> Iterator[FakeErp]:
        self._next_failure("session")
        yield self

    def ensure_sales_order(self, order: Order, before_write: Callable[[str], None]) -> int | None:
        lost = self._next_failure("ensure_sales_order")
        number = order.name or str(order.order_id)
        if number not in self.sales_orders:
            if number in self.foreign:
                raise ForeignSalesOrder([self.foreign[number]])
            before_write("create the sales order")
            self.sales_orders[number] = next(self._ids)
            self.writes.append(("sales_order", self.sales_orders[number]))
            made: dict[str, int] = {}
            for line in order.lines:
                if line.remaining:
                    made[line.sku] = made.get(line.sku, 0) + line.remaining
            self.lines[self.sales_orders[number]] = made
        if lost:
            raise self._lost()
        return self.sales_orders[number]

    def find_sales_order(self, order: Order) -> int | None:
        self._next_failure("find_sales_order")
        return self.sales_orders.get(order.name or str(order.order_id))

    def update_sales_order(self, order: Order, erp_order_id: int) -> None:
        lost = self._next_failure("update_sales_order")
        assert erp_order_id not in self.posted, "a posted sales order is never rewritten"
        made: dict[str, int] = {}
        for line in order.lines:
            if line.remaining:
                made[line.sku] = made.get(line.sku, 0) + line.remaining
        self.lines[erp_order_id] = made
        self.writes.append(("update", erp_order_id))
        if lost:
            raise self._lost()

    def post_stock(self, erp_order_id: int | None) -> None:
        lost = self._next_failure("post_stock")
        assert erp_order_id is not None
        if erp_order_id in self.posted:
            raise ErpRefused("stock already posted for this order")
        self.posted.add(erp_order_id)
        self.writes.append(("post", erp_order_id))
        if self.after_post is not None:
            self.after_post()
        if lost:
            raise self._lost()

    def reverse_stock(self, erp_order_id: int | None) -> None:
        lost = self._next_failure("reverse_stock")
        assert erp_order_id is not None
        if erp_order_id not in self.posted:
            raise ErpRefused("nothing posted to reverse")
        self.posted.discard(erp_order_id)
        self.writes.append(("reverse", erp_order_id))
        if lost:
            raise self._lost()

    def cancel_sales_order(self, erp_order_id: int) -> None:
        lost = self._next_failure("cancel_sales_order")
        assert erp_order_id in self.sales_orders.values(), "only our own sales orders"
        if erp_order_id not in self.cancelled:  # a second time changes nothing
            self.cancelled.add(erp_order_id)
            self.writes.append(("cancel", erp_order_id))
        if lost:
            raise self._lost()

    def enter_stock(self, sku: str, quantity: int, note: str) -> None:
        lost = self._next_failure("enter_stock")
        self.entries.append((sku, quantity, note))
        self.writes.append(("entry", quantity))
        if lost:
            raise self._lost()

    def note_acknowledged(self, uow: Any, quantities: dict[str, int], reference: str) -> None:
        self.acknowledged.append((dict(quantities), reference))
