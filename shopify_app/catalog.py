"""``flask catalog audit``: does Shopify's catalog match Bling's, SKU for SKU?

The ledger joins the two by SKU only, so a variant without a SKU is never held nor sold here, two
variants with one SKU share its stock, a SKU Shopify sells that Bling does not know cannot be
forwarded, and a SKU in Bling that no variant carries is stock the shop cannot sell. The audit
reads every Shopify variant (``shopify/catalog.py``) and Bling's catalog as the last ``bling
sync`` stored it (``bling_products``), and lists each kind of mismatch, with SKUs that differ
only in case or spaces pointed out (the likely typos). ``--json`` for machines.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from .config import SHOP_DOMAIN_RE
from .crypto import TokenUnreadable
from .db.dialect import upsert
from .erp.stock_tables import bling_products
from .runtime import Runtime, current_runtime
from .shopify import client
from .shopify.catalog import ShopifyVariant, fetch_variants
from .shopify.shops import ShopTokenError, TokenStore
from .shopify.tables import catalog_audits

log = logging.getLogger(__name__)


@dataclass
class CatalogAudit:
    shop: str
    variants: int
    bling_products: int
    #: Variants with no SKU: never held nor sold by the ledger.
    without_sku: list[ShopifyVariant] = field(default_factory=list)
    #: SKUs carried by more than one variant: those variants share one stock.
    duplicate_skus: dict[str, list[ShopifyVariant]] = field(default_factory=dict)
    #: SKUs Shopify sells that Bling's catalog does not have: their orders cannot be forwarded.
    not_in_bling: list[str] = field(default_factory=list)
    #: SKUs in Bling's catalog that no Shopify variant carries.
    not_in_shopify: list[str] = field(default_factory=list)
    #: (Shopify's SKU, Bling's SKU) equal but for case or spaces: probably one product.
    near_misses: list[tuple[str, str]] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return (
            len(self.without_sku)
            + len(self.duplicate_skus)
            + len(self.not_in_bling)
            + len(self.not_in_shopify)
        )

    def as_json(self) -> dict[str, Any]:
        def variant(v: ShopifyVariant) -> dict[str, Any]:
            return {"variant_id": v.variant_id, "sku": v.sku, "label": v.label}

        return {
            "shop": self.shop,
            "variants": self.variants,
            "bling_products": self.bling_products,
            "problems": self.problems,
            "without_sku": [variant(v) for v in self.without_sku],
            "duplicate_skus": {
                sku: [variant(v) for v in found] for sku, found in self.duplicate_skus.items()
            },
            "not_in_bling": self.not_in_bling,
            "not_in_shopify": self.not_in_shopify,
            "near_misses": [{"shopify": s, "bling": b} for s, b in self.near_misses],
        }


def audit(shop: str, variants: list[ShopifyVariant], bling_skus: set[str]) -> CatalogAudit:
    """Compare the shop's variants with Bling's SKUs (pure: no I/O)."""
    result = CatalogAudit(shop, len(variants), len(bling_skus))
    by_sku: dict[str, list[ShopifyVariant]] = defaultdict(list)
    for v in variants:
        if v.sku is None:
            result.without_sku.append(v)
        else:
            by_sku[v.sku].append(v)
    result.duplicate_skus = {sku: found for sku, found in sorted(by_sku.items()) if len(found) > 1}
    shopify_skus = set(by_sku)
    result.not_in_bling = sorted(shopify_skus - bling_skus)
    result.not_in_shopify = sorted(bling_skus - shopify_skus)
    folded = {_fold(sku): sku for sku in result.not_in_shopify}
    result.near_misses = [
        (sku, folded[_fold(sku)]) for sku in result.not_in_bling if _fold(sku) in folded
    ]
    return result


def _fold(sku: str) -> str:
    return "".join(sku.split()).casefold()


def save_report(runtime: Runtime, result: CatalogAudit) -> None:
    """Keep the shop's last audit (the admin's Saúde page shows it)."""
    with runtime.uow() as uow:
        values = {
            "shop": result.shop,
            "report": json.dumps(result.as_json(), ensure_ascii=False),
            "ran_at": uow.now,
        }
        uow.connection.execute(upsert(uow.connection, catalog_audits, values, ["shop"]))
        uow.commit()


def last_report(runtime: Runtime, shop: str) -> dict[str, Any] | None:
    """The shop's last audit as ``as_json`` gave it, with ``ran_at``; None before the first."""
    with runtime.uow(read_only=True) as uow:
        row = uow.connection.execute(
            select(catalog_audits).where(catalog_audits.c.shop == shop)
        ).one_or_none()
    if row is None:
        return None
    return {**json.loads(row.report), "ran_at": row.ran_at}


