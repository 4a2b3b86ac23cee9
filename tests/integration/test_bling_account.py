"""The connected Bling account: the deposit sold from and posted to, and whose webhooks count.

Without ``BLING_DEPOSIT_ID`` the service used to read every deposit summed while ``lancar-estoque``
posted to Bling's default one. Now it reads the account's default deposit once (``GET
/depositos``, ``padrao``) and uses that one deposit for balances, postings and webhooks, or, when
Bling marks none, starts no Bling work and says why. Webhooks of another Bling account (another
``companyId``, learnt from ``GET /empresas/me/dados-basicos``) are not applied. The stand-in has
two deposits: a showroom (the first one) and the central stock, which is Bling's default.
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from shopify_app import outbox
from shopify_app.erp import connection
from shopify_app.erp.account import DepositUnknown
from shopify_app.erp.stock_sync import reconcile
from shopify_app.erp.stock_tables import bling_events
from shopify_app.erp.tables import bling_connection
from shopify_app.outbox.kinds import FORWARD_ORDER
from shopify_app.outbox.tables import outbox_jobs, outbox_pauses
from shopify_app.runtime import Runtime
from shopify_app.stock import services
from tests.support.bling_app import bling_environ, deliver_bling, drain, make_app, runtime_of
from tests.support.bling_standin import COMPANY_ID, PAYMENT_METHOD_ID, BlingStandIn
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures, snapshot
from tests.support.orders import shopify_order
from tests.support.shopify_sender import deliver

SHOWROOM, WAREHOUSE = 14_000_001, 14_000_002
POSTING = r"/pedidos/vendas/\d+/lancar-estoque(/\d+)?"


@pytest.fixture
def standin(clock: FakeClock) -> Iterator[BlingStandIn]:
    with BlingStandIn(
        deposits=(SHOWROOM, WAREHOUSE), default_deposit=WAREHOUSE, rate_limit=None, clock=clock
    ) as server:
        server.deposit_names = {SHOWROOM: "Showroom", WAREHOUSE: "Estoque central"}
        yield server


def app_on(database_url: str, clock: FakeClock, standin: BlingStandIn, **deposit: Any) -> Flask:
    """An app that forwards orders to ``standin``; ``deposit=`` as ``bling_environ`` takes it
    (None: BLING_DEPOSIT_ID unset)."""
    return make_app(
        database_url,
        clock,
        **bling_environ(standin, **deposit),
        BLING_PAYMENT_METHOD_ID=str(PAYMENT_METHOD_ID),
        BLING_REQUESTS_PER_SECOND="50",
    )


@pytest.fixture
def no_deposit_app(database_url: str, clock: FakeClock, standin: BlingStandIn) -> Iterator[Flask]:
    app = app_on(database_url, clock, standin, deposit=None)
    yield app
    runtime_of(app).engine.dispose()


def sell(app: Flask, order_id: int, sku: str, quantity: int) -> None:
    payload = shopify_order(order_id, [(sku, quantity, "99.90")])
    assert deliver(app.test_client(), payload, "orders/create").status_code == 200


def account_row(runtime: Runtime) -> tuple[Any, Any]:
    with runtime.engine.connect() as conn:
        row = conn.execute(
            select(bling_connection.c.company_id, bling_connection.c.default_deposit_id)
        ).one()
    return row.company_id, row.default_deposit_id


# --- the deposit -------------------------------------------------------------------------------


def test_without_bling_deposit_id_the_default_deposit_is_read_posted_to_and_kept(
    no_deposit_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    app, runtime = no_deposit_app, runtime_of(no_deposit_app)
    dress = standin.add_product("BZ-DRESS", 3, deposit_id=SHOWROOM)
    standin.set_stock(dress, 7, deposit_id=WAREHOUSE)

    connection.connect(runtime, standin.authorize())
    assert account_row(runtime) == (COMPANY_ID, WAREHOUSE)
    status = app.test_cli_runner().invoke(args=["bling", "status"])
    assert f"deposit sold from: {WAREHOUSE} (the account's default deposit" in status.output

    result = app.test_cli_runner().invoke(args=["bling", "sync"])
    assert result.exit_code == 0, result.output
    assert f"(deposit {WAREHOUSE})" in result.output
    # The central stock's 7, not 3 + 7 summed over the showroom too.
    assert figures(runtime.engine, "BZ-DRESS")["on_hand"] == 7
    balances = standin.calls_to("GET", r"/estoques/saldos.*")
    assert balances and {c.path for c in balances} == {f"/estoques/saldos/{WAREHOUSE}"}

    sell(app, 7001, "BZ-DRESS", 2)
    drain(runtime, clock)
    # Posted to the same deposit, by its id: the showroom is untouched.
    postings = standin.calls_to("POST", POSTING)
    assert [c.path.rsplit("/", 1)[1] for c in postings] == [str(WAREHOUSE)]
    assert standin.balance(dress, WAREHOUSE) == (5, 5)
    assert standin.balance(dress, SHOWROOM) == (3, 3)
    assert figures(runtime.engine, "BZ-DRESS")["on_hand"] == 5

    # Webhooks: a showroom movement is not this service's stock; the central stock's is.
    showroom = standin.stock_event(dress, SHOWROOM, date=clock() + timedelta(seconds=10))
    assert deliver_bling(app, standin, showroom).get_json() == {"status": "ignored"}
    (own_posting,) = standin.take_webhooks()
    assert deliver_bling(app, standin, own_posting).get_json() == {"status": "applied"}
    assert figures(runtime.engine, "BZ-DRESS")["on_hand"] == 5

    # Read once. If the merchant later makes the showroom Bling's default, reads and postings
    # stay together on the deposit read (a new `bling connect` would read the default again).
    standin.default_deposit = SHOWROOM
    clock.advance(900)
    report = reconcile(runtime)
    assert report is not None and figures(runtime.engine, "BZ-DRESS")["on_hand"] == 5
    sell(app, 7002, "BZ-DRESS", 1)
    drain(runtime, clock)
    assert [c.path.rsplit("/", 1)[1] for c in standin.calls_to("POST", POSTING)] == [
        str(WAREHOUSE)
    ] * 2
    assert standin.balance(dress, WAREHOUSE) == (4, 4)
    deposit_walks = standin.calls_to("GET", "/depositos")
    assert [c.query["pagina"] for c in deposit_walks] == [["1"], ["2"]], "one walk, at connect"
    assert_ledger_balanced(runtime.engine)


def test_without_a_default_deposit_no_bling_work_starts_and_the_operator_is_told(
    database_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with BlingStandIn(
        deposits=(SHOWROOM, WAREHOUSE), default_deposit=None, rate_limit=None, clock=clock
    ) as standin:
        standin.deposit_names = {SHOWROOM: "Showroom", WAREHOUSE: "Estoque central"}
        skirt = standin.add_product("BZ-SKIRT", 4, deposit_id=SHOWROOM)
        standin.set_stock(skirt, 6, deposit_id=WAREHOUSE)
        app = app_on(database_url, clock, standin, deposit=None)
        runtime = runtime_of(app)
        try:
            _refused_until_a_default_is_marked(app, runtime, standin, clock, caplog, skirt)
        finally:
            runtime.engine.dispose()


def _refused_until_a_default_is_marked(
    app: Flask,
    runtime: Runtime,
    standin: BlingStandIn,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    skirt: int,
) -> None:
    connection.connect(runtime, standin.authorize())  # the connection itself stands
    assert account_row(runtime) == (COMPANY_ID, None)
    assert "bling.deposit_unknown" in caplog.text

    # The operator's commands say what is wrong and what to do.
    result = app.test_cli_runner().invoke(args=["bling", "sync"])
    assert result.exit_code != 0
    assert "BLING_DEPOSIT_ID is unset and Bling marks no active deposit as the default" in (
        result.output
    )
    assert f'{SHOWROOM} "Showroom", {WAREHOUSE} "Estoque central"' in result.output
    status = app.test_cli_runner().invoke(args=["bling", "status"])
    assert "deposit sold from: unknown" in status.output
    # The worker's reconciliation refuses too, loudly.
    caplog.clear()
    assert reconcile(runtime) is None
    assert "bling.reconcile_refused" in caplog.text and "BLING_DEPOSIT_ID" in caplog.text
    assert standin.calls_to("GET", r"/estoques/saldos.*") == [], "no balance was read"

    # An order waits: the forwarding kind pauses with the reason, no attempt spent, nothing sent.
    services.set_on_hand(runtime.uow(), "BZ-SKIRT", 4, reference="count")
    sell(app, 7101, "BZ-SKIRT", 1)
    outbox.run_due(runtime)
    with runtime.engine.connect() as conn:
        job = conn.execute(select(outbox_jobs).where(outbox_jobs.c.kind == FORWARD_ORDER)).one()
        reason = conn.execute(select(outbox_pauses.c.reason)).scalar()
    assert (job.status, job.attempts) == ("pending", 0)
    assert reason is not None and "BLING_DEPOSIT_ID" in reason
    assert standin.sales_orders == {}

    # A stock webhook cannot be applied to a deposit nobody chose: 503, Bling delivers it again.
    raw = standin.stock_event(skirt, WAREHOUSE, date=clock() + timedelta(seconds=5))
    before = snapshot(runtime.engine)
    answer = deliver_bling(app, standin, raw)
    assert answer.status_code == 503 and answer.get_json()["error"] == "deposit_unknown"
    assert snapshot(runtime.engine) == before

    # The merchant marks the central stock as padrão in Bling: the next reconciliation reads it
    # (the worker's, every WORKER_BLING_SYNC_SECONDS) and the work resumes on that deposit.
    standin.default_deposit = WAREHOUSE
    clock.advance(900)
    assert reconcile(runtime) is not None
    assert account_row(runtime) == (COMPANY_ID, WAREHOUSE)
    assert figures(runtime.engine, "BZ-SKIRT")["on_hand"] == 6
    drain(runtime, clock)
    (sales_order,) = standin.orders_with_store_number("#7101")
    assert standin.postings[sales_order["id"]] == 1
    assert [c.path.rsplit("/", 1)[1] for c in standin.calls_to("POST", POSTING)] == [str(WAREHOUSE)]
    assert deliver_bling(app, standin, raw).status_code == 200  # Bling's retry is taken now
    with runtime.engine.connect() as conn:
        assert len(conn.execute(select(bling_events)).all()) == 1
    assert_ledger_balanced(runtime.engine)


def test_a_connection_from_before_this_release_learns_the_account_at_the_next_reconciliation(
    no_deposit_app: Flask, standin: BlingStandIn, clock: FakeClock
) -> None:
    runtime = runtime_of(no_deposit_app)
    standin.add_product("BZ-SOCK", 2, deposit_id=WAREHOUSE)
    connection.connect(runtime, standin.authorize())
    with runtime.engine.begin() as conn:  # as a connection made by the previous release
        conn.execute(update(bling_connection).values(company_id=None, default_deposit_id=None))
    with pytest.raises(DepositUnknown, match="not known yet"):
        connection.bling_client(runtime)

    report = reconcile(runtime)

    assert report is not None and report.products == 1
    assert account_row(runtime) == (COMPANY_ID, WAREHOUSE)
    assert figures(runtime.engine, "BZ-SOCK")["on_hand"] == 2
    with connection.bling_client(runtime) as client:
        assert client.get("/produtos")["data"]
    clock.advance(900)
    calls = len(standin.calls)
    assert reconcile(runtime) is not None
    learning = [c.path for c in standin.calls[calls:] if not c.path.startswith("/produtos")]
    assert all(re.fullmatch(r"/estoques/saldos/\d+", path) for path in learning), learning


# --- the company -------------------------------------------------------------------------------


def test_webhooks_of_another_bling_account_are_not_applied(
    database_url: str, clock: FakeClock, standin: BlingStandIn
) -> None:
    app = app_on(database_url, clock, standin, deposit=WAREHOUSE)
    runtime = runtime_of(app)
    try:
        belt = standin.add_product("BZ-BELT", 5, deposit_id=WAREHOUSE)
        connection.connect(runtime, standin.authorize())  # learns the account's companyId
        assert account_row(runtime)[0] == COMPANY_ID
        assert app.test_cli_runner().invoke(args=["bling", "sync"]).exit_code == 0
        standin.set_stock(belt, 1, deposit_id=WAREHOUSE)
        event = json.loads(
            standin.stock_event(belt, WAREHOUSE, date=clock() + timedelta(seconds=5))
        )
        before = snapshot(runtime.engine)

        # A second Bling account that authorized the same app: signed with the same secret,
        # sent to the same URL. 200 (a refusal would make Bling retry it, then disable the
        # app's webhooks for this account too), and nothing changes, not even the receipts.
        for company in ("0123456789abcdef0123456789abcdef", None, 42, COMPANY_ID.upper()):
            foreign = {**event, "eventId": f"ev-{company}", "companyId": company}
            answer = deliver_bling(app, standin, json.dumps(foreign).encode())
            assert answer.get_json() == {"status": "ignored_other_company"}, company
        del event["companyId"]
        assert deliver_bling(app, standin, json.dumps(event).encode()).get_json() == {
            "status": "ignored_other_company"
        }
        assert snapshot(runtime.engine) == before
        assert figures(runtime.engine, "BZ-BELT")["on_hand"] == 5

        own = {**event, "companyId": COMPANY_ID}
        answer = deliver_bling(app, standin, json.dumps(own).encode())
        assert answer.get_json() == {"status": "applied"}
        assert figures(runtime.engine, "BZ-BELT")["on_hand"] == 1
        assert_ledger_balanced(runtime.engine)
    finally:
        runtime.engine.dispose()
