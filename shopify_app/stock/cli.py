"""``flask --app wsgi stock …``: the ledger by hand, for operators."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from ..runtime import current_runtime
from . import services

stock_cli = AppGroup("stock", help="Read and adjust the stock ledger.")


@stock_cli.command("set")
@click.argument("sku")
@click.argument("quantity", type=click.IntRange(min=0))
def set_command(sku: str, quantity: int) -> None:
    """Set on_hand of SKU to QUANTITY (creates the SKU; audited as an adjustment)."""
    view = services.set_on_hand(current_runtime().uow(), sku, quantity, reference="cli")
    click.echo(_row(view))


@stock_cli.command("show")
@click.argument("sku", required=False)
def show_command(sku: str | None) -> None:
    """Print the ledger of SKU, or of every SKU."""
    runtime = current_runtime()
    if sku is not None:
        view = runtime.reservations.level(sku)
        if view is None:
            raise click.ClickException(f"unknown SKU {sku!r}")
        views = [view]
    else:
        views = services.list_levels(runtime.uow(read_only=True))
    click.echo(f"{'sku':<24} {'on_hand':>10} {'reserved':>10} {'committed':>10} {'available':>10}")
    for view in views:
        click.echo(_row(view))


@stock_cli.command("check")
def check_command() -> None:
    """Recompute every counter from the movement ledger and the holds; exit 1 on any drift."""
    drift = services.find_drift(current_runtime().uow(snapshot=True))
    for d in drift:
        click.echo(
            f"DRIFT {d.sku} {d.figure}: counter {d.counter}, {d.source} say {d.expected}", err=True
        )
    if drift:
        raise SystemExit(1)
    click.echo("ledger consistent: every counter equals its movements and holds")


def _row(view: services.LevelView) -> str:
    return (
        f"{view.sku:<24} {view.on_hand:>10} {view.reserved:>10} "
        f"{view.committed:>10} {view.available:>10}"
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(stock_cli)
