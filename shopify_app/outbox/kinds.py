"""The kinds of outbox job the service writes, and who writes them.

- ``FORWARD_ORDER``: a Shopify order confirmed here (shopify/handlers.py, orders/create|paid) must
  become a Bling sales order with its stock posted. Payload ``{"shop", "order_id"}``; key
  ``"{shop}:{order_id}"``. The handler must re-read the order: it may have been cancelled since.
- ``REVERSE_ORDER``: an order that reached Bling was cancelled in Shopify (orders/cancelled): its
  stock posting must be reversed. Same payload and key.
- ``CANCEL_ORDER``: a cancelled order's Bling sales order must move to Bling's cancelled
  situation, so the warehouse does not ship it; queued by the cancellation (orders/services.py)
  or, once the stock posting is reversed, by the reversal (orders/forwarding.py). Same payload
  and key.

- ``STOCK_ENTRY``: a refund or an order edit changed an order whose sales order Bling may have
  made already: the difference goes into Bling's stock (orders/adjustments.py). Payload
  ``{"shop", "order_id", "adjustment"}``; key ``"{shop}:{order_id}:{adjustment}"``. Queued by the
  adjustment of an acknowledged order, or by the acknowledgement of one adjusted before.

- ``EDIT_LINES``: an order edit added lines the order did not have, and ``orders/edited`` names
  them by id only (no SKU): their SKUs are read from Shopify's Admin GraphQL and the additions
  applied (orders/adjustments.py, shopify/order_edits.py). Payload ``{"shop", "order_id",
  "adjustment", "lines": [{"id", "quantity"}]}``; key ``"{shop}:{order_id}:{adjustment}"``.
  Queued by the edit's adjustment; registered by the composition root (bootstrap.py) whatever
  the ERP.

The ERP kinds' handlers are registered by the Bling integration; until then the jobs wait,
pending.
"""

from __future__ import annotations

FORWARD_ORDER = "bling.forward_order"
REVERSE_ORDER = "bling.reverse_order"
CANCEL_ORDER = "bling.cancel_order"
STOCK_ENTRY = "bling.stock_entry"
EDIT_LINES = "shopify.edit_lines"
