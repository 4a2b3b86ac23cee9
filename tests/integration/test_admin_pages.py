"""The embedded admin pages in this process, on SQLite and PostgreSQL: every page and JSON call
checks Shopify's session token, actions change the ledger only with a valid one, and every HTML
answer carries the frame-ancestors policy. (The same pages in a real browser, against the
Procfile's web: tests/e2e/test_admin_browser.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from shopify_app.erp import connection
from shopify_app.shopify import client as shopify_client
from shopify_app.stock.tables import stock_movements
from tests.support.admin import (
    ADMIN_USER,
    BLING_ERROR,
    bad_tokens,
    bearer,
    job_status,
    seed,
    session_token,
)
from tests.support.app import SHOP, SHOPIFY_SECRET
from tests.support.bling_app import bling_environ, make_app, runtime_of
from tests.support.bling_standin import BlingStandIn
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, figures, snapshot

CSP = f"frame-ancestors https://{SHOP} https://admin.shopify.com"


@pytest.fixture
def standin() -> Iterator[BlingStandIn]:
    with BlingStandIn(products=[("BAZI-TEE-M", 3)], rate_limit=None) as server:
        yield server


@pytest.fixture
def admin_app(database_url: str, clock: FakeClock, standin: BlingStandIn) -> Iterator[Flask]:
    app = make_app(database_url, clock, **bling_environ(standin), BLING_REQUESTS_PER_SECOND="50")
    connection.connect(runtime_of(app), standin.authorize())
    yield app
    runtime_of(app).engine.dispose()


@pytest.fixture
def web(admin_app: Flask) -> FlaskClient:
    return admin_app.test_client()


@pytest.fixture
def engine(admin_app: Flask) -> Engine:
    return runtime_of(admin_app).engine


@pytest.fixture
def seeded(web: FlaskClient, engine: Engine) -> dict[str, Any]:
    def send(method: str, path: str, **kw: Any) -> int:
        return int(web.open(path, method=method, **kw).status_code)

    return seed(send, engine)


def page(web: FlaskClient, clock: FakeClock, path: str, **query: str) -> Any:
    query = {"id_token": session_token(clock()), **query}
    return web.get(f"{path}?{urlencode(query)}")


def test_each_page_shows_the_ledger_with_the_frame_policy(
    web: FlaskClient, clock: FakeClock, seeded: dict[str, Any]
) -> None:
    agora = page(web, clock, "/admin")
    assert agora.status_code == 200
    assert agora.headers["Content-Security-Policy"] == CSP
    text = agora.get_data(as_text=True)
    assert 'lang="pt-BR"' in text and "SKUs mais disputados" in text
    assert 'data-sku="BAZI-TEE-P"' in text and 'data-figure="oversold">1<' in text
    assert 'data-figure="waiting">3<' in text  # three orders wait for Bling

    sku = page(web, clock, "/admin/skus/BAZI-TEE-P").get_data(as_text=True)
    assert 'data-figure="on_hand">8<' in sku and 'data-figure="reserved">3<' in sku
    assert 'data-figure="committed">1<' in sku and 'data-figure="available">4<' in sku
    assert sku.count("data-hold=") == 2 and "data-movement=" in sku

    orders = page(web, clock, "/admin/pedidos", state="dead")
    assert orders.headers["Content-Security-Policy"] == CSP
    body = orders.get_data(as_text=True)
    assert f'data-order="{seeded["dead_order"]}" data-state="dead"' in body
    assert BLING_ERROR in body and f"/admin/api/jobs/{seeded['dead_job']}/retry" in body

    health = page(web, clock, "/admin/saude", locale="en")
    assert health.headers["Content-Security-Policy"] == CSP
    assert "Bling connection" in health.get_data(as_text=True)  # the admin's locale wins
    assert "run `flask --app wsgi catalog audit`" in health.get_data(as_text=True)
    # No Shopify here: the checkout rule's panel says it could not be read, and the page stands.
    assert 'data-panel="checkout"' in health.get_data(as_text=True)
    assert "Could not read the rule from Shopify" in health.get_data(as_text=True)


def test_the_health_page_shows_the_last_catalog_audit(
    admin_app: Flask, web: FlaskClient, clock: FakeClock
) -> None:
    from shopify_app.catalog import audit, save_report
    from shopify_app.shopify.catalog import ShopifyVariant

    variants = [
        ShopifyVariant(1, None, "M", "Camiseta", None),
        ShopifyVariant(2, "CAP", "", "Boné", None),
    ]
    save_report(runtime_of(admin_app), audit(SHOP, variants, {"CAP", "OLD"}))
    text = page(web, clock, "/admin/saude").get_data(as_text=True)
    assert "Última auditoria" in text and "2 problema(s)" in text
    counts = dict(re.findall(r'<tr data-audit="([a-z_]+)"><td>[^<]*</td><td>([0-9]+)</td>', text))
    assert counts == {
        "without_sku": "1",
        "duplicate_skus": "0",
        "not_in_bling": "0",
        "not_in_shopify": "1",
    }


def test_the_json_calls_carry_the_same_fragments(
    web: FlaskClient, clock: FakeClock, seeded: dict[str, Any]
) -> None:
    live = web.get("/admin/api/agora", headers=bearer(session_token(clock())))
    assert live.status_code == 200
    body = live.get_json()
    assert {"hot", "expiring", "backlog", "oversells"} <= body["html"].keys()
    assert body["data"]["totals"]["granted"] >= 0  # the page draws the per-minute chart
    hot = {row["sku"]: row for row in body["data"]["hot"]}
    assert hot["BAZI-TEE-M"]["available"] == 1
    assert body["data"]["backlog"]["dead_jobs"] == 1
    assert "Content-Security-Policy" not in live.headers  # JSON is not framed
    sku = web.get("/admin/api/skus/BAZI-TEE-M", headers=bearer(session_token(clock())))
    assert sku.get_json()["data"]["figures"]["reserved"] == 2
    missing = web.get("/admin/api/skus/NOPE", headers=bearer(session_token(clock())))
    assert missing.status_code == 404 and missing.get_json()["error"] == "unknown_sku"


def test_set_on_hand_is_audited_with_the_admin_user(
    web: FlaskClient, clock: FakeClock, engine: Engine, seeded: dict[str, Any]
) -> None:
    answer = web.post(
        "/admin/api/skus/BAZI-TEE-M/on-hand",
        json={"on_hand": 10},
        headers=bearer(session_token(clock())),
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["level"] == {
        "sku": "BAZI-TEE-M",
        "on_hand": 10,
        "reserved": 2,
        "committed": 0,
        "available": 8,
    }
    with engine.connect() as conn:
        last = conn.execute(
            select(stock_movements).order_by(stock_movements.c.id.desc()).limit(1)
        ).one()
    assert (last.sku, last.reason, last.on_hand_delta) == ("BAZI-TEE-M", "adjust", 7)
    assert last.reference == f"admin:{ADMIN_USER}:set-on-hand"
    assert_ledger_balanced(engine)


def test_resync_reads_the_sku_from_bling(
    web: FlaskClient,
    clock: FakeClock,
    engine: Engine,
    standin: BlingStandIn,
    seeded: dict[str, Any],
) -> None:
    standin.set_stock(standin.product_id("BAZI-TEE-M"), 6)
    answer = web.post("/admin/api/skus/BAZI-TEE-M/resync", headers=bearer(session_token(clock())))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["status"] == "updated"
    assert figures(engine, "BAZI-TEE-M")["on_hand"] == 6
    again = web.post("/admin/api/skus/BAZI-TEE-M/resync", headers=bearer(session_token(clock())))
    assert again.get_json()["status"] == "unchanged"
    unknown = web.post(
        "/admin/api/skus/BAZI-MEIA-40/resync", headers=bearer(session_token(clock()))
    )
    assert unknown.status_code == 404 and unknown.get_json()["error"] == "not_in_bling"
    assert_ledger_balanced(engine)


def test_retry_requeues_a_dead_job_once(
    web: FlaskClient, clock: FakeClock, engine: Engine, seeded: dict[str, Any]
) -> None:
    job = seeded["dead_job"]
    path = f"/admin/api/jobs/{job}/retry"
    answer = web.post(path, headers=bearer(session_token(clock())))
    assert answer.status_code == 200 and answer.get_json()["job"]["status"] == "pending"
    assert job_status(engine, job) == "pending"
    again = web.post(path, headers=bearer(session_token(clock())))
    assert again.status_code == 409 and again.get_json()["error"] == "not_dead"
    missing = web.post("/admin/api/jobs/999999/retry", headers=bearer(session_token(clock())))
    assert missing.status_code == 404


@pytest.mark.parametrize("reason", ["expired", "wrong_audience", "wrong_signature", "unknown_shop"])
def test_a_refused_token_changes_nothing(
    web: FlaskClient, clock: FakeClock, engine: Engine, seeded: dict[str, Any], reason: str
) -> None:
    token = bad_tokens(clock())[reason]
    before = snapshot(engine)
    actions = [
        ("/admin/api/skus/BAZI-TEE-M/on-hand", {"on_hand": 0}),
        ("/admin/api/skus/BAZI-TEE-M/resync", {}),
        (f"/admin/api/jobs/{seeded['dead_job']}/retry", {}),
    ]
    for path, body in actions:
        answer = web.post(path, json=body, headers=bearer(token))
        assert answer.status_code == 401, (path, answer.get_data(as_text=True))
        assert answer.get_json()["error"] == "invalid_session_token"
    for path in ["/admin/api/agora", "/admin/api/skus/BAZI-TEE-M", "/admin/api/pedidos"]:
        assert web.get(path, headers=bearer(token)).status_code == 401
    for path in ["/admin", "/admin/skus/BAZI-TEE-M", "/admin/pedidos", "/admin/saude", "/"]:
        refused = web.get(f"{path}?{urlencode({'id_token': token})}")
        assert refused.status_code == 401
        assert refused.headers["Content-Security-Policy"].startswith("frame-ancestors ")
        assert "BAZI-TEE-M" not in refused.get_data(as_text=True)
    assert snapshot(engine) == before
    assert job_status(engine, seeded["dead_job"]) == "dead"


def test_no_token_no_cookie_and_bad_input_change_nothing(
    web: FlaskClient, clock: FakeClock, engine: Engine, seeded: dict[str, Any]
) -> None:
    before = snapshot(engine)
    assert web.post("/admin/api/skus/BAZI-TEE-M/on-hand", json={"on_hand": 1}).status_code == 401
    # A page's id_token in the query is for documents only: an action needs the header.
    token = session_token(clock())
    query = urlencode({"id_token": token})
    assert (
        web.post(f"/admin/api/skus/BAZI-TEE-M/on-hand?{query}", json={"on_hand": 1}).status_code
        == 401
    )
    for bad in [{"on_hand": -1}, {"on_hand": "dez"}, {"on_hand": 1.5}, {"on_hand": True}, {}]:
        answer = web.post("/admin/api/skus/BAZI-TEE-M/on-hand", json=bad, headers=bearer(token))
        assert answer.status_code == 422, bad
        assert answer.get_json()["error"] == "invalid_request"
    answer = web.post("/admin/api/skus/NOPE/on-hand", json={"on_hand": 1}, headers=bearer(token))
    assert answer.status_code == 404 and answer.get_json()["error"] == "unknown_sku"
    assert (
        web.get(f"/admin/pedidos?{urlencode({'id_token': token, 'state': 'x'})}").status_code == 422
    )
    assert snapshot(engine) == before


def test_a_token_signed_with_the_previous_secret_still_passes(
    database_url: str, clock: FakeClock
) -> None:
    app = make_app(
        database_url,
        clock,
        SHOPIFY_API_SECRET="the-new-secret",
        SHOPIFY_API_SECRET_PREVIOUS=SHOPIFY_SECRET,
    )
    web = app.test_client()
    assert web.get("/admin/api/agora", headers=bearer(session_token(clock()))).status_code == 200
    runtime_of(app).engine.dispose()


def signed_home(clock: FakeClock, secret: str = SHOPIFY_SECRET, **extra: str) -> str:
    params = {
        "embedded": "1",
        "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvYmF6aWNv",
        "shop": SHOP,
        "timestamp": str(int(clock().timestamp())),
        **extra,
    }
    params["hmac"] = shopify_client.query_hmac(params, secret)
    return "/?" + urlencode(params)


def test_home_verifies_the_signed_query_then_installs_or_shows_the_app(
    database_url: str, clock: FakeClock
) -> None:
    app = make_app(database_url, clock)
    web = app.test_client()
    forged = web.get(signed_home(clock, secret="forged"))
    assert forged.status_code == 401 and forged.get_json()["error"] == "invalid_hmac"
    # Not installed yet: leave the iframe for OAuth (the consent page cannot be framed).
    install = web.get(signed_home(clock))
    assert install.status_code == 200
    assert "/auth/install?" in install.get_data(as_text=True)
    assert install.headers["Content-Security-Policy"] == CSP
    top_level = web.get(signed_home(clock, embedded="0"))
    assert top_level.status_code == 302 and "/auth/install?" in top_level.headers["Location"]
    runtime_of(app).engine.dispose()

    installed = make_app(database_url, clock, SHOPIFY_ACCESS_TOKEN="shpat_custom_app")
    web = installed.test_client()
    home = web.get(signed_home(clock, id_token=session_token(clock())))
    assert home.status_code == 200 and "SKUs mais disputados" in home.get_data(as_text=True)
    assert home.headers["Content-Security-Policy"] == CSP
    unsigned = web.get("/")
    assert unsigned.status_code == 401 and unsigned.headers["Content-Security-Policy"]
    runtime_of(installed).engine.dispose()


def test_development_mode_serves_the_pages_without_a_token(
    database_url: str, clock: FakeClock
) -> None:
    app = make_app(database_url, clock, ADMIN_DEV_MODE="1")
    web = app.test_client()
    agora = web.get("/admin")
    assert agora.status_code == 200 and "ADMIN_DEV_MODE=1" in agora.get_data(as_text=True)
    assert "app-bridge.js" not in agora.get_data(as_text=True)  # it would leave for the admin
    assert web.get("/admin/api/agora").status_code == 200
    # A token that is sent is still checked.
    expired = bad_tokens(clock())["expired"]
    assert web.get("/admin/api/agora", headers=bearer(expired)).status_code == 401
    runtime_of(app).engine.dispose()
