"""``flask --app wsgi outbox …``: the queue for operators (figures, dead letters, retry)."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from ..orders.repository import life_figures
from ..runtime import Runtime, current_runtime
from . import service
from .registry import default_registry

outbox_cli = AppGroup("outbox", help="Inspect the outbox and re-queue dead-lettered jobs.")


@outbox_cli.command("retry")
@click.argument("job_id", metavar="[ID]", type=int, required=False)
def retry_command(job_id: int | None) -> None:
    """Re-queue the dead job ID, or every dead job, with fresh attempts."""
    runtime = current_runtime()
    count = service.retry_dead(runtime, job_id)
    if job_id is not None and count == 0:
        job = service.get_job(runtime, job_id)
        if job is None:
            raise click.ClickException(f"no outbox job {job_id}")
        raise click.ClickException(f"job {job_id} is {job.status}, not dead; nothing to retry")
    click.echo(f"re-queued {count} dead job(s)")


@outbox_cli.command("show")
@click.option("--limit", default=20, show_default=True, help="How many dead jobs to list.")
def show_command(limit: int) -> None:
    """Print depth and age per kind, pauses and dead jobs."""
    runtime = current_runtime()
    figures = service.queue_figures(runtime)
    click.echo(f"{'kind':<32} {'pending':>8} {'leased':>8} {'dead':>8} {'oldest pending':>15}")
    for kind in sorted(figures.kinds):
        f = figures.kinds[kind]
        oldest = f.oldest_pending_age_seconds
        age = "-" if oldest is None else f"{oldest:.0f}s"
        click.echo(f"{kind:<32} {f.pending:>8} {f.leased:>8} {f.dead:>8} {age:>15}")
    if not figures.kinds:
        click.echo("(no pending or dead jobs)")
    for kind, pause in sorted(figures.paused.items()):
        click.echo(f"paused {kind} until {pause.until.isoformat()}: {pause.reason or ''}")
    reasons = why_waiting(runtime, figures)
    if reasons:
        click.echo("why jobs wait:")
    for kind, reason in reasons:
        click.echo(f"  {kind}: {reason}")
    dead = service.dead_jobs(runtime, limit=limit)
    if dead:
        click.echo("dead jobs (newest first; `outbox retry ID` re-queues one):")
    for job in dead:
        click.echo(
            f"  #{job.id} {job.kind} key={job.key} attempts={job.attempts} "
            f"died={job.updated_at.isoformat()} error={job.last_error or ''}"
        )
    _show_orders(limit)


def _show_orders(limit: int) -> None:
    """The orders behind the order kinds that wait on the ERP or on a person."""
    with current_runtime().uow(read_only=True) as uow:
        orders = life_figures(uow.connection, limit=limit)
    click.echo(
        f"orders: {orders.awaiting_payment} awaiting payment (not sent to Bling until paid); "
        f"{orders.to_cancel} cancelled whose Bling sales order is not cancelled yet"
    )
    if orders.cancel_refused:
        click.echo("Bling refused to cancel (cancel it by hand in Bling, or fix and retry):")
    for order in orders.cancel_refused:
        click.echo(f"  {order.name or order.order_id} bling_order={order.erp_order_id}")
    if orders.foreign:
        click.echo(
            "not forwarded: Bling has a sales order with their number that this service did not "
            "create (turn off Bling's own Shopify order import; see the README):"
        )
    for order in orders.foreign:
        click.echo(f"  {order.name or order.order_id} (order {order.order_id})")


def why_waiting(runtime: Runtime, figures: service.QueueFigures) -> list[tuple[str, str]]:
    """One line per kind with pending jobs: what keeps them from being done."""
    found = []
    details = service.waiting(runtime)
    registered = default_registry.kinds()
    for kind in sorted(details):
        entry = details[kind]
        pause = figures.paused.get(kind)
        settings = runtime.settings
        bling_off = settings.erp_backend == "bling" and settings.bling_client_id is None
        if kind.startswith("bling.") and bling_off:
            reason = "Bling is not configured (BLING_CLIENT_ID and BLING_CLIENT_SECRET unset)"
            found.append((kind, f"{reason}; the jobs wait, pending"))
            continue
        if kind not in registered:
            reason = "no handler is registered for this kind in this configuration"
            found.append((kind, f"{reason}; the jobs wait, pending"))
            continue
        if pause is not None:
            found.append((kind, f"paused until {pause.until.isoformat()}: {pause.reason or ''}"))
            continue
        parts = []
        if entry.due_now:
            parts.append(f"{entry.due_now} due now (is the worker running?)")
        if entry.leased:
            parts.append(f"{entry.leased} being run by a worker")
        if entry.backing_off and entry.next_due_at is not None:
            parts.append(
                f"{entry.backing_off} retrying after an error, next at "
                f"{entry.next_due_at.isoformat()}"
            )
        if entry.last_error:
            parts.append(f"last error: {entry.last_error}")
        found.append((kind, "; ".join(parts)))
    return found


def init_app(app: Flask) -> None:
    app.cli.add_command(outbox_cli)
