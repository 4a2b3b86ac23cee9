"""The stock ledger: its rules (``domain.py``), use cases (``services.py``, ``reservations.py``),
adapters (``repository.py``, the group commit in ``combiner.py`` and ``fast_path.py``) and entry
points (``views.py``: the ``/stock`` REST API; ``cli.py``: ``flask stock …``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def init_app(app: Flask) -> None:
    """Register the ``/stock`` routes and the ``stock`` commands (imported here, not above: the
    domain and the use cases load without Flask)."""
    from . import cli, views

    app.register_blueprint(views.bp)
    cli.init_app(app)
