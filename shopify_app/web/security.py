"""Headers every HTML answer carries: who may frame it (Shopify's admin and the shop only).

``Content-Security-Policy: frame-ancestors https://{shop} https://admin.shopify.com`` is what
Shopify asks of an embedded app, per shop (research: checkout_enforcement.md §3.1). The shop is
the one the request proved (``g.frame_shop``, set by the admin pages once a session token or a
signed query named it), else the configured ``SHOPIFY_SHOP_DOMAIN``; with neither, only
Shopify's admin may frame the page.
"""

from __future__ import annotations

from flask import Flask, Response, g

SHOPIFY_ADMIN = "https://admin.shopify.com"


def frame_ancestors(shop: str | None) -> str:
    sources = [f"https://{shop}"] if shop else []
    return "frame-ancestors " + " ".join([*sources, SHOPIFY_ADMIN])


def init_app(app: Flask, *, default_shop: str | None) -> None:
    def protect(response: Response) -> Response:
        if response.mimetype == "text/html":
            shop = g.get("frame_shop") or default_shop
            response.headers["Content-Security-Policy"] = frame_ancestors(shop)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    app.after_request(protect)
