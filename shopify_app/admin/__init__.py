"""The merchant's and operator's view: the embedded app's pages inside Shopify's admin
(``views.py``: Agora, SKU, Pedidos, Saúde, and ``/``, the app's entry), what they read
(``queries.py``, ``health.py``, ``rates.py``), what they do (``actions.py``), their words
(``texts.py``), and the operator commands that show the same (``cli.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def init_app(app: Flask) -> None:
    """Register the admin pages and their JSON calls, and the ``orders`` commands."""
    from . import cli, views

    app.register_blueprint(views.bp)
    cli.init_app(app)
