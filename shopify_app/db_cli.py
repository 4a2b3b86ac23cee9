"""``flask --app wsgi db …``: schema migrations (the Procfile's ``release`` runs ``db upgrade``)."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from . import migrations_runner
from .runtime import current_runtime

db_cli = AppGroup("db", help="Database schema migrations (Alembic).")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def upgrade_command(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    migrations_runner.upgrade(current_runtime().engine, revision)
    click.echo(f"database at {revision}")


@db_cli.command("downgrade")
@click.argument("revision")
def downgrade_command(revision: str) -> None:
    """Revert migrations down to REVISION (use 'base' for an empty database)."""
    migrations_runner.downgrade(current_runtime().engine, revision)
    click.echo(f"database at {revision}")


@db_cli.command("check")
def check_command() -> None:
    """Fail if the models and the migrations differ."""
    migrations_runner.check(current_runtime().engine)
    click.echo("no drift between models and migrations")


def init_app(app: Flask) -> None:
    app.cli.add_command(db_cli)
