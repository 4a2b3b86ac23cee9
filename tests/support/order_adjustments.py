"""The refund and edit use cases over in-memory fakes: the steps the unit tests share (sell,
adjust, forward, enter the stock), and the fake ERP fixture."""

from __future__ import annotations

import pytest

from shopify_app.orders import adjustments, forwarding, services
from shopify_app.orders.forwarding import Deadline
from shopify_app.orders.model import Adjustment, LineChange, Order
from shopify_app.orders.services import Sale
from shopify_app.outbox.kinds import STOCK_ENTRY
from shopify_app.shopify.payloads import LineItem
from tests.support.fakes import FakeErp, FakeUnitOfWork, StockStore

SHOP = "bazico.myshopify.com"


@pytest.fixture
def erp() -> FakeErp:
    return FakeErp()


def sell(uow: FakeUnitOfWork, order_id: int = 1, *, paid: bool = True) -> None:
    items = [LineItem(11, "TEE", 3), LineItem(12, "CAP", 1)]
    with uow:
        services.sell(uow, Sale(SHOP, order_id, f"#{order_id}", None, items, paid=paid))
        uow.commit()


def adjust(uow: FakeUnitOfWork, change: Adjustment) -> str:
    with uow:
        result = adjustments.adjust(uow, change)
        uow.commit()
    return result.outcome


def refund(key: str, *removed: tuple[int, int], order_id: int = 1) -> Adjustment:
    return Adjustment(SHOP, order_id, key, removed=tuple(LineChange(i, q) for i, q in removed))


def forward(uow: FakeUnitOfWork, erp: FakeErp, order_id: int = 1) -> str:
    return forwarding.forward(uow, erp, SHOP, order_id, Deadline(300.0))


def enter(uow: FakeUnitOfWork, erp: FakeErp, key: str, order_id: int = 1) -> str:
    return adjustments.enter_stock(uow, erp, SHOP, order_id, key)


def order_of(store: StockStore, order_id: int = 1) -> Order:
    return store.orders[(SHOP, order_id)]


def entry_jobs(store: StockStore) -> list[str]:
    return [key for kind, key, _ in store.jobs if kind == STOCK_ENTRY]
