"""The theme app extension in a real browser, against the Procfile's web on PostgreSQL.

Chromium (Debian's /usr/bin/chromium, driven by Playwright) opens a Dawn-like product page
served by the storefront stand-in (tests/support/storefront_standin.py), which renders the
extension's real app embed, forwards /apps/bazico/* to the service signed as Shopify's App Proxy
signs it, and sends the signed cart webhooks after each cart change. The test reads what the
stand-in received and the service's ledger.

Skips when Playwright or chromium is missing, unless REQUIRE_BROWSER=1 (scripts/test sets it,
hence CI) makes that a failure. Screenshots of the sold-out states go to the test's tmp_path;
UPDATE_SCREENSHOTS=1 also writes them to docs/ (the README shows them), so a plain run leaves
the work tree as it was.

Long because one browser session per module is what makes these tests affordable (Chromium
starts once), so every storefront path a shopper takes lives here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, select

from shopify_app.stock.tables import holds
from tests.support.browser import chromium
from tests.support.ledger import assert_ledger_balanced, figures
from tests.support.procfile import WebOnPostgres, call, free_port
from tests.support.storefront_standin import Recorded, Storefront, product

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
TOKEN = "browser-e2e-token"
SECRET = "browser-e2e-shopify-secret"
SHOP = "bazico-browser.myshopify.com"
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
UPDATE_SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"


@pytest.fixture(scope="module", autouse=True)  # autouse: checked before the service starts
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def web(web_on_postgres: WebOnPostgres) -> Iterator[tuple[int, Engine]]:
    env = {
        "STOCK_API_TOKEN": TOKEN,
        "SHOPIFY_API_SECRET": SECRET,
        "SHOPIFY_SHOP_DOMAIN": SHOP,
        "APP_ENV": "test",
        "WEB_CONCURRENCY": "2",
    }
    with web_on_postgres("storefront_browser", env, workers=2) as served:
        yield served.port, served.engine


def catalog(prefix: str, base: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each test its own SKUs and variant ids, so one module-wide service serves them all."""
    tee = product(
        f"camiseta-{prefix.lower()}",
        "Camiseta Básica",
        [
            (base + 1, "P", f"{prefix}-P"),
            (base + 2, "M", f"{prefix}-M"),
            (base + 3, "G", f"{prefix}-G"),
        ],
        "89.90",
    )
    cap = product(
        f"bone-{prefix.lower()}", "Boné Bázico", [(base + 9, "Único", f"{prefix}-BONE")], "59.90"
    )
    return tee, cap


@pytest.fixture(scope="module")
def storefront(web: tuple[int, Engine]) -> Iterator[Storefront]:
    tee, cap = catalog("X", 1000)  # each test sets its own catalog
    with Storefront(
        service_port=web[0], secret=SECRET, shop=SHOP, product=tee, recommendations=[cap]
    ) as shop:
        yield shop


class Shopper:
    """One browser context (its own cart cookie) on one product page."""

    def __init__(self, browser: Any, shop: Storefront, tee: dict[str, Any]) -> None:
        self.context = browser.new_context(viewport={"width": 1100, "height": 760}, locale="pt-BR")
        self.page = self.context.new_page()
        self.console: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(f"{shop.base_url}/products/{tee['handle']}")
        self.page.wait_for_function("window.BazicoReserveEmbed && window.themeCalls")

    def pick(self, size: str) -> None:
        self.page.click(f"label[for='size-{size}']")

    def add(self) -> None:
        self.page.click(".product-form__submit")

    def theme_calls(self) -> dict[str, int]:
        return dict(self.page.evaluate("window.themeCalls"))

    def cart(self) -> dict[str, Any]:
        return dict(self.page.evaluate("fetch('/cart.js').then((r) => r.json())"))

    def drawer_quantity(self, sku: str) -> str:
        return str(self.page.text_content(f".cart-item[data-sku='{sku}'] .cart-item__quantity"))

    def close(self) -> None:
        assert self.errors == [], self.errors
        self.context.close()


@pytest.fixture
def shopper_for(browser: Any, storefront: Storefront) -> Iterator[Any]:
    opened: list[Shopper] = []

    def open_page(tee: dict[str, Any], cap: dict[str, Any]) -> Shopper:
        storefront.set_catalog(tee, [cap])
        shopper = Shopper(browser, storefront, tee)
        opened.append(shopper)
        return shopper

    yield open_page
    for shopper in opened:
        shopper.close()


