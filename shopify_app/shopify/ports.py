"""The Shopify side's repository as a port: what the handlers need from its rows (receipts,
carts, variants), so they run over the in-memory fake of tests/support/fakes.py as well as over
the SQL repository (shopify/repository.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

#: A cart first seen is "never updated": any delivery about it is newer.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Cart:
    shop: str
    token: str
    checkout_token: str | None
    cart_updated_at: datetime
    ordered: bool


class ShopifyRepository(Protocol):
    def record_receipt(self, shop: str, webhook_id: str, topic: str) -> bool:
        """Note a delivery; False if it was seen before."""
        ...

    def lock_cart(self, shop: str, token: str) -> Cart:
        """Lock the cart's row (first of the transaction's locks), creating it on first sight."""
        ...

    def save_cart(self, cart: Cart, shortfalls: dict[str, int] | None = None) -> None: ...

    def cart_token_of_checkout(self, shop: str, checkout_token: str) -> str | None: ...

    def shortfalls(self, shop: str, token: str) -> dict[str, int]: ...

    def remember_variants(self, shop: str, mapping: dict[int, str]) -> None: ...

    def sku_of_variant(self, shop: str, variant_id: int) -> str | None: ...

    def forget_carts(self, shop: str, tokens: Iterable[str]) -> None: ...

    def erase_shop(self, shop: str) -> None: ...
