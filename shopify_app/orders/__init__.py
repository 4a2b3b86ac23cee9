"""The order's life: the ``Order`` aggregate (its lines, its Bling state, the transitions between
them) independent of Shopify's payload shapes and of Bling's protocol."""
