"""``flask --app wsgi orders …``: the orders and their way to Bling, as the Pedidos page shows
them (``stock history`` and ``stock holds`` are in ``stock/cli.py``)."""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup

from ..migrations_runner import schema_problem
from ..runtime import current_runtime
from . import order_queries, queries

orders_cli = AppGroup("orders", help="Show the orders sold here and their state in Bling.")


@orders_cli.command("show")
@click.argument("order_id", metavar="[ID]", type=int, required=False)
@click.option(
    "--state",
    type=click.Choice(order_queries.ORDER_STATES),
    default="all",
    show_default=True,
    help="Only the orders in this state (dead: their Bling job gave up).",
)
@click.option("--limit", default=50, show_default=True, help="How many orders, newest first.")
@click.option("--json", "as_json", is_flag=True, help="JSON (one object per order).")
def show_command(order_id: int | None, state: str, limit: int, as_json: bool) -> None:
    """Print order ID (Shopify's id) with its lines and Bling job, or the latest orders."""
    runtime = current_runtime()
    problem = schema_problem(runtime.engine)
    if problem is not None:
        raise click.ClickException(problem)
    with queries.reading(runtime) as connection:
        if order_id is not None:
            order = order_queries.get_order(connection, order_id)
            if order is None:
                raise click.ClickException(f"no order {order_id}")
            found = [order]
        else:
            found = order_queries.list_orders(connection, state=state, limit=limit)
    if as_json:
        for order in found:
            click.echo(json.dumps(queries.as_json(order) | {"state": order.state}))
        return
    if order_id is not None:
        _detail(found[0])
        return
    click.echo(
        f"{'order':>14} {'name':<10} {'placed (UTC)':<19} {'state':<16} {'bling':>10}  error"
    )
    for order in found:
        error = order.job.last_error if order.job and order.job.status != "done" else ""
        click.echo(
            f"{order.order_id:>14} {order.name or '-':<10} {order.created_at:%Y-%m-%d %H:%M:%S} "
            f"{order.state:<16} {order.bling_order_id or '-':>10}  {error or ''}"
        )
    if not found:
        click.echo("(no orders)")


def _detail(order: order_queries.OrderRow) -> None:
    click.echo(f"order {order.order_id} {order.name or ''} ({order.shop})")
    click.echo(f"  placed      {order.created_at.isoformat()}; status {order.status}")
    click.echo(
        f"  bling       {order.state} (forward {order.forward_status}, stock posting "
        f"{order.bling_stock}, sales order {order.bling_order_id or '-'})"
    )
    if order.oversold:
        click.echo("  OVERSOLD    Shopify sold units the ledger could not cover")
    job = order.job
    if job is not None:
        click.echo(
            f"  job         #{job.id} {job.kind} {job.status}, {job.attempts} attempt(s), "
            f"due {job.due_at.isoformat()}"
        )
        if job.last_error and job.status != "done":
            click.echo(f"  last error  {job.last_error}")
        if job.status == "dead":
            click.echo(f"  retry with  flask --app wsgi outbox retry {job.id}")
    for line in order.lines:
        click.echo(
            f"  line        {line.sku} x{line.quantity} (from holds {line.from_holds}, from "
            f"available {line.from_available}, oversold {line.oversold})"
            + (f", {line.removed} refunded or edited away" if line.removed else "")
        )


def init_app(app: Flask) -> None:
    app.cli.add_command(orders_cli)
