"""The Shopify side's ports: the repository the handlers need (receipts, carts, variants), and
what the stock publisher (shopify/publishing.py) publishes through (the dirty SKUs, the ledger
and the metafields last written, and Shopify's metafield mutations), so both run over the
in-memory fakes of tests/support/fakes.py as well as over SQL (shopify/repository.py,
shopify/publications.py) and Shopify (shopify/publisher.py)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from ..stock.dirty import Cleared, Mark
from .client import ThrottleStatus
from .stock_metafield import HoldEntries, variant_gid

#: A cart first seen is "never updated": any delivery about it is newer.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DuplicateDelivery(Exception):
    """The delivery was applied before: found when its receipt is written at commit
    (PostgreSQL), so everything the transaction did rolls back."""


class CartRaced(Exception):
    """A concurrent first delivery of the cart inserted its row while this one was taking its
    locks (``lock_cart_ahead``): run the delivery again."""


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

    def lock_cart(self, shop: str, token: str, variant_ids: Collection[int] = ()) -> Cart:
        """Lock the cart's row (first of the transaction's locks), creating it on first sight;
        ``variant_ids``: the variants ``remember_variants`` is to be given (a hint: their
        records may be read in the same round trip)."""
        ...

    def lock_cart_ahead(
        self, shop: str, token: str, variant_ids: Collection[int] = ()
    ) -> Callable[[], Cart]:
        """``lock_cart``, answered when the result is called (its statements may go out with
        the transaction's next round trip); CartRaced then if a concurrent first delivery
        inserted the row meanwhile."""
        ...

    def save_cart(self, cart: Cart, shortfalls: dict[str, int] | None = None) -> None: ...

    def cart_token_of_checkout(self, shop: str, checkout_token: str) -> str | None: ...

    def shortfalls(self, shop: str, token: str) -> dict[str, int]: ...

    def remember_variants(
        self, shop: str, mapping: dict[int, str], untracked: Collection[int] = ()
    ) -> None:
        """Record variant → SKU; forget the ``untracked`` variants (their SKU is not tracked)."""
        ...

    def sku_of_variant(self, shop: str, variant_id: int) -> str | None: ...

    def forget_carts(self, shop: str, tokens: Iterable[str]) -> None: ...

    def erase_shop(self, shop: str) -> None: ...


# --- the stock publisher ---------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class VariantRef:
    """A Shopify variant of a shop."""

    shop: str
    variant_id: int

    @property
    def gid(self) -> str:
        return variant_gid(self.variant_id)


@dataclass
class SkuSnapshot:
    """What publishing one SKU needs, read in one consistent snapshot of the database."""

    sku: str
    #: (on_hand, reserved, committed); None when the ledger does not track the SKU.
    figures: tuple[int, int, int] | None
    #: Its live holds summed per cart line: the first MAX_HOLD_ENTRIES lines in the bound's
    #: order (stock_metafield.ranked), and how many are live in all.
    entries: HoldEntries = field(default_factory=lambda: HoldEntries({}))
    #: The variants that carry the SKU now.
    variants: list[VariantRef] = field(default_factory=list)
    #: The metafields last written for the SKU: variant -> value.
    published: dict[VariantRef, str] = field(default_factory=dict)
    #: Of those, the variants that now carry another SKU the ledger tracks (that SKU's
    #: publish writes them; nothing is deleted).
    moved: set[VariantRef] = field(default_factory=set)


@dataclass(frozen=True)
class Written:
    variant: VariantRef
    sku: str
    value: str
    lag_seconds: float


@dataclass
class RoundOutcome:
    """What a round did, for the store to record in one transaction."""

    #: When the snapshot was read: a mark changed during the publish is due from then on.
    read_at: datetime
    #: Published marks and the follow-up each leaves (a hold's expiry), or None.
    done: list[tuple[Mark, datetime | None]] = field(default_factory=list)
    #: Marks given back unpublished, due again at the time given (None: at once).
    retry: list[tuple[Mark, datetime | None]] = field(default_factory=list)
    written: list[Written] = field(default_factory=list)
    #: Metafields deleted: the variant no longer carries a SKU the ledger tracks.
    deleted: list[VariantRef] = field(default_factory=list)
    #: Variants Shopify no longer has: their mapping and record are dropped.
    forgotten: list[VariantRef] = field(default_factory=list)


class PublicationStore(Protocol):
    def claim(self, now: datetime, limit: int) -> list[Mark]:
        """Take due dirty SKUs that can be published now: a variant carries them (or did, or
        the SKU is not tracked), and none of their variants was written less than the minimum
        interval ago."""
        ...

    def snapshot(self, skus: list[str], now: datetime) -> dict[str, SkuSnapshot]:
        """Every SKU of ``skus``, read in one snapshot (figures and holds agree)."""
        ...

    def finish(self, outcome: RoundOutcome, now: datetime) -> list[Cleared]:
        """Record what was written and deleted, then clear or release each mark
        (compare-and-clear), in one transaction; the result of each ``done`` mark."""
        ...


@dataclass(frozen=True)
class SetAnswer:
    """``metafieldsSet``'s answer: nothing is written when any entry is refused (Shopify's
    mutation is atomic), so the refused entries are named by their index in the call."""

    refused: dict[int, str] = field(default_factory=dict)
    #: Of the refused, those whose owner Shopify no longer has (a deleted variant).
    gone: set[int] = field(default_factory=set)
    throttle: ThrottleStatus | None = None


class CannotPublish(Exception):
    """No call can be made for the shop now (no usable token): ``reason`` is the metric's."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class MetafieldWriter(Protocol):
    def set(self, shop: str, entries: list[tuple[VariantRef, str]]) -> SetAnswer:
        """Write each variant's stock metafield (at most 25); raise client.ShopifyError or
        CannotPublish when the call did not happen or failed as a whole."""
        ...

    def delete(self, shop: str, variants: list[VariantRef]) -> ThrottleStatus | None:
        """Delete the variants' stock metafields (absent ones are fine); raise as ``set``."""
        ...
