"""The composition root: settings, logging, the engine and the outbox handlers, without Flask.

Both entry points start here: ``create_app`` (the Procfile's ``web`` and the command line) wraps
the runtime in a Flask app; ``python -m shopify_app.worker`` (the Procfile's ``worker``) runs the
background loop on it directly, with no app, blueprint or OpenAPI document built for nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from .clock import Clock, utc_now
from .config import load_settings
from .db.engine import make_engine
from .erp import connection as bling_connection
from .erp import forwarding as bling_forwarding
from .observability import logs
from .orders.forwarding import NullGateway
from .runtime import Runtime
from .shopify import order_edits


def build_runtime(environ: Mapping[str, str] | None = None, *, clock: Clock = utc_now) -> Runtime:
    """Read the environment (ConfigError lists every problem), set up logging, make the engine
    (no connection is opened yet) and register the outbox handlers of the ERP the settings name
    (Bling once its credentials are set; none with ERP_BACKEND=none)."""
    settings = load_settings(environ)
    logs.configure(settings.log_level)
    runtime = Runtime(settings, make_engine(settings), clock)
    if settings.erp_backend == "none":
        NullGateway.register(settings.bling_job_lease_seconds)  # no ERP: sales leave on_hand
    elif bling_connection.is_configured(settings):
        bling_forwarding.register(settings)  # until then, confirmed orders wait in the outbox
    order_edits.register()  # an edit's new lines are read from Shopify, whatever the ERP
    return runtime
