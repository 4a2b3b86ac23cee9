"""The operator commands that show what the admin pages show: ``stock history``, ``stock holds``,
``orders show``, ``outbox show`` saying why jobs wait, ``stock show`` on a database that is not
migrated, and ``bling sync`` with its progress."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from shopify_app import create_app
from shopify_app.erp import connection
from shopify_app.outbox import service as outbox
from shopify_app.outbox.kinds import FORWARD_ORDER
from shopify_app.outbox.tables import outbox_jobs
from tests.support.admin import BLING_ERROR, seed
from tests.support.app import app_environ
from tests.support.bling_app import bling_environ, make_app, runtime_of
from tests.support.bling_standin import BlingStandIn
from tests.support.clock import FakeClock


@pytest.fixture
def seeded_app(database_url: str, clock: FakeClock) -> Iterator[tuple[Flask, dict[str, Any]]]:
    app = make_app(database_url, clock)
    web = app.test_client()

    def send(method: str, path: str, **kw: Any) -> int:
        return int(web.open(path, method=method, **kw).status_code)

    ids = seed(send, runtime_of(app).engine)
    yield app, ids
    runtime_of(app).engine.dispose()


def run(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=list(args))
    return result


def test_stock_history_shows_each_movement_with_what_it_left(
    seeded_app: tuple[Flask, dict[str, Any]],
) -> None:
    app, _ = seeded_app
    result = run(app, "stock", "history", "BAZI-TEE-P")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "BAZI-TEE-P: on_hand 8, reserved 3, committed 1, available 4"
    assert "commit" in lines[2] and "8/3/1" in lines[2]  # newest first: the order's commit
    assert lines[-1].split()[2] == "adjust" and "8/0/0" in lines[-1]
    as_json = [
        json.loads(line)
        for line in run(app, "stock", "history", "BAZI-TEE-P", "--json").output.splitlines()
    ]
    assert [m["reason"] for m in as_json][-1] == "adjust"
    assert as_json[-1]["on_hand"] == 8 and as_json[0]["available"] == 4
    missing = run(app, "stock", "history", "NOPE")
    assert missing.exit_code == 1 and "unknown SKU" in missing.output


def test_stock_holds_lists_live_holds_soonest_first(
    seeded_app: tuple[Flask, dict[str, Any]],
) -> None:
    app, _ = seeded_app
    everything = run(app, "stock", "holds")
    assert everything.exit_code == 0, everything.output
    assert len(everything.output.splitlines()) == 1 + 3
    one = [
        json.loads(line)
        for line in run(app, "stock", "holds", "BAZI-TEE-P", "--json").output.splitlines()
    ]
    assert sorted(h["quantity"] for h in one) == [1, 2]
    assert all(h["holder_hash"] and "cart-" not in json.dumps(h) for h in one)  # never the token
    assert "(no live holds)" in run(app, "stock", "holds", "BAZI-MEIA-40").output


def test_orders_show_lists_and_details_orders_with_their_bling_state(
    seeded_app: tuple[Flask, dict[str, Any]],
) -> None:
    app, ids = seeded_app
    listing = run(app, "orders", "show")
    assert listing.exit_code == 0, listing.output
    assert len(listing.output.splitlines()) == 1 + 3 and BLING_ERROR in listing.output
    dead = run(app, "orders", "show", "--state", "dead", "--json")
    (order,) = [json.loads(line) for line in dead.output.splitlines()]
    assert order["order_id"] == ids["dead_order"] and order["state"] == "dead"
    assert order["job"]["last_error"] == BLING_ERROR
    detail = run(app, "orders", "show", str(ids["orders"][2]))
    assert "OVERSOLD" in detail.output and "BAZI-BONE-U x2" in detail.output
    assert run(app, "orders", "show", "424242").exit_code == 1


def test_stock_show_on_a_database_that_is_not_migrated_says_what_to_do(
    empty_sqlite_url: str,
) -> None:
    app = create_app(app_environ(empty_sqlite_url))
    for args in (["stock", "show"], ["stock", "history", "X"], ["orders", "show"]):
        result = run(app, *args)
        assert result.exit_code == 1
        assert "not migrated" in result.output and "db upgrade" in result.output
        assert "Traceback" not in result.output


def test_outbox_show_says_why_jobs_wait(
    seeded_app: tuple[Flask, dict[str, Any]], clock: FakeClock
) -> None:
    app, _ = seeded_app
    shown = run(app, "outbox", "show").output
    assert "why jobs wait:" in shown
    assert f"{FORWARD_ORDER}: Bling is not configured" in shown

    # With Bling on: a pause (the daily limit), then a job waiting out its backoff.
    runtime = runtime_of(app)
    on = create_app(
        {**app_environ(str(runtime.engine.url.render_as_string(hide_password=False)))}
        | {"BLING_CLIENT_ID": "id", "BLING_CLIENT_SECRET": "secret"},
        clock=clock,
    )
    with runtime.engine.begin() as conn:
        outbox.pause_kind(
            conn, FORWARD_ORDER, clock() + timedelta(hours=3), "Bling's daily request limit"
        )
    shown = run(on, "outbox", "show").output
    assert f"{FORWARD_ORDER}: paused until" in shown and "daily request limit" in shown
    outbox.resume_kind(runtime, FORWARD_ORDER)
    with runtime.engine.begin() as conn:
        conn.execute(
            update(outbox_jobs)
            .where(outbox_jobs.c.status == "pending")
            .values(due_at=clock() + timedelta(minutes=2), last_error="Bling 500")
        )
    shown = run(on, "outbox", "show").output
    assert "2 retrying after an error, next at" in shown and "last error: Bling 500" in shown
    runtime_of(on).engine.dispose()


@pytest.fixture
def catalog() -> Iterator[BlingStandIn]:
    products = [(f"BZ-{n:04d}", n % 7) for n in range(230)]
    with BlingStandIn(products=products, rate_limit=None) as server:
        yield server


def test_bling_sync_reports_its_progress_and_answers_json(
    database_url: str, clock: FakeClock, catalog: BlingStandIn
) -> None:
    app = make_app(database_url, clock, **bling_environ(catalog), BLING_REQUESTS_PER_SECOND="50")
    connection.connect(runtime_of(app), catalog.authorize())
    result = app.test_cli_runner().invoke(args=["bling", "sync", "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["products"] == 230 and report["created"] == 230
    progress = result.stderr.splitlines()
    # Not a terminal: a line at the end of each pass of the catalog (positive, zero and
    # negative balances: Bling lists each apart, each pass ending on an empty page) and at the
    # end of the balances.
    products = [line for line in progress if "product(s)" in line]
    assert products[0].endswith("time left ~0 s") or "time left ~" in products[0]
    assert "page(s) read, 230 product(s)" in products[-1]
    assert progress[-1].startswith("bling sync balances: 5/5 request(s)")
    assert "\r" not in result.stderr
    text = app.test_cli_runner().invoke(args=["bling", "sync"])
    assert "products: 230, SKUs updated: 0, unchanged: 230" in text.stdout
    runtime_of(app).engine.dispose()
