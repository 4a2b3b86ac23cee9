"""Bling ERP (API v3) client and adapter.

Its place in the architecture (DESIGN.md): Bling is the source of truth for stock. This package
will hold the OAuth2 token handling, a rate-limited ``requests`` client, the stock sync that feeds
``on_hand``, and the order forwarder the worker calls from the outbox. It is a client a stranger
could reuse: it never imports ``shopify_app`` (import-linter enforces this in CI); the app calls it
through a port the services define, with a null implementation when Bling is not configured.
"""
