"""Bling ERP (API v3) client and adapter.

Bling is the source of truth for stock (docs/architecture.md). This package holds what any Bling
v3 integration needs: OAuth2 with rotating refresh tokens (``oauth``), a rate-limited, retrying
``requests`` client with typed errors (``client``, ``errors``), products and balances
(``products``), the account's company id and deposits (``account``), contacts and sales orders
(``orders``) and webhook signatures (``webhooks``). It
never imports ``shopify_app`` (import-linter enforces this in CI): ``shopify_app/erp/`` adapts it.
"""
