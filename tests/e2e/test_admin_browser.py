"""The embedded admin pages in a real browser, against the Procfile's web on PostgreSQL.

Chromium (Debian's, driven by Playwright) opens each page as Shopify's admin would, with a
session token in ``id_token``; Shopify's CDN scripts are answered by stubs through
``page.route``: App Bridge's stub hands out fresh tokens minted here (``shopify.idToken()``),
Polaris' is empty, so the ``<s-*>`` tags stay unknown elements styled by the app's own CSS. The
ledger has stock, holds, orders waiting for Bling and a dead job (tests/support/admin.py); Bling
and Shopify's Admin API are the loopback stand-ins.

Screenshots of each page (1280 px wide) go to the test's tmp_path; UPDATE_SCREENSHOTS=1 also
writes them to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import Engine, select

from shopify_app import create_app
from shopify_app.erp import connection
from shopify_app.runtime import EXTENSION_KEY
from shopify_app.shopify.registration import register_webhooks
from shopify_app.stock.tables import stock_movements
from tests.support.admin import (
    ADMIN_USER,
    API_KEY,
    BLING_ERROR,
    bad_tokens,
    bearer,
    job_status,
    seed,
    session_token,
)
from tests.support.app import SHOP, SHOPIFY_SECRET, TOKEN
from tests.support.bling_app import bling_environ
from tests.support.bling_standin import BlingStandIn
from tests.support.browser import chromium
from tests.support.ledger import figures, snapshot
from tests.support.procfile import WebOnPostgres
from tests.support.shopify_standin import ShopifyStandIn

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
UPDATE_SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"
CSP = f"frame-ancestors https://{SHOP} https://admin.shopify.com"
STATIC_TOKEN = "shpat_admin_browser"
APP_BRIDGE_STUB = """
window.shopify = {
  idToken: function () { return window.mintSessionToken(); },
  toast: { show: function (message) { (window.toasts = window.toasts || []).push(message); } },
};
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def bling() -> Iterator[BlingStandIn]:
    with BlingStandIn(products=[("BAZI-TEE-M", 3)], rate_limit=None) as server:
        yield server


@pytest.fixture(scope="module")
def shopify() -> Iterator[ShopifyStandIn]:
    with ShopifyStandIn(client_id=API_KEY, client_secret=SHOPIFY_SECRET) as server:
        server.add_access_token(SHOP, STATIC_TOKEN)
        yield server


@pytest.fixture(scope="module")
def web(
    web_on_postgres: WebOnPostgres, bling: BlingStandIn, shopify: ShopifyStandIn
) -> Iterator[tuple[str, Engine, dict[str, Any]]]:
    env = {
        "APP_ENV": "test",
        "SECRET_KEY": "admin-browser-secret-key-0123456789",
        "STOCK_API_TOKEN": TOKEN,
        "SHOPIFY_API_KEY": API_KEY,
        "SHOPIFY_API_SECRET": SHOPIFY_SECRET,
        "SHOPIFY_SHOP_DOMAIN": SHOP,
        "SHOPIFY_ACCESS_TOKEN": STATIC_TOKEN,
        "SHOPIFY_ADMIN_URL": shopify.url,
        "APP_URL": "https://bazico-stock.example.com",
        "BLING_REQUESTS_PER_SECOND": "20",
        "WEB_CONCURRENCY": "2",
        **bling_environ(bling),
    }
    with web_on_postgres("admin_browser", env, workers=2) as served:
        url = served.runner.env["DATABASE_URL"]
        app = create_app({**env, "DATABASE_URL": url})
        runtime = app.extensions[EXTENSION_KEY]
        connection.connect(runtime, bling.authorize())
        register_webhooks(runtime.settings, SHOP, STATIC_TOKEN)
        base = f"http://127.0.0.1:{served.port}"

        def send(method: str, path: str, **kw: Any) -> int:
            return requests.request(method, base + path, timeout=10, **kw).status_code

        seeded = seed(send, served.engine)
        yield base, served.engine, seeded
        runtime.engine.dispose()


