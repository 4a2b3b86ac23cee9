"""``flask shopify enforce`` (set up the checkout rule) and ``flask shopify enforce status``.

``enforce`` defines the stock metafield, creates (or switches on) the validation that runs the
deployed function (shopify/enforcement.py) and marks the SKUs the publisher has not written yet
(``--republish``: every one). ``status`` shows what the checkout relies on: the function
deployed, the validation active, and the publisher's last publish, lag and backlog (read from
the database, so it answers while Shopify does not).
"""

from __future__ import annotations

from datetime import timedelta

import click
from flask.cli import with_appcontext

from ..config import SHOP_DOMAIN_RE
from ..crypto import TokenUnreadable
from ..runtime import Runtime, current_runtime
from ..stock.dirty import age
from . import client, enforcement, inventory_cli
from .publications import SqlPublicationStore
from .registration import shopify_cli
from .shops import ShopTokenError, TokenStore


def _shop_and_token(runtime: Runtime, shop: str | None) -> tuple[str, str, str]:
    shop = shop or runtime.settings.shopify_shop_domain
    if not shop:
        raise click.UsageError("give --shop or set SHOPIFY_SHOP_DOMAIN")
    if not SHOP_DOMAIN_RE.match(shop):
        raise click.BadParameter(f"{shop!r} is not name.myshopify.com", param_hint="--shop")
    try:
        token = TokenStore.for_runtime(runtime).access_token(shop)
    except (ShopTokenError, TokenUnreadable, client.ShopifyError) as exc:
        raise click.ClickException(f"{shop}: {exc}") from None
    return shop, token, client.admin_base_url(runtime.settings.shopify_admin_url, shop)


def _store(runtime: Runtime) -> SqlPublicationStore:
    seconds = runtime.settings.shopify_publish_min_interval_seconds
    return SqlPublicationStore(
        runtime.engine, min_interval=timedelta(seconds=seconds), lease=timedelta(seconds=60)
    )


@shopify_cli.group("enforce", invoke_without_command=True)
@click.option("--shop", default=None, help="name.myshopify.com (default: SHOPIFY_SHOP_DOMAIN)")
@click.option(
    "--block-on-failure/--no-block-on-failure",
    default=None,
    help="Whether a failed run of the function (not its refusals) blocks checkout; default: "
    "off for a new validation, unchanged for an existing one.",
)
@click.option("--republish", is_flag=True, help="Write every variant's stock metafield again.")
@click.pass_context
@with_appcontext  # AppGroup wraps the commands of a group, not the group's own callback
def enforce_command(
    ctx: click.Context, shop: str | None, block_on_failure: bool | None, republish: bool
) -> None:
    """Set up the checkout rule: the stock metafield's definition and the validation."""
    if ctx.invoked_subcommand is not None:
        return
    runtime = current_runtime()
    shop, token, admin_base = _shop_and_token(runtime, shop)
    try:
        report = enforcement.enforce(admin_base, token, block_on_failure=block_on_failure)
    except client.ShopifyError as exc:
        raise click.ClickException(f"{shop}: {exc}") from None
    store, now = _store(runtime), runtime.clock()
    marked = store.republish_all(now) if republish else store.reconcile(now)
    click.echo(f"{shop}: checkout enforcement")
    click.echo(f"  definition   {report.definition} ($app:bazico/stock, json, product variants)")
    if report.function is None:
        click.echo(
            f"  function     NOT DEPLOYED: run `shopify app deploy` (handle "
            f"{enforcement.FUNCTION_HANDLE}), then this command again"
        )
    else:
        click.echo(f"  function     deployed ({report.function.handle}, {report.function.id})")
    if report.validation is not None:
        blocking = "on" if report.validation.block_on_failure else "off"
        click.echo(
            f"  validation   {report.validation_action}: {report.validation.id} "
            f"(active, blockOnFailure {blocking})"
        )
    click.echo(f"  publisher    {marked} SKU(s) marked for publishing")
    if report.function is None:
        ctx.exit(2)


@enforce_command.command("status")
@click.option("--shop", default=None, help="name.myshopify.com (default: SHOPIFY_SHOP_DOMAIN)")
def status_command(shop: str | None) -> None:
    """Show the function, the validation and the publisher's last publish, lag and backlog."""
    runtime = current_runtime()
    figures = _store(runtime).figures(runtime.clock())
    shop_name = shop or runtime.settings.shopify_shop_domain or "(no shop)"
    click.echo(f"{shop_name}: checkout enforcement")
    healthy = True
    try:
        shop_name, token, admin_base = _shop_and_token(runtime, shop)
        report = enforcement.check(admin_base, token)
    except (click.ClickException, client.ShopifyError) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"  shopify      unreachable: {message}")
        healthy = False
    else:
        if report.function is None:
            click.echo("  function     NOT DEPLOYED (shopify app deploy)")
            healthy = False
        else:
            click.echo(
                f"  function     deployed: {report.function.handle} ({report.function.id}, "
                f"API {report.function.api_version or '?'})"
            )
        if report.validation is None:
            click.echo("  validation   missing (flask shopify enforce)")
            healthy = False
        else:
            state = "active" if report.validation.enabled else "INACTIVE"
            blocking = "on" if report.validation.block_on_failure else "off"
            click.echo(
                f"  validation   {state}: {report.validation.title} ({report.validation.id}, "
                f"blockOnFailure {blocking})"
            )
            healthy = healthy and report.validation.enabled
    publishing = "on" if runtime.settings.shopify_publish_stock else "OFF (SHOPIFY_PUBLISH_STOCK)"
    click.echo(f"  publisher    {publishing}; {figures.variants_published} variant(s) published")
    if figures.last_published_at is None:
        click.echo("  last publish never")
    else:
        click.echo(
            f"  last publish {figures.last_published_at.isoformat(timespec='seconds')} "
            f"(lag {figures.last_lag_seconds or 0:.2f} s)"
        )
    lags = figures.recent_lags
    if lags:
        p50, p99 = _quantile(lags, 0.5), _quantile(lags, 0.99)
        click.echo(f"  lag          p50 {p50:.2f} s, p99 {p99:.2f} s ({len(lags)} writes, 15 min)")
    oldest = age(figures.backlog.oldest_due_at, runtime.clock()).total_seconds()
    click.echo(
        f"  backlog      {figures.backlog.due} SKU(s) due (oldest change {oldest:.1f} s ago), "
        f"{figures.waiting_for_variant} waiting for a variant, "
        f"{figures.backlog.scheduled} scheduled"
    )
    for line in inventory_cli.status_lines(runtime, shop_name):
        click.echo(line)
    if not healthy:
        raise SystemExit(1)


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
