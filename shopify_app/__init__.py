"""Bázico Stock Service: the Flask app factory.

Where things are: ``stock/`` holds the ledger (domain rules, the locked repository, use cases, the
REST views and CLI); ``web/`` the HTTP plumbing (errors, auth, OpenAPI, health); ``worker.py`` the
background loop; ``bling/`` (top level) the Bling ERP client.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from .clock import Clock, utc_now
from .config import DEVELOPMENT_SECRET_KEY, load_settings
from .db.engine import make_engine
from .observability import logs
from .runtime import EXTENSION_KEY, Runtime

MAX_BODY_BYTES = 1024 * 1024


def create_app(environ: Mapping[str, str] | None = None, *, clock: Clock = utc_now) -> Flask:
    """Build the app from ``environ`` (default: the process environment).

    Raises ``ConfigError`` listing every problem with the environment. No database connection is
    opened here, so gunicorn can load the app in its master before forking workers.
    """
    settings = load_settings(environ)
    logs.configure(settings.log_level)

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key or DEVELOPMENT_SECRET_KEY,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.session_interface = LazyCookieSessions()
    app.extensions[EXTENSION_KEY] = Runtime(settings, make_engine(settings), clock)

    from . import db_cli, ops, shopify, worker
    from .erp import cli as bling_cli
    from .erp import connection as bling_connection
    from .erp import forwarding as bling_forwarding
    from .erp import sync_cli as bling_sync_cli
    from .erp import views as bling_views
    from .erp import webhooks as bling_webhooks
    from .outbox import cli as outbox_cli
    from .stock import cli as stock_cli
    from .stock import views as stock_views
    from .web import errors, openapi

    errors.init_app(app)
    ops.init_app(app)
    app.register_blueprint(stock_views.bp)
    app.register_blueprint(bling_webhooks.bp)
    shopify.init_app(app)
    app.register_blueprint(bling_views.bp)
    bling_cli.init_app(app)
    bling_sync_cli.init_app(app)
    stock_cli.init_app(app)
    db_cli.init_app(app)
    worker.init_app(app)
    outbox_cli.init_app(app)
    openapi.init_app(app)  # last: spectree documents the routes registered so far
    if bling_connection.is_configured(settings):
        bling_forwarding.register(settings)  # until then, confirmed orders wait in the outbox
    return app


class LazyCookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building a signer for requests that carry no
    session cookie (every API and webhook call): an empty session is all they can have."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)
