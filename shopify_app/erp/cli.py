"""``flask --app wsgi bling …``: the Bling connection for operators.

``bling_cli`` is the group every Bling command joins (``bling sync`` is added by the stock sync
module: import ``bling_cli`` and decorate with ``@bling_cli.command(...)``).
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from bling.errors import BlingNotConnected

from ..config import Settings
from ..runtime import current_runtime
from . import connection
from .tokens import ConnectionStatus

bling_cli = AppGroup("bling", help="Connect to Bling and work with it.")


@bling_cli.command("connect")
def connect_command() -> None:
    """Print the Bling authorization URL (valid 30 minutes, from any browser)."""
    runtime = current_runtime()
    try:
        url = connection.authorize_url(runtime)
    except BlingNotConnected as exc:
        raise click.ClickException(str(exc)) from None
    # The URL alone on stdout, so scripts can capture it; the explanation goes to stderr.
    click.echo(url)
    click.echo(
        "Open this URL in any browser, log in to Bling and approve the app; Bling then sends "
        f"you to {runtime.settings.app_url}/bling/callback. The link expires in "
        f"{int(connection.STATE_MAX_AGE.total_seconds() // 60)} minutes.",
        err=True,
    )


@bling_cli.command("status")
def status_command() -> None:
    """Print whether Bling is connected, and until when the access token lasts (no secrets)."""
    runtime = current_runtime()
    if not connection.is_configured(runtime.settings):
        click.echo("Bling is off: BLING_CLIENT_ID and BLING_CLIENT_SECRET are not set")
        return
    status = connection.token_store(runtime).status()
    if status.connected:
        expires = status.expires_at.isoformat() if status.expires_at else "?"
        since = status.connected_at.isoformat() if status.connected_at else "?"
        click.echo(f"connected since {since}; access token valid until {expires}")
        click.echo(f"Bling account (companyId): {status.company_id or 'not read yet'}")
        click.echo(f"deposit sold from: {_deposit_line(runtime.settings, status)}")
    elif status.lost_at is not None:
        click.echo(f"connection lost at {status.lost_at.isoformat()}: {status.lost_reason}")
    else:
        click.echo("not connected: run `flask --app wsgi bling connect`")


def _deposit_line(settings: Settings, status: ConnectionStatus) -> str:
    if settings.bling_deposit_id is not None:
        return f"{settings.bling_deposit_id} (BLING_DEPOSIT_ID)"
    if status.default_deposit_id is not None:
        return f"{status.default_deposit_id} (the account's default deposit, read from Bling)"
    return "unknown: BLING_DEPOSIT_ID is unset and no default deposit was read; no Bling work runs"


def init_app(app: Flask) -> None:
    app.cli.add_command(bling_cli)
