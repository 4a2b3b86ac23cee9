"""``flask --app wsgi bling sync``: a full stock sync from Bling, by hand (README, Command line).

The worker runs the same sync on a schedule (stock_sync.reconcile); this is for the first fill
after connecting Bling, and for an operator who does not want to wait for the next round.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click
from flask import Flask

from bling.errors import BlingError, BlingNotConnected

from ..runtime import current_runtime
from .cli import bling_cli
from .connection import bling_client, ensure_account
from .stock_sync import configured_deposit, full_sync
from .sync_progress import SyncProgress


@bling_cli.command("sync")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object on stdout.")
def sync_command(as_json: bool) -> None:
    """Read every active Bling product and its balance in the deposit sold from (BLING_DEPOSIT_ID,
    else the account's default), and set on_hand to match (race-free).

    Progress (pages read, products, time left) goes to stderr: one live line on a terminal,
    a line every few requests otherwise."""
    runtime = current_runtime()
    stderr = sys.stderr
    progress = SyncProgress(
        stderr,
        tty=stderr.isatty(),
        requests_per_second=runtime.settings.bling_requests_per_second,
    )
    try:
        ensure_account(runtime)  # the default deposit, the company id: asked once, then stored
        with bling_client(runtime) as client:
            deposit = configured_deposit(runtime.settings)
            report = full_sync(runtime, progress.track(client), deposit_id=deposit)
    except BlingNotConnected as exc:  # DepositUnknown too, with what to do about it
        raise click.ClickException(str(exc)) from None
    except BlingError as exc:
        # What was applied before the failure stays applied: each batch commits on its own.
        raise click.ClickException(f"Bling failed during the sync: {exc}") from None
    finally:
        progress.finish()
    if as_json:
        click.echo(json.dumps(asdict(report)))
        return
    click.echo(
        f"products: {report.products}, SKUs updated: {report.updated}, "
        f"unchanged: {report.unchanged}, created: {report.created} (deposit {deposit})"
    )
    if report.skipped:
        click.echo(f"{report.skipped} SKU(s) kept a newer balance from a Bling webhook")
    if report.duplicate_skus:
        click.echo(
            f"warning: {report.duplicate_skus} SKU(s) belong to more than one active Bling "
            "product; the first product's stock was used",
            err=True,
        )


def init_app(app: Flask) -> None:
    """Attach ``bling sync`` (importing this module did) and make sure the group is registered."""
    app.cli.add_command(bling_cli)
