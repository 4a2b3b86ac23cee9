"""The kinds of outbox job the service writes, and who writes them.

- ``FORWARD_ORDER``: a Shopify order confirmed here (shopify/handlers.py, orders/create|paid) must
  become a Bling sales order with its stock posted. Payload ``{"shop", "order_id"}``; key
  ``"{shop}:{order_id}"``. The handler must re-read the order: it may have been cancelled since.
- ``REVERSE_ORDER``: an order that reached Bling was cancelled in Shopify (orders/cancelled): its
  stock posting must be reversed. Same payload and key.

Their handlers are registered by the Bling integration; until then the jobs wait, pending.
"""

from __future__ import annotations

FORWARD_ORDER = "bling.forward_order"
REVERSE_ORDER = "bling.reverse_order"
