"""Refunds and order edits (issue 13 point 6) against the Bling stand-in on SQLite and PG:
``refunds/create`` and ``orders/edited`` delivered as Shopify sends them, the ledger moved once
per refund or edit id, and Bling told exactly what its sales order does not already say (a
sales order made from the corrected lines, or a stock entry after its posting, ``POST
/estoques``, once). The same rules run over fakes in tests/unit/test_order_adjustments.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from shopify_app.erp import connection
from shopify_app.outbox.kinds import FORWARD_ORDER, STOCK_ENTRY
from tests.support.adjustments import bling_balance, edit_payload, refund_payload
from tests.support.bling_app import drain, make_app, runtime_of, sync
from tests.support.bling_standin import BlingStandIn
from tests.support.clock import FakeClock
from tests.support.forwarding import deliver, forwarding_environ, jobs, order_row
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.orders import shopify_order


@pytest.fixture
def standin() -> Iterator[BlingStandIn]:
    with BlingStandIn(products=[("BZ-TEE", 10), ("BZ-CAP", 4)], rate_limit=None) as server:
        yield server


@pytest.fixture
def app(database_url: str, clock: FakeClock, standin: BlingStandIn) -> Iterator[Flask]:
    app = make_app(database_url, clock, **forwarding_environ(standin))
    connection.connect(runtime_of(app), standin.authorize())
    sync(app, standin)
    yield app
    runtime_of(app).engine.dispose()


def test_a_returned_line_of_a_forwarded_order_goes_back_here_and_into_bling_once(
    app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(app)
    client = app.test_client()
    order = shopify_order(6001, [("BZ-TEE", 3, "89.90"), ("BZ-CAP", 1, "49.90")])
    deliver(client, order, "orders/create")
    drain(runtime, clock)
    assert bling_balance(standin, "BZ-TEE") == 7
    assert figures(runtime.engine, "BZ-TEE")["on_hand"] == 7

    refund = refund_payload(801, 6001, [(1, 2, "return", "BZ-TEE"), (2, 1, "no_restock", "BZ-CAP")])
    assert deliver(client, refund, "refunds/create")["status"] == "adjusted"
    assert figures(runtime.engine, "BZ-TEE") == {
        "on_hand": 9,
        "reserved": 0,
        "committed": 0,
        "available": 9,
    }
    drain(runtime, clock)
    assert standin.entries_of("BZ-TEE") == [("E", 2.0)]
    assert standin.entries_of("BZ-CAP") == [], "no_restock: the cap stays sold"
    assert bling_balance(standin, "BZ-TEE") == 9
    (entry,) = standin.stock_entries
    assert entry[2] == standin.default_deposit, "the deposit the order was sold from"
    assert "refund:801" in entry[5]

    # The same refund again, under another delivery id: applied once.
    assert deliver(client, refund, "refunds/create")["status"] in ("duplicate_adjustment",)
    drain(runtime, clock)
    assert len(standin.stock_entries) == 1
    assert figures(runtime.engine, "BZ-TEE")["on_hand"] == 9
    assert [k for k, _ in jobs(runtime)] == [FORWARD_ORDER, STOCK_ENTRY]
    assert_ledger_balanced(runtime.engine)


def test_a_refund_before_the_forward_leaves_bling_a_smaller_sales_order(
    app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(app)
    client = app.test_client()
    deliver(client, shopify_order(6002, [("BZ-TEE", 3, "89.90")]), "orders/create")
    refund = refund_payload(802, 6002, [(1, 1, "cancel", "BZ-TEE")])
    assert deliver(client, refund, "refunds/create")["status"] == "adjusted"
    assert figures(runtime.engine, "BZ-TEE")["committed"] == 2
    drain(runtime, clock)
    (sales_order,) = standin.orders_with_store_number("#6002")
    assert [(i["codigo"], i["quantidade"]) for i in sales_order["itens"]] == [("BZ-TEE", 2.0)]
    assert bling_balance(standin, "BZ-TEE") == 8
    assert standin.stock_entries == []
    assert figures(runtime.engine, "BZ-TEE")["on_hand"] == 8
    assert order_row(runtime, 6002).forward_status == "forwarded"
    assert_ledger_balanced(runtime.engine)


def test_an_edit_after_the_forward_posts_its_difference_in_bling(
    app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(app)
    client = app.test_client()
    order = shopify_order(6003, [("BZ-TEE", 2, "89.90"), ("BZ-CAP", 1, "49.90")])
    deliver(client, order, "orders/create")
    drain(runtime, clock)
    edit = edit_payload(901, 6003, added={2: 2}, removed={1: 1})
    assert deliver(client, edit, "orders/edited")["status"] == "adjusted"
    assert figures(runtime.engine, "BZ-TEE")["on_hand"] == 9
    assert figures(runtime.engine, "BZ-CAP")["on_hand"] == 1
    drain(runtime, clock)
    assert standin.entries_of("BZ-TEE") == [("E", 1.0)]
    assert standin.entries_of("BZ-CAP") == [("S", 2.0)]
    assert (bling_balance(standin, "BZ-TEE"), bling_balance(standin, "BZ-CAP")) == (9, 1)
    assert deliver(client, edit, "orders/edited")["status"] == "duplicate_adjustment"
    assert_ledger_balanced(runtime.engine)


def test_an_edit_before_the_forward_corrects_the_sales_order(
    app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(app)
    client = app.test_client()
    deliver(client, shopify_order(6004, [("BZ-TEE", 2, "89.90")]), "orders/create")
    edit = edit_payload(902, 6004, added={1: 1}, removed={})
    assert deliver(client, edit, "orders/edited")["status"] == "adjusted"
    assert figures(runtime.engine, "BZ-TEE")["committed"] == 3
    drain(runtime, clock)
    (sales_order,) = standin.orders_with_store_number("#6004")
    assert [(i["codigo"], i["quantidade"]) for i in sales_order["itens"]] == [("BZ-TEE", 3.0)]
    assert bling_balance(standin, "BZ-TEE") == 7
    assert standin.stock_entries == []
    assert_ledger_balanced(runtime.engine)


def test_a_refund_without_ids_is_refused_and_changes_nothing(
    app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(app)
    client = app.test_client()
    deliver(client, shopify_order(6005, [("BZ-TEE", 2, "89.90")]), "orders/create")
    from tests.support.shopify_sender import deliver as post

    response = post(client, {"order_id": 6005, "refund_line_items": []}, "refunds/create")
    assert response.status_code != 500
    assert figures(runtime.engine, "BZ-TEE")["committed"] == 2


def test_a_cancellation_after_a_refund_leaves_bling_where_it_began(
    app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    """Bling's reversal puts back the whole posting, so the refund's entry is taken out again:
    Bling and the ledger both end at the stock they had before the sale."""
    runtime = runtime_of(app)
    client = app.test_client()
    deliver(client, shopify_order(6006, [("BZ-TEE", 3, "89.90")]), "orders/create")
    drain(runtime, clock)
    deliver(client, refund_payload(806, 6006, [(1, 1, "return", "BZ-TEE")]), "refunds/create")
    drain(runtime, clock)
    assert bling_balance(standin, "BZ-TEE") == 8
    deliver(
        client,
        shopify_order(6006, [], cancelled_at="2026-11-28T10:00:00-03:00"),
        "orders/cancelled",
    )
    drain(runtime, clock)
    assert standin.entries_of("BZ-TEE") == [("E", 1.0), ("S", 1.0)]
    assert bling_balance(standin, "BZ-TEE") == 10
    assert figures(runtime.engine, "BZ-TEE") == {
        "on_hand": 10,
        "reserved": 0,
        "committed": 0,
        "available": 10,
    }
    assert order_row(runtime, 6006).forward_status == "reversed"
    assert_ledger_balanced(runtime.engine)