def bling_skus(runtime: Runtime) -> set[str]:
    """Bling's catalog as the last ``bling sync`` stored it."""
    with runtime.uow(read_only=True) as uow:
        return set(uow.connection.execute(select(bling_products.c.sku)).scalars())


# --- command line ---------------------------------------------------------------------------

catalog_cli = AppGroup("catalog", help="The shop's catalog against Bling's.")


@catalog_cli.command("audit")
@click.option("--shop", default=None, help="name.myshopify.com (default: SHOPIFY_SHOP_DOMAIN)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def audit_command(shop: str | None, as_json: bool) -> None:
    """List variants without a SKU, duplicate SKUs, and SKUs only one side knows."""
    runtime = current_runtime()
    shop = shop or runtime.settings.shopify_shop_domain
    if not shop:
        raise click.UsageError("give --shop or set SHOPIFY_SHOP_DOMAIN")
    if not SHOP_DOMAIN_RE.match(shop):
        raise click.BadParameter(f"{shop!r} is not name.myshopify.com", param_hint="--shop")
    known = bling_skus(runtime)
    if not known:
        raise click.ClickException(
            "Bling's catalog is empty here: run `flask --app wsgi bling sync` first"
        )

    terminal = sys.stderr.isatty()
    started = time.monotonic()

    def progress(pages: int, variants: int) -> None:
        """One live line on a terminal; otherwise a log line every 10 pages (a long catalog)."""
        line = f"Shopify: {pages} page(s), {variants} variant(s) read"
        line += f", {time.monotonic() - started:.0f} s elapsed"
        if terminal:
            click.echo(f"\r{line}", nl=False, err=True)
        elif pages % 10 == 0:
            log.info("catalog.audit_progress %s", line)

    try:
        token = TokenStore.for_runtime(runtime).access_token(shop)
        admin_base = client.admin_base_url(runtime.settings.shopify_admin_url, shop)
        variants = fetch_variants(admin_base, token, on_page=progress)
    except (ShopTokenError, TokenUnreadable, client.ShopifyError) as exc:
        raise click.ClickException(f"{shop}: {exc}") from None
    if terminal:
        click.echo("", err=True)
    log.info(
        "catalog.audited shop=%s variants=%d seconds=%.1f",
        shop,
        len(variants),
        time.monotonic() - started,
    )
    result = audit(shop, variants, known)
    save_report(runtime, result)
    if as_json:
        # One line, the last of stdout: the service's JSON log lines go to stdout too.
        click.echo(json.dumps(result.as_json(), ensure_ascii=False))
        return
    _print(result)


def _print(result: CatalogAudit) -> None:
    click.echo(
        f"{result.shop}: {result.variants} Shopify variant(s), "
        f"{result.bling_products} Bling product(s), {result.problems} problem(s)"
    )
    if result.without_sku:
        click.echo(f"\nWithout a SKU ({len(result.without_sku)}): never held nor sold here")
        for v in result.without_sku:
            click.echo(f"  variant {v.variant_id}  {v.label}")
    if result.duplicate_skus:
        click.echo(f"\nOne SKU on several variants ({len(result.duplicate_skus)}): shared stock")
        for sku, found in result.duplicate_skus.items():
            click.echo(f"  {sku}: " + ", ".join(f"{v.variant_id} {v.label}" for v in found))
    if result.not_in_bling:
        click.echo(f"\nSold in Shopify, unknown to Bling ({len(result.not_in_bling)}):")
        for sku in result.not_in_bling:
            click.echo(f"  {sku}")
    if result.not_in_shopify:
        click.echo(f"\nIn Bling, on no Shopify variant ({len(result.not_in_shopify)}):")
        for sku in result.not_in_shopify:
            click.echo(f"  {sku}")
    for shopify_sku, bling_sku in result.near_misses:
        click.echo(f"\nProbably one product: Shopify {shopify_sku!r} ~ Bling {bling_sku!r}")
    if not result.problems:
        click.echo("Every variant has a SKU of its own, and Bling knows each one.")


def init_app(app: Flask) -> None:
    app.cli.add_command(catalog_cli)