@pytest.fixture(scope="module")
def admin(browser: Any, web: tuple[str, Engine, dict[str, Any]]) -> Iterator[Any]:
    """One browser context inside "Shopify's admin": the CDN stubbed, tokens minted here."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="pt-BR")
    context.expose_function("mintSessionToken", lambda: session_token(datetime.now(UTC)))
    served: list[str] = []

    def app_bridge(route: Any) -> None:
        served.append("app-bridge")
        route.fulfill(status=200, content_type="text/javascript", body=APP_BRIDGE_STUB)

    context.route("https://cdn.shopify.com/shopifycloud/app-bridge.js", app_bridge)
    context.route(
        "https://cdn.shopify.com/shopifycloud/polaris*.js",
        lambda route: route.fulfill(status=200, content_type="text/javascript", body=""),
    )
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.errors.append(str(error)))  # type: ignore[attr-defined]
    yield page
    assert "app-bridge" in served  # the page really asked Shopify's CDN for App Bridge
    assert page.errors == []  # type: ignore[attr-defined]
    context.close()


def open_page(page: Any, base: str, path: str, **query: str) -> Any:
    """Load a page as Shopify's admin does (id_token in the query); check its frame policy."""
    query = {"id_token": session_token(datetime.now(UTC)), **query}
    response = page.goto(f"{base}{path}?{urlencode(query)}")
    assert response.status == 200, response.text()
    assert response.headers["content-security-policy"] == CSP
    return response


def shoot(page: Any, name: str, tmp_path: Path) -> None:
    page.evaluate("document.fonts.ready")
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if UPDATE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def cell(page: Any, sku: str, column: str) -> str:
    return str(page.inner_text(f'[data-live="hot"] tr[data-sku="{sku}"] [data-col="{column}"]'))


def test_agora_shows_the_ledger_and_follows_a_reservation_live(
    admin: Any, web: tuple[str, Engine, dict[str, Any]], tmp_path: Path
) -> None:
    base, engine, _ = web
    open_page(admin, base, "/admin")
    assert cell(admin, "BAZI-TEE-M", "available") == "1"  # 3 on hand, 2 held
    assert cell(admin, "BAZI-TEE-P", "committed") == "1"
    assert admin.inner_text('[data-figure="waiting"]') == "3"
    assert admin.inner_text('[data-figure="oversold"]') == "1"
    assert admin.locator('[data-live="expiring"] tr[data-hold]').count() == 3

    started = time.monotonic()
    reserved = requests.post(
        f"{base}/stock/BAZI-TEE-M/reserve", json={"quantity": 1}, headers=bearer(TOKEN), timeout=5
    )
    assert reserved.status_code == 200
    refused = requests.post(
        f"{base}/stock/BAZI-TEE-M/reserve", json={"quantity": 1}, headers=bearer(TOKEN), timeout=5
    )
    assert refused.status_code == 409
    admin.wait_for_function(
        """() => {
            const row = document.querySelector('[data-live="hot"] tr[data-sku="BAZI-TEE-M"]');
            return row && row.querySelector('[data-col="available"]').textContent.trim() === "0";
        }""",
        timeout=5000,
    )
    assert time.monotonic() - started < 5
    assert figures(engine, "BAZI-TEE-M")["reserved"] == 3
    admin.wait_for_function(
        """() => {
            const shown = document.querySelector('[data-figure="refusals-minute"]');
            return shown && Number(shown.textContent) >= 1;
        }""",
        timeout=5000,
    )
    assert int(admin.inner_text('[data-figure="reservations-minute"]')) >= 1
    shoot(admin, "agora.png", tmp_path)


def test_pedidos_shows_bling_states_and_retries_a_dead_job(
    admin: Any, web: tuple[str, Engine, dict[str, Any]], tmp_path: Path
) -> None:
    base, engine, seeded = web
    open_page(admin, base, "/admin/pedidos")
    states = {
        row.get_attribute("data-order"): row.get_attribute("data-state")
        for row in admin.locator("tr[data-order]").all()
    }
    dead = str(seeded["dead_order"])
    assert states[dead] == "dead" and list(states.values()).count("pending") == 2
    assert BLING_ERROR in admin.inner_text(f'tr[data-order="{dead}"]')
    shoot(admin, "pedidos.png", tmp_path)

    admin.click(f'tr[data-order="{dead}"] [data-action]')
    admin.wait_for_function(
        """(dead) => document.querySelector(`tr[data-order="${dead}"]`).dataset.state
                     === "pending" """,
        arg=dead,
        timeout=5000,
    )
    assert "queued" in admin.inner_text("#action-result")
    assert job_status(engine, seeded["dead_job"]) == "pending"