def stock(port: int, levels: dict[str, int]) -> None:
    for sku, on_hand in levels.items():
        status, body = call(port, "PUT", f"/stock/{sku}", {"on_hand": on_hand}, token=TOKEN)
        assert status == 200, body


def screenshot(shopper: Shopper, tmp_path: Path, name: str) -> None:
    shopper.page.screenshot(path=str(tmp_path / name))
    if UPDATE_SCREENSHOTS:
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / name, DOCS / name)


def posts_since(shop: Storefront, start: int) -> list[Recorded]:
    """The POSTs of interest (App Proxy and cart) the storefront got after ``start`` requests."""
    with shop.lock:
        recent = shop.requests[start:]
    return [r for r in recent if r.method == "POST"]


def paths(records: list[Recorded]) -> list[str]:
    return [r.path for r in records]


def active_hold(engine: Engine, hold_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(holds).where(holds.c.id == hold_id)).one()


def wait_posts(shopper: Shopper, shop: Storefront, start: int, path: str) -> None:
    """Until the storefront got a POST to ``path`` (a click whose effect the page hides)."""
    for _ in range(200):
        if path in paths(posts_since(shop, start)):
            return
        shopper.page.wait_for_timeout(50)
    raise AssertionError(paths(posts_since(shop, start)))


def test_selecting_m_holds_m_then_the_theme_adds_it_once_with_the_hold(
    web: tuple[int, Engine], storefront: Storefront, shopper_for: Any
) -> None:
    port, engine = web
    tee, cap = catalog("T1", 10_000)
    stock(port, {"T1-P": 3, "T1-M": 3, "T1-G": 3})
    shopper = shopper_for(tee, cap)
    start = len(storefront.requests)

    shopper.pick("M")
    shopper.add()
    shopper.page.wait_for_selector("cart-drawer:not([hidden]) .cart-item[data-sku='T1-M']")

    posts = posts_since(storefront, start)
    # The App Proxy first, for M (not the first variant), then the theme's own request, once.
    assert paths(posts) == ["/apps/bazico/stock/T1-M/reserve", "/cart/add"]
    reserve, add = posts
    assert reserve.json["quantity"] == 1 and reserve.json["cart_token"].startswith("c1-")
    assert reserve.status == 200, reserve.answer
    hold_id = reserve.answer["reservation_id"]
    assert add.fields["id"] == ["10002"]
    assert add.fields["properties[_bazico_hold]"] == [hold_id]
    assert "sections" in add.fields, "the theme's own FormData (Dawn's sections) went out"
    assert add.headers["x-requested-with"] == "XMLHttpRequest"
    assert shopper.theme_calls()["productFormSubmit"] == 1

    line = shopper.cart()["items"][0]
    assert (line["sku"], line["quantity"], line["properties"]) == (
        "T1-M",
        1,
        {"_bazico_hold": hold_id},
    )
    row = active_hold(engine, hold_id)
    assert (row.sku, row.quantity, row.status) == ("T1-M", 1, "active")
    assert row.holder == reserve.json["cart_token"].split("?")[0]
    assert figures(engine, "T1-M")["reserved"] == 1
    assert figures(engine, "T1-P")["reserved"] == 0 and figures(engine, "T1-G")["reserved"] == 0

    # Shopify's carts/create arrives a little later: it keeps the one hold, it adds none.
    storefront.wait_webhooks()
    delivery = storefront.deliveries[-1]
    assert delivery.topic == "carts/create" and delivery.status == 200, delivery.answer
    assert figures(engine, "T1-M")["reserved"] == 1
    assert_ledger_balanced(engine)


