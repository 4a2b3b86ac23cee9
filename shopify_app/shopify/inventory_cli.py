"""``flask shopify inventory`` (how far Shopify's inventory follows the ledger) and
``flask shopify inventory sync`` (one round of the follower now, shopify/inventory_follower.py).

The status reads the database only, so it answers while Shopify does not: the location, the
last catalog walk and what it found (SKUs mapped, on several variants, untracked, not stocked,
missing; variants without a SKU), the writes pending, and the drift noted at the last check.
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..runtime import Runtime, current_runtime
from . import inventory_store
from .inventory_follower import follow_once
from .registration import shopify_cli

_STATES = ("mapped", "duplicate", "untracked", "not_stocked", "missing")


def status_lines(runtime: Runtime, shop: str) -> list[str]:
    """The inventory lines of a shop's status (here and in ``shopify enforce status``)."""
    state = inventory_store.shop_state(runtime.engine, shop)
    if not runtime.settings.shopify_inventory_sync:
        head = "  inventory    OFF (SHOPIFY_INVENTORY_SYNC)"
    elif state is None or state.location_id is None:
        why = state.problem if state is not None and state.problem else "not started yet"
        return [f"  inventory    not following: {why}"]
    else:
        head = f"  inventory    following at {state.location_name} ({state.location_id})"
    lines = [head]
    if state is None:
        return lines
    found = inventory_store.counts(runtime.engine, shop)
    mapped_at = state.mapped_at.isoformat(timespec="seconds") if state.mapped_at else "never"
    lines.append(
        f"  catalog      walked {mapped_at}: "
        + ", ".join(f"{found.get(s, 0)} {s.replace('_', ' ')}" for s in _STATES)
        + f"; {state.variants_without_sku} variant(s) without a SKU"
    )
    last = state.last_write_at.isoformat(timespec="seconds") if state.last_write_at else "never"
    lines.append(
        f"  writes       last {last}; {found['pending']} SKU(s) pending, "
        f"{found['unaligned']} not aligned yet"
    )
    checked = (
        state.drift_checked_at.isoformat(timespec="seconds") if state.drift_checked_at else "never"
    )
    lines.append(f"  drift        checked {checked}; {found['drifting']} SKU(s) differ (noted)")
    if state.problem:
        lines.append(f"  problem      {state.problem}")
    return lines


@shopify_cli.group("inventory", invoke_without_command=True)
@click.option("--shop", default=None, help="name.myshopify.com (default: SHOPIFY_SHOP_DOMAIN)")
@click.pass_context
@with_appcontext  # AppGroup wraps the commands of a group, not the group's own callback
def inventory_command(ctx: click.Context, shop: str | None) -> None:
    """Show how far Shopify's inventory follows the ledger, and the SKUs it cannot write."""
    if ctx.invoked_subcommand is not None:
        return
    runtime = current_runtime()
    shop = shop or runtime.settings.shopify_shop_domain
    if not shop:
        raise click.UsageError("give --shop or set SHOPIFY_SHOP_DOMAIN")
    click.echo(f"{shop}: Shopify inventory")
    for line in status_lines(runtime, shop):
        click.echo(line)
    for sku, state, problem in inventory_store.problems(runtime.engine, shop):
        click.echo(f"  not written  {sku}: {state}" + (f" ({problem})" if problem else ""))


@inventory_command.command("sync")
def sync_command() -> None:
    """Run one round of the follower now (every installed shop)."""
    report = follow_once(current_runtime())
    click.echo(
        f"{report.shops} shop(s): {report.aligned} aligned, {report.adjusted} adjusted, "
        f"{report.repaired} repaired, {report.calls} write call(s); drift "
        f"{report.drift_noted} noted, {report.drift_persisting} persisting"
    )
    if report.stopped_by is not None:
        raise click.ClickException(f"stopped: {report.stopped_by} (nothing lost; see the logs)")
