"""Bázico Stock Service: the Flask app factory.

The runtime (settings, engine, clock, outbox handlers) is built by ``bootstrap.py``; this wraps it
in a Flask app and registers each feature's routes and commands. docs/architecture.md shows the
layers and where each flow goes.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from .bootstrap import build_runtime
from .clock import Clock, utc_now
from .config import DEVELOPMENT_SECRET_KEY
from .runtime import EXTENSION_KEY

MAX_BODY_BYTES = 1024 * 1024


def create_app(environ: Mapping[str, str] | None = None, *, clock: Clock = utc_now) -> Flask:
    """Build the app from ``environ`` (default: the process environment).

    Raises ``ConfigError`` listing every problem with the environment. No database connection is
    opened here, so gunicorn can load the app in its master before forking workers.
    """
    runtime = build_runtime(environ, clock=clock)
    settings = runtime.settings

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key or DEVELOPMENT_SECRET_KEY,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        JSON_SORT_KEYS=False,
    )
    # app.json is typed as the JSONProvider base; the one Flask makes (DefaultJSONProvider) has it.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.session_interface = LazyCookieSessions()
    app.extensions[EXTENSION_KEY] = runtime

    from . import admin, catalog, db_cli, erp, ops, shopify, stock, worker
    from .outbox import cli as outbox_cli
    from .web import errors, openapi, security

    errors.init_app(app)
    security.init_app(app, default_shop=settings.shopify_shop_domain)
    ops.init_app(app)
    stock.init_app(app)
    erp.init_app(app)
    shopify.init_app(app)
    admin.init_app(app)
    outbox_cli.init_app(app)  # the outbox package's init is its API: the commands live apart
    catalog.init_app(app)
    db_cli.init_app(app)
    worker.init_app(app)
    openapi.init_app(app)  # last: spectree documents the routes registered so far
    return app


class LazyCookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building a signer for requests that carry no
    session cookie (every API and webhook call): an empty session is all they can have."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)