def test_sold_out_shows_the_portuguese_message_and_the_cart_stays_as_it_was(
    web: tuple[int, Engine], storefront: Storefront, shopper_for: Any, tmp_path: Path
) -> None:
    port, engine = web
    tee, cap = catalog("T2", 20_000)
    stock(port, {"T2-P": 2, "T2-M": 1, "T2-G": 2})
    # Another shopper's cart holds the last M, through the same App Proxy.
    other = requests.post(
        f"{storefront.base_url}/apps/bazico/stock/T2-M/reserve",
        json={"cart_token": "c1-another-shopper", "quantity": 1},
        timeout=10,
    )
    assert other.status_code == 200, other.text
    shopper = shopper_for(tee, cap)
    start = len(storefront.requests)

    shopper.pick("M")
    shopper.add()
    error = shopper.page.locator(".product-form__error-message-wrapper")
    error.wait_for(state="visible")
    (reserve,) = posts_since(storefront, start)
    assert reserve.path == "/apps/bazico/stock/T2-M/reserve" and reserve.status == 409
    message = shopper.page.text_content(".product-form__error-message")
    assert message == reserve.answer["message"] and message.startswith("Esgotado")
    screenshot(shopper, tmp_path, "storefront-sold-out.png")

    # The theme's handler never ran, /cart/add was never sent, and nothing is in the cart.
    assert shopper.theme_calls()["productFormSubmit"] == 0
    assert paths(posts_since(storefront, start)) == ["/apps/bazico/stock/T2-M/reserve"]
    assert shopper.cart()["item_count"] == 0
    assert figures(engine, "T2-M") == {"on_hand": 1, "reserved": 1, "committed": 0, "available": 0}

    # P is still there: the message goes away and P is held and added as usual.
    shopper.pick("P")
    shopper.add()
    shopper.page.wait_for_selector("cart-drawer:not([hidden]) .cart-item[data-sku='T2-P']")
    assert error.is_hidden()
    assert figures(engine, "T2-P")["reserved"] == 1
    assert shopper.theme_calls()["productFormSubmit"] == 1
    assert_ledger_balanced(engine)


def test_a_service_outage_fails_open_and_says_so_in_the_console(
    web: tuple[int, Engine], storefront: Storefront, shopper_for: Any
) -> None:
    port, engine = web
    tee, cap = catalog("T3", 30_000)
    stock(port, {"T3-P": 1, "T3-M": 1, "T3-G": 1})
    shopper = shopper_for(tee, cap)
    start = len(storefront.requests)
    storefront.service_port = free_port()  # nothing listens there: the app is down
    try:
        shopper.pick("G")
        shopper.add()
        shopper.page.wait_for_selector("cart-drawer:not([hidden]) .cart-item[data-sku='T3-G']")
        posts = posts_since(storefront, start)
        assert paths(posts) == ["/apps/bazico/stock/T3-G/reserve", "/cart/add"]
        assert posts[0].status is None, "the proxy could not reach the service (502)"
        assert "properties[_bazico_hold]" not in posts[1].fields
        assert shopper.theme_calls()["productFormSubmit"] == 1
        warnings = [text for kind, text in shopper.console if kind == "warning"]
        assert any("WITHOUT a hold" in text and "502" in text for text in warnings), shopper.console
        storefront.wait_webhooks()
    finally:
        storefront.service_port = port
    assert figures(engine, "T3-G")["reserved"] == 0, "no hold was made"


