"""``flask --app wsgi stock …``: the ledger by hand, for operators."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
from flask import Flask
from flask.cli import AppGroup

from ..admin import queries
from ..migrations_runner import schema_problem
from ..runtime import current_runtime
from . import services

stock_cli = AppGroup("stock", help="Read and adjust the stock ledger.")
F = TypeVar("F", bound=Callable[..., Any])


def migrated(command: F) -> F:
    """Refuse to run on a database that is not migrated, saying what to do (no traceback)."""

    @wraps(command)
    def checked(*args: Any, **kwargs: Any) -> Any:
        problem = schema_problem(current_runtime().engine)
        if problem is not None:
            raise click.ClickException(problem)
        return command(*args, **kwargs)

    return checked  # type: ignore[return-value]


@stock_cli.command("set")
@click.argument("sku")
@click.argument("quantity", type=click.IntRange(min=0))
@migrated
def set_command(sku: str, quantity: int) -> None:
    """Set on_hand of SKU to QUANTITY (creates the SKU; audited as an adjustment)."""
    view = services.set_on_hand(current_runtime().uow(), sku, quantity, reference="cli")
    click.echo(_row(view))


@stock_cli.command("show")
@click.argument("sku", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per SKU, for machines.")
@migrated
def show_command(sku: str | None, as_json: bool) -> None:
    """Print the ledger of SKU, or of every SKU."""
    runtime = current_runtime()
    if sku is not None:
        view = runtime.reservations.level(sku)
        if view is None:
            raise click.ClickException(f"unknown SKU {sku!r}")
        views = [view]
    else:
        views = services.list_levels(runtime.uow(read_only=True))
    if as_json:
        for view in views:
            click.echo(json.dumps(_level(view)))
        return
    click.echo(f"{'sku':<24} {'on_hand':>10} {'reserved':>10} {'committed':>10} {'available':>10}")
    for view in views:
        click.echo(_row(view))


@stock_cli.command("check")
@migrated
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


@stock_cli.command("history")
@click.argument("sku")
@click.option("--limit", default=50, show_default=True, help="How many movements, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per movement.")
@migrated
def history_command(sku: str, limit: int, as_json: bool) -> None:
    """Print SKU's latest movements, newest first, each with the figures it left behind."""
    runtime = current_runtime()
    with queries.reading(runtime) as connection:
        figures = queries.sku_figures(connection, runtime.clock(), sku)
        history = queries.movement_history(connection, sku, limit=limit)
    if figures is None:
        raise click.ClickException(f"unknown SKU {sku!r}")
    if as_json:
        for movement in history:
            click.echo(json.dumps(queries.as_json(movement) | {"available": movement.available}))
        return
    click.echo(
        f"{sku}: on_hand {figures.on_hand}, reserved {figures.reserved}, "
        f"committed {figures.committed}, available {figures.available}"
    )
    click.echo(
        f"{'when (UTC)':<20} {'reason':<12} {'Δon_hand':>9} {'Δreserved':>9} {'Δcommitted':>10} "
        f"{'after: on_hand/reserved/committed':>34}  reference"
    )
    for m in history:
        after = f"{m.on_hand}/{m.reserved}/{m.committed}"
        click.echo(
            f"{m.created_at:%Y-%m-%d %H:%M:%S} {m.reason:<12} {m.on_hand_delta:>+9} "
            f"{m.reserved_delta:>+9} {m.committed_delta:>+10} {after:>34}  {m.reference or ''}"
        )
    if not history:
        click.echo("(no movements)")


@stock_cli.command("holds")
@click.argument("sku", required=False)
@click.option("--limit", default=100, show_default=True, help="How many holds, soonest end first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hold.")
@migrated
def holds_command(sku: str | None, limit: int, as_json: bool) -> None:
    """Print the live holds (of SKU, or of every SKU), the soonest to end first."""
    runtime = current_runtime()
    with queries.reading(runtime) as connection:
        if sku is not None and queries.sku_figures(connection, runtime.clock(), sku) is None:
            raise click.ClickException(f"unknown SKU {sku!r}")
        holds = queries.live_holds(connection, runtime.clock(), sku=sku, limit=limit)
    if as_json:
        for hold in holds:
            click.echo(json.dumps(queries.as_json(hold)))
        return
    click.echo(f"{'hold':<36} {'sku':<20} {'qty':>4} {'source':<8} {'ends in':>8}  holder")
    for h in holds:
        pending = " (pending: no cart webhook yet)" if h.pending else ""
        ends = f"{h.seconds_left // 60}:{h.seconds_left % 60:02d}"
        click.echo(
            f"{h.id:<36} {h.sku:<20} {h.quantity:>4} {h.source:<8} {ends:>8}  "
            f"{h.holder_hash or '-'}{pending}"
        )
    if not holds:
        click.echo("(no live holds)")


def _level(view: services.LevelView) -> dict[str, Any]:
    return {
        "sku": view.sku,
        "on_hand": view.on_hand,
        "reserved": view.reserved,
        "committed": view.committed,
        "available": view.available,
    }


def _row(view: services.LevelView) -> str:
    return (
        f"{view.sku:<24} {view.on_hand:>10} {view.reserved:>10} "
        f"{view.committed:>10} {view.available:>10}"
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(stock_cli)
