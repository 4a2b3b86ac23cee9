"""Order edits that add lines the order did not have, and Bling sales orders corrected before
their posting (issue 13 point 6), against the Bling and the Shopify stand-ins on SQLite and PG.

``orders/edited`` names an added line by id only: the ``shopify.edit_lines`` job reads its SKU
from the Admin GraphQL API (the Shopify stand-in's ``order(id:)``), then the addition moves the
ledger and Bling like any known line, once. A refund or an edit that lands after Bling's sales
order was made but before its stock was posted rewrites that sales order (``PUT
/pedidos/vendas/{id}``) instead of sending stock entries; once posted, the entries are sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from shopify_app import outbox
from shopify_app.erp import connection
from shopify_app.outbox.kinds import EDIT_LINES, FORWARD_ORDER, STOCK_ENTRY
from shopify_app.outbox.service import retry_dead
from shopify_app.outbox.tables import outbox_jobs
from shopify_app.shopify import order_edits
from tests.support.adjustments import bling_balance, edit_payload, refund_payload
from tests.support.app import SHOP
from tests.support.bling_app import drain, make_app, runtime_of, sync
from tests.support.bling_standin import BlingStandIn, Reply, error
from tests.support.clock import FakeClock
from tests.support.forwarding import deliver, forwarding_environ, jobs, order_row
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.orders import shopify_order
from tests.support.shopify_install import standin as shopify_standin
from tests.support.shopify_standin import ShopifyStandIn

TOKEN = "shpat_order_edits"


class PostingsRefused(BlingStandIn):
    """Refuses every stock posting while ``refuse_postings`` is set (a posting Bling rejects:
    the sales order is made, its stock certainly not posted); ``lose_next_posting`` makes the
    next posting land and its answer be lost."""

    refuse_postings = False
    lose_next_posting = False
    _lose_now = False

    def post_stock(
        self, query: dict[str, list[str]], raw: bytes, order_id: int, deposit: int | None = None
    ) -> Reply:
        if self.refuse_postings:
            return 400, error("VALIDATION_ERROR", "Não foi possível lançar o estoque")
        reply = super().post_stock(query, raw, order_id, deposit)
        if self.lose_next_posting and reply[0] < 300:
            self.lose_next_posting, self._lose_now = False, True
        return reply

    def lose_this_answer(self) -> bool:
        if self._lose_now:
            self._lose_now = False
            return True
        return super().lose_this_answer()


@pytest.fixture
def bling() -> Iterator[PostingsRefused]:
    with PostingsRefused(products=[("BZ-TEE", 10), ("BZ-CAP", 4)], rate_limit=None) as server:
        yield server


@pytest.fixture
def shopify(clock: FakeClock) -> Iterator[ShopifyStandIn]:
    with shopify_standin(clock) as server:
        server.add_access_token(SHOP, TOKEN)
        yield server


@pytest.fixture
def app(
    database_url: str, clock: FakeClock, bling: BlingStandIn, shopify: ShopifyStandIn
) -> Iterator[Flask]:
    environ = forwarding_environ(bling, SHOPIFY_ADMIN_URL=shopify.url, SHOPIFY_ACCESS_TOKEN=TOKEN)
    app = make_app(database_url, clock, **environ)
    connection.connect(runtime_of(app), bling.authorize())
    sync(app, bling)
    yield app
    runtime_of(app).engine.dispose()


def shopify_line(order_id: int, n: int) -> int:
    """The numeric id the Shopify stand-in gives the order's ``n``-th line item."""
    return order_id * 100 + n


def edit_job(app: Flask) -> Any:
    with runtime_of(app).engine.connect() as conn:
        return conn.execute(select(outbox_jobs).where(outbox_jobs.c.kind == EDIT_LINES)).one()


def edit_payload_of(app: Flask) -> dict[str, Any]:
    payload = edit_job(app).payload
    return json.loads(payload) if isinstance(payload, str) else dict(payload)


def items_of(bling: BlingStandIn, number: str) -> list[tuple[str, float]]:
    (sales_order,) = bling.orders_with_store_number(number)
    return sorted((i["codigo"], i["quantidade"]) for i in sales_order["itens"])