def test_a_drawer_increase_asks_for_the_extra_unit_first(
    web: tuple[int, Engine], storefront: Storefront, shopper_for: Any, tmp_path: Path
) -> None:
    port, engine = web
    tee, cap = catalog("T4", 40_000)
    stock(port, {"T4-P": 1, "T4-M": 2, "T4-G": 1})
    shopper = shopper_for(tee, cap)
    shopper.pick("M")
    shopper.add()
    shopper.page.wait_for_selector("cart-drawer:not([hidden]) .cart-item[data-sku='T4-M']")
    storefront.wait_webhooks()
    assert figures(engine, "T4-M")["reserved"] == 1

    start = len(storefront.requests)
    shopper.page.click(".cart-item[data-sku='T4-M'] button[name='plus']")
    shopper.page.wait_for_function(
        "document.querySelector(\".cart-item[data-sku='T4-M'] .cart-item__quantity\")"
        ".textContent.trim() === '2'"
    )
    posts = posts_since(storefront, start)
    assert paths(posts) == ["/apps/bazico/stock/T4-M/reserve", "/cart/change.js"]
    assert posts[0].json["quantity"] == 1, "only the extra unit is asked for"
    assert posts[0].status == 200
    assert posts[1].json == {"line": 1, "quantity": 2}, "the theme's request, untouched"
    assert figures(engine, "T4-M")["reserved"] == 2
    storefront.wait_webhooks()
    assert figures(engine, "T4-M")["reserved"] == 2

    # A third M does not exist: the drawer says so and the line stays at 2.
    start = len(storefront.requests)
    shopper.page.click(".cart-item[data-sku='T4-M'] button[name='plus']")
    errors = shopper.page.locator("#CartDrawer-CartErrors")
    errors.wait_for(state="visible")
    shopper.page.wait_for_function("document.querySelector('#CartDrawer-CartErrors').textContent")
    assert errors.text_content().startswith("Esgotado")
    assert paths(posts_since(storefront, start)) == ["/apps/bazico/stock/T4-M/reserve"]
    assert shopper.drawer_quantity("T4-M").strip() == "2"
    assert shopper.cart()["items"][0]["quantity"] == 2
    shopper.page.wait_for_timeout(800)  # past the embed's own banner delay
    assert shopper.page.locator("#bazico-reserve-status").is_hidden(), "said once, by the theme"
    screenshot(shopper, tmp_path, "storefront-drawer-sold-out.png")

    # Decreasing passes straight through; the cart webhook gives the unit back.
    start = len(storefront.requests)
    shopper.page.click(".cart-item[data-sku='T4-M'] button[name='minus']")
    wait_posts(shopper, storefront, start, "/cart/change.js")
    assert paths(posts_since(storefront, start)) == ["/cart/change.js"]
    storefront.wait_webhooks()
    assert figures(engine, "T4-M")["reserved"] == 1
    assert shopper.theme_calls()["drawerChange"] == 3
    assert_ledger_balanced(engine)


def test_quick_add_and_an_xhr_add_go_through_the_hold_too(
    web: tuple[int, Engine], storefront: Storefront, shopper_for: Any
) -> None:
    port, engine = web
    tee, cap = catalog("T5", 50_000)
    stock(port, {"T5-P": 1, "T5-M": 1, "T5-G": 1, "T5-BONE": 1})
    shopper = shopper_for(tee, cap)
    start = len(storefront.requests)

    shopper.page.click(".quick-add__submit")
    shopper.page.wait_for_selector("cart-drawer:not([hidden]) .cart-item[data-sku='T5-BONE']")
    posts = posts_since(storefront, start)
    assert paths(posts) == ["/apps/bazico/stock/T5-BONE/reserve", "/cart/add.js"]
    hold_id = posts[0].answer["reservation_id"]
    assert posts[1].json == {
        "items": [{"id": 50_009, "quantity": 1, "properties": {"_bazico_hold": hold_id}}]
    }
    assert shopper.theme_calls()["quickAdd"] == 1
    assert figures(engine, "T5-BONE")["reserved"] == 1

    # Older themes post with XMLHttpRequest: held the same way; a refusal answers 422.
    xhr_add = """(id) => new Promise((resolve) => {
        const xhr = new XMLHttpRequest();
        xhr.open("POST", "/pt-br/cart/add.js");
        xhr.setRequestHeader("Content-Type", "application/json");
        xhr.onload = () => resolve({status: xhr.status, body: JSON.parse(xhr.responseText)});
        xhr.send(JSON.stringify({id, quantity: 1}));
    })"""
    start = len(storefront.requests)
    first = shopper.page.evaluate(xhr_add, 50_003)
    assert first["status"] == 200 and first["body"]["sku"] == "T5-G"
    second = shopper.page.evaluate(xhr_add, 50_003)
    assert second["status"] == 422 and second["body"]["description"].startswith("Esgotado")
    posts = posts_since(storefront, start)
    assert paths(posts) == [
        "/apps/bazico/stock/T5-G/reserve",
        "/pt-br/cart/add.js",
        "/apps/bazico/stock/T5-G/reserve",
    ]
    assert posts[1].json["properties"] == {"_bazico_hold": posts[0].answer["reservation_id"]}
    # No theme code shows that 422, so the embed's own banner (role=status) does.
    status = shopper.page.locator("#bazico-reserve-status")
    status.wait_for(state="visible")
    assert status.text_content().startswith("Esgotado")
    items = {i["sku"]: i["quantity"] for i in shopper.cart()["items"]}
    assert items == {"T5-BONE": 1, "T5-G": 1}
    storefront.wait_webhooks()
    assert figures(engine, "T5-G")["reserved"] == 1
    assert_ledger_balanced(engine)