def test_the_sku_page_sets_on_hand_and_resyncs_from_bling(
    admin: Any, web: tuple[str, Engine, dict[str, Any]], bling: BlingStandIn, tmp_path: Path
) -> None:
    base, engine, _ = web
    open_page(admin, base, "/admin/skus/BAZI-TEE-M")
    assert admin.inner_text('[data-live="figures"] [data-figure="reserved"]') == "3"
    assert admin.locator('[data-live="holds"] tr[data-hold]').count() == 2

    admin.fill("#on-hand-input", "9")
    admin.click('[data-action$="/on-hand"]')
    admin.wait_for_function(
        """() => document.querySelector('[data-live="figures"] [data-figure="on_hand"]')
                 .textContent.trim() === "9" """,
        timeout=5000,
    )
    assert figures(engine, "BAZI-TEE-M")["on_hand"] == 9
    with engine.connect() as conn:
        last = conn.execute(
            select(stock_movements.c.reference).order_by(stock_movements.c.id.desc()).limit(1)
        ).scalar_one()
    assert last == f"admin:{ADMIN_USER}:set-on-hand"
    assert "admin:staff" in admin.inner_text('[data-live="history"] tr[data-movement]')

    bling.set_stock(bling.product_id("BAZI-TEE-M"), 5)
    admin.click('[data-action$="/resync"]')
    admin.wait_for_function(
        """() => document.querySelector('[data-live="figures"] [data-figure="on_hand"]')
                 .textContent.trim() === "5" """,
        timeout=8000,
    )
    assert "updated" in admin.inner_text("#action-result")
    assert figures(engine, "BAZI-TEE-M")["on_hand"] == 5
    shoot(admin, "sku.png", tmp_path)


def test_saude_shows_bling_and_the_webhooks(
    admin: Any, web: tuple[str, Engine, dict[str, Any]], tmp_path: Path
) -> None:
    base, _, _ = web
    open_page(admin, base, "/admin/saude")
    assert "Conectado desde" in admin.inner_text('[data-panel="bling"]')
    assert admin.locator('[data-panel="bling"] s-button[href*="/oauth/authorize"]').count() == 1
    row = admin.inner_text('tr[data-topic="orders/create"]')
    assert "sim" in row and "—" not in row  # subscribed, and a delivery was received
    assert "catalog audit" in admin.inner_text('[data-panel="audit"]')
    shoot(admin, "saude.png", tmp_path)


def test_refused_tokens_change_nothing_and_every_html_answer_is_framed_by_shopify_only(
    web: tuple[str, Engine, dict[str, Any]],
) -> None:
    base, engine, seeded = web
    before = snapshot(engine)
    for reason, token in bad_tokens(datetime.now(UTC)).items():
        for path in [
            "/admin/api/skus/BAZI-TEE-M/on-hand",
            "/admin/api/skus/BAZI-TEE-M/resync",
            f"/admin/api/jobs/{seeded['dead_job']}/retry",
        ]:
            answer = requests.post(
                base + path, json={"on_hand": 0}, headers=bearer(token), timeout=5
            )
            assert answer.status_code == 401, (reason, path)
        for path in ["/admin", "/admin/skus/BAZI-TEE-M", "/admin/pedidos", "/admin/saude"]:
            answer = requests.get(base + path, params={"id_token": token}, timeout=5)
            assert answer.status_code == 401, (reason, path)
            assert answer.headers["Content-Security-Policy"] == CSP
    assert snapshot(engine) == before
    docs = requests.get(base + "/docs/swagger/", timeout=5)
    assert docs.headers["Content-Security-Policy"] == CSP