# --- lines an edit adds that the order did not have --------------------------------------------


def test_a_new_line_of_an_edit_is_read_from_shopify_and_reaches_the_ledger_and_bling_once(
    app: Flask, bling: BlingStandIn, shopify: ShopifyStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(app)
    client = app.test_client()
    deliver(client, shopify_order(6101, [("BZ-TEE", 2, "89.90")]), "orders/create")
    drain(runtime, clock)
    assert bling_balance(bling, "BZ-CAP") == 4

    # The merchant adds a cap: Shopify's order has it now, the webhook names it by id only.
    shopify.add_order(SHOP, 6101, [("BZ-TEE", 2), ("BZ-CAP", 1)], updated_at=clock.now)
    cap_line = shopify_line(6101, 2)
    edit = edit_payload(911, 6101, added={cap_line: 1}, removed={})
    assert deliver(client, edit, "orders/edited")["status"] == "adjusted_partly"
    assert figures(runtime.engine, "BZ-CAP")["on_hand"] == 4, "not applied before it is read"
    assert edit_payload_of(app)["lines"] == [{"id": cap_line, "quantity": 1}]

    drain(runtime, clock)
    assert figures(runtime.engine, "BZ-CAP") == {
        "on_hand": 3,
        "reserved": 0,
        "committed": 0,
        "available": 3,
    }
    assert bling.entries_of("BZ-CAP") == [("S", 1.0)], "the posted order's difference"
    assert bling_balance(bling, "BZ-CAP") == 3
    assert len(shopify.calls_of("graphql")) == 1
    assert bling.order_updates == {}, "a posted sales order is not rewritten"

    # The same edit again, and the job's handler run again (a lost "done"): nothing more.
    assert deliver(client, edit, "orders/edited")["status"] == "duplicate_adjustment"
    order_edits.edit_lines(runtime, edit_payload_of(app))
    drain(runtime, clock)
    assert figures(runtime.engine, "BZ-CAP")["on_hand"] == 3
    assert len(bling.stock_entries) == 1
    assert [k for k, _ in jobs(runtime)] == [FORWARD_ORDER, EDIT_LINES, STOCK_ENTRY]
    assert_ledger_balanced(runtime.engine)


def test_a_new_line_waits_while_shopify_is_down_and_is_applied_once_it_answers(
    app: Flask, bling: BlingStandIn, shopify: ShopifyStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(app)
    client = app.test_client()
    deliver(client, shopify_order(6102, [("BZ-TEE", 1, "89.90")]), "orders/create")
    shopify.add_order(SHOP, 6102, [("BZ-TEE", 1), ("BZ-CAP", 2)], updated_at=clock.now)
    edit = edit_payload(912, 6102, added={shopify_line(6102, 2): 2}, removed={})
    deliver(client, edit, "orders/edited")

    shopify.outage(503)
    for _ in range(3):
        outbox.run_due(runtime, batch=50)
        clock.advance(900)
    job = edit_job(app)
    assert (job.status, job.attempts >= 1) == ("pending", True), "retried, not failed"
    assert figures(runtime.engine, "BZ-CAP")["committed"] == 0

    shopify.restore()
    drain(runtime, clock)
    assert edit_job(app).status == "done"
    # The order reached Bling during the outage: the cap is a stock entry after its posting.
    assert order_row(runtime, 6102).forward_status == "forwarded"
    assert bling.entries_of("BZ-CAP") == [("S", 2.0)]
    assert (bling_balance(bling, "BZ-TEE"), bling_balance(bling, "BZ-CAP")) == (9, 2)
    assert figures(runtime.engine, "BZ-CAP")["on_hand"] == 2
    assert_ledger_balanced(runtime.engine)


def test_a_line_shopify_gives_no_sku_takes_its_variants_sku_and_an_unknown_one_is_logged(
    app: Flask, bling: BlingStandIn, shopify: ShopifyStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(app)
    client = app.test_client()
    # An earlier order taught the service that variant 4401 is the cap (shopify_variants).
    earlier = shopify_order(6100, [("BZ-CAP", 1, "49.90")])
    earlier["line_items"][0]["variant_id"] = 4401
    deliver(client, earlier, "orders/create")
    deliver(client, shopify_order(6103, [("BZ-TEE", 1, "89.90")]), "orders/create")
    shopify.add_order(SHOP, 6103, [("BZ-TEE", 1), ("BZ-CAP", 1), ("GIFT", 1)], updated_at=clock.now)
    # The stand-in's add_order gives no variant: the cap's line is made Shopify's line with a
    # variant and no SKU of its own (LineItem.sku is nullable), the gift's has neither.
    nodes = [e["node"] for e in shopify.admin.shop(SHOP).orders[-1]["lineItems"]["edges"]]
    nodes[1].update(
        sku=None, variant={"id": "gid://shopify/ProductVariant/4401", "legacyResourceId": "4401"}
    )
    nodes[2].update(sku=None)
    added = {shopify_line(6103, 2): 1, shopify_line(6103, 3): 1}
    deliver(client, edit_payload(913, 6103, added=added, removed={}), "orders/edited")
    drain(runtime, clock)
    assert figures(runtime.engine, "BZ-CAP")["on_hand"] == 2, "two caps sold in all"
    assert bling.entries_of("BZ-CAP") == [("S", 1.0)], "the posted #6103's new cap"
    assert bling_balance(bling, "BZ-CAP") == 2
    with runtime.uow(read_only=True) as uow:
        order = uow.orders.get(SHOP, 6103)
    assert order is not None
    assert sorted(line.sku for line in order.lines) == ["BZ-CAP", "BZ-TEE"], "no gift guessed"
    assert order_row(runtime, 6103).forward_status == "forwarded"
    assert_ledger_balanced(runtime.engine)


# --- the sales order corrected before its posting ----------------------------------------------


def test_an_edit_between_the_sales_order_and_its_posting_rewrites_the_sales_order(
    app: Flask, bling: PostingsRefused, clock: FakeClock
) -> None:
    runtime = runtime_of(app)
    client = app.test_client()
    deliver(
        client,
        shopify_order(6104, [("BZ-TEE", 3, "89.90"), ("BZ-CAP", 1, "49.90")]),
        "orders/create",
    )
    bling.refuse_postings = True
    drain(runtime, clock)  # the sales order is made, its posting refused: dead-lettered
    assert order_row(runtime, 6104).bling_order == "created"
    assert order_row(runtime, 6104).bling_stock == "none"
    (sales_order,) = bling.orders_with_store_number("#6104")
    numero, contact = sales_order["numero"], sales_order["contato"]["id"]

    deliver(client, edit_payload(914, 6104, added={2: 1}, removed={1: 2}), "orders/edited")
    deliver(client, refund_payload(814, 6104, [(1, 1, "cancel", "BZ-TEE")]), "refunds/create")
    assert figures(runtime.engine, "BZ-TEE")["committed"] == 0
    assert figures(runtime.engine, "BZ-CAP")["committed"] == 2

    bling.refuse_postings = False
    assert retry_dead(runtime) == 1
    drain(runtime, clock)
    assert items_of(bling, "#6104") == [("BZ-CAP", 2.0)], "the whole order, rewritten"
    (sales_order,) = bling.orders_with_store_number("#6104")
    assert (sales_order["numero"], sales_order["contato"]["id"]) == (numero, contact)
    assert sales_order["total"] == pytest.approx(99.80)
    assert bling.order_updates[sales_order["id"]] == 1
    assert bling.stock_entries == [], "the posting carries the corrected quantities"
    assert (bling_balance(bling, "BZ-TEE"), bling_balance(bling, "BZ-CAP")) == (10, 2)
    assert figures(runtime.engine, "BZ-TEE")["on_hand"] == 10
    assert figures(runtime.engine, "BZ-CAP")["on_hand"] == 2
    assert order_row(runtime, 6104).forward_status == "forwarded"
    assert STOCK_ENTRY not in [k for k, _ in jobs(runtime)]

    # Later edits of the posted order are stock entries; the sales order is not rewritten.
    deliver(client, edit_payload(915, 6104, added={}, removed={2: 1}), "orders/edited")
    drain(runtime, clock)
    assert bling.entries_of("BZ-CAP") == [("E", 1.0)]
    assert bling.order_updates[sales_order["id"]] == 1
    assert_ledger_balanced(runtime.engine)


def test_a_sales_order_bling_will_not_change_keeps_its_lines_and_gets_the_entries(
    app: Flask, bling: PostingsRefused, clock: FakeClock
) -> None:
    runtime = runtime_of(app)
    client = app.test_client()
    deliver(client, shopify_order(6105, [("BZ-TEE", 3, "89.90")]), "orders/create")
    bling.refuse_postings = True
    drain(runtime, clock)
    (sales_order,) = bling.orders_with_store_number("#6105")
    bling.refuse_updates(sales_order["id"])
    deliver(client, refund_payload(815, 6105, [(1, 1, "return", "BZ-TEE")]), "refunds/create")

    bling.refuse_postings = False
    retry_dead(runtime)
    drain(runtime, clock)
    assert items_of(bling, "#6105") == [("BZ-TEE", 3.0)], "Bling refused the rewrite"
    assert bling.entries_of("BZ-TEE") == [("E", 1.0)], "the difference as a stock entry"
    assert bling_balance(bling, "BZ-TEE") == 8
    assert figures(runtime.engine, "BZ-TEE")["on_hand"] == 8
    assert_ledger_balanced(runtime.engine)


def test_a_create_whose_answer_was_lost_is_found_then_rewritten(
    app: Flask, bling: PostingsRefused, clock: FakeClock
) -> None:
    """The create landed and its answer was lost; an edit lands before the forward runs again:
    the sales order it finds is rewritten with the edit, and no entry is sent besides."""
    runtime = runtime_of(app)
    client = app.test_client()
    deliver(client, shopify_order(6106, [("BZ-TEE", 2, "89.90")]), "orders/create")
    bling.lose_answers_rate = 1.0  # the create lands, its answer is lost
    outbox.run_due(runtime, batch=50)
    bling.lose_answers_rate = 0.0
    assert order_row(runtime, 6106).bling_order == "requested"
    clock.advance(timedelta(hours=1).total_seconds())
    deliver(client, edit_payload(916, 6106, added={1: 1}, removed={}), "orders/edited")
    drain(runtime, clock)
    assert len(bling.orders_with_store_number("#6106")) == 1
    assert items_of(bling, "#6106") == [("BZ-TEE", 3.0)]
    assert bling.stock_entries == []
    assert bling_balance(bling, "BZ-TEE") == 7
    assert figures(runtime.engine, "BZ-TEE")["on_hand"] == 7
    assert_ledger_balanced(runtime.engine)


def test_a_posting_whose_outcome_is_unknown_is_never_followed_by_a_rewrite(
    app: Flask, bling: PostingsRefused, clock: FakeClock
) -> None:
    """The posting landed and its answer was lost (Bling may have posted): the sales order is
    left as it is, and the edit's difference is a stock entry once the posting is known."""
    runtime = runtime_of(app)
    client = app.test_client()
    deliver(client, shopify_order(6107, [("BZ-TEE", 2, "89.90")]), "orders/create")
    bling.lose_next_posting = True
    outbox.run_due(runtime, batch=50)
    assert order_row(runtime, 6107).bling_stock == "requested"
    clock.advance(timedelta(hours=1).total_seconds())
    deliver(client, edit_payload(917, 6107, added={1: 1}, removed={}), "orders/edited")
    drain(runtime, clock)
    assert bling.order_updates == {}
    assert items_of(bling, "#6107") == [("BZ-TEE", 2.0)]
    assert bling.entries_of("BZ-TEE") == [("S", 1.0)]
    assert bling_balance(bling, "BZ-TEE") == 7
    assert figures(runtime.engine, "BZ-TEE")["on_hand"] == 7
    assert_ledger_balanced(runtime.engine)
