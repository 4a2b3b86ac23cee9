"""The Shopify side of the app: webhooks in, the App Proxy for the storefront, OAuth install.

Every call into the ShopifyAPI library goes through ``client.py`` only: that library is
deprecated upstream, and its successor's import name (``shopify_app``) clashes with ours, so the
switch must touch one module.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the Shopify blueprints and CLI commands."""
    from . import proxy, webhooks

    app.register_blueprint(webhooks.bp)
    app.register_blueprint(proxy.bp)

    from . import enforce_cli, inventory_cli, oauth, registration

    app.register_blueprint(oauth.bp)
    # ``enforce`` and ``inventory`` are defined in their own modules on the ``shopify`` group.
    registration.shopify_cli.add_command(enforce_cli.enforce_command)
    registration.shopify_cli.add_command(inventory_cli.inventory_command)
    app.cli.add_command(registration.shopify_cli)
