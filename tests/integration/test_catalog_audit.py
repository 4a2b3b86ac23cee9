"""``flask catalog audit`` against the Shopify stand-in (productVariants, paginated, with the
query cost and throttling Shopify answers) and Bling's catalog as a sync stored it; and the
checkout rule as the admin's Saúde page reads it from the same stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from sqlalchemy import insert

from shopify_app.erp.stock_tables import bling_products
from shopify_app.runtime import EXTENSION_KEY
from shopify_app.shopify.catalog import fetch_variants
from shopify_app.shopify.client import admin_base_url
from tests.support.clock import FakeClock
from tests.support.shopify_install import SHOP, make_app, standin
from tests.support.shopify_standin import ShopifyStandIn

TOKEN = "shpat_catalog"


@pytest.fixture
def stand_in(clock: FakeClock) -> Iterator[ShopifyStandIn]:
    with standin(clock) as server:
        server.add_access_token(SHOP, TOKEN)
        yield server


@pytest.fixture
def app(database_url: str, clock: FakeClock, stand_in: ShopifyStandIn) -> Iterator[Flask]:
    app = make_app(database_url, clock, stand_in.url, SHOPIFY_ACCESS_TOKEN=TOKEN)
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


def bling_catalog(app: Flask, *skus: str) -> None:
    engine = app.extensions[EXTENSION_KEY].engine
    now = datetime(2026, 12, 2, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            insert(bling_products),
            [{"sku": sku, "product_id": n, "updated_at": now} for n, sku in enumerate(skus, 1)],
        )


def test_the_audit_lists_every_mismatch_and_answers_json(
    app: Flask, stand_in: ShopifyStandIn
) -> None:
    stand_in.add_variant(SHOP, "TEE-M", "M", "Camiseta")
    stand_in.add_variant(SHOP, None, "G", "Camiseta")
    stand_in.add_variant(SHOP, "CAP", product="Boné")
    stand_in.add_variant(SHOP, "CAP", "Azul", "Boné")
    stand_in.add_variant(SHOP, "NEW-ONE", product="Novidade")
    bling_catalog(app, "TEE-M", "CAP", "OLD-ONE")

    result = app.test_cli_runner().invoke(args=["catalog", "audit", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["variants"] == 5 and report["bling_products"] == 3
    assert [v["label"] for v in report["without_sku"]] == ["Camiseta / G"]
    assert list(report["duplicate_skus"]) == ["CAP"]
    assert report["not_in_bling"] == ["NEW-ONE"]
    assert report["not_in_shopify"] == ["OLD-ONE"]
    assert report["problems"] == 4

    text = app.test_cli_runner().invoke(args=["catalog", "audit"])
    assert text.exit_code == 0, text.output
    assert "4 problem(s)" in text.output and "Sold in Shopify, unknown to Bling (1)" in text.output


def test_the_audit_reads_every_page_and_waits_out_a_throttle(stand_in: ShopifyStandIn) -> None:
    for n in range(23):
        stand_in.add_variant(SHOP, f"SKU-{n:02d}")
    stand_in.throttle(SHOP, calls=2)
    pages: list[tuple[int, int]] = []
    waited: list[float] = []
    found = fetch_variants(
        admin_base_url(stand_in.url, SHOP),
        TOKEN,
        page_size=10,
        on_page=lambda p, v: pages.append((p, v)),
        sleep=waited.append,
    )
    assert [v.sku for v in found] == [f"SKU-{n:02d}" for n in range(23)]
    assert pages == [(1, 10), (2, 20), (3, 23)]
    assert len(waited) == 2 and all(w >= 0 for w in waited)
    validated = [c for c in stand_in.calls_of("graphql") if c.operation == "productVariants"]
    assert len(validated) == 5  # two throttled answers, then the three pages


def test_a_long_catalog_logs_its_progress_when_not_on_a_terminal(
    app: Flask,
    stand_in: ShopifyStandIn,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shopify_app.shopify import catalog as shopify_catalog

    monkeypatch.setattr(shopify_catalog, "PAGE_SIZE", 2)
    for n in range(41):
        stand_in.add_variant(SHOP, f"SKU-{n:02d}")
    bling_catalog(app, "SKU-00")
    caplog.set_level("INFO", logger="shopify_app.catalog")
    result = app.test_cli_runner().invoke(args=["catalog", "audit", "--json"])
    assert result.exit_code == 0, result.output
    lines = [r.getMessage() for r in caplog.records if r.name == "shopify_app.catalog"]
    progress = [m for m in lines if "audit_progress" in m]
    assert len(progress) == 2  # 21 pages: a line at the 10th and the 20th
    assert progress[0].startswith("catalog.audit_progress Shopify: 10 page(s), 20 variant(s) read")
    assert progress[1].startswith("catalog.audit_progress Shopify: 20 page(s), 40 variant(s) read")
    assert any(m.startswith(f"catalog.audited shop={SHOP} variants=41") for m in lines)


def test_without_bling_catalog_the_audit_says_to_sync_first(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["catalog", "audit"])
    assert result.exit_code == 1
    assert "bling sync" in result.output


def test_the_admin_health_reads_the_checkout_rule_as_shopify_has_it(
    app: Flask, stand_in: ShopifyStandIn
) -> None:
    from shopify_app.admin.health import checkout_health
    from shopify_app.shopify import enforcement

    runtime = app.extensions[EXTENSION_KEY]
    assert checkout_health(runtime, SHOP) == {
        "problem": None,
        "function": None,
        "enabled": False,
        "block_on_failure": None,
    }
    stand_in.deploy_function(SHOP)
    enforcement.enforce(admin_base_url(stand_in.url, SHOP), TOKEN)
    health = checkout_health(runtime, SHOP)
    assert health["function"] == "bazico-checkout-validation"
    assert health["enabled"] is True and health["block_on_failure"] is False
    stand_in.outage()
    try:
        assert (checkout_health(runtime, SHOP)["problem"] or "").startswith("Shopify:")
    finally:
        stand_in.restore()
