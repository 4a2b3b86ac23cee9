"""The app's side of Bling: where the Bling connection lives in this service.

``bling/`` (top level) is a Bling API client a stranger could reuse; this package plugs it into the
app's database and configuration:

- ``tables.py``: ``bling_connection`` (the OAuth tokens, encrypted) and ``bling_rate_limit`` (the
  next free request slot of the Bling account, shared by every process);
- ``tokens.py``: ``SqlTokenStore``, the row-locked token store behind single-flight refreshes;
- ``ratelimit.py``: ``SqlRateLimiter``, Bling's 3 requests/second kept across processes and dynos;
- ``connection.py``: ``bling_client(runtime)``, the one factory the rest of the app uses, and the
  signed ``state`` of the authorization flow;
- ``account.py``: what is known of the connected account (its company id, its default deposit)
  and the one deposit sold from and posted to;
- ``views.py`` (``/bling/connect``, ``/bling/callback``) and ``cli.py`` (``flask bling …``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def init_app(app: Flask) -> None:
    """Register the Bling routes (connect, callback, webhooks) and the ``bling`` commands."""
    from . import cli, sync_cli, views, webhooks

    app.register_blueprint(webhooks.bp)
    app.register_blueprint(views.bp)
    cli.init_app(app)
    sync_cli.init_app(app)
