"""What the stock use cases need from storage: the port the SQL repository implements, and that
tests/support/fakes.py implements in memory, so every use case is unit-tested without a database.

The locking contract is part of the port: ``lock`` takes the SKU rows (sorted) and
``lock_holder`` the holder, so that what is read after them is current until the transaction
ends. A fake runs one transaction at a time, which keeps that contract trivially.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Protocol

from .domain import Hold, StockLevel


class StockRepository(Protocol):
    def lock(self, sku_list: Iterable[str], *, missing_ok: bool = False) -> dict[str, StockLevel]:
        """Lock the rows of ``sku_list`` in sorted order; UnknownSku if one is absent (unless
        ``missing_ok``: then it is left out)."""
        ...

    def lock_holder(self, holder: str) -> None:
        """Serialize with every other transaction of ``holder`` (taken before any SKU row)."""
        ...

    def lock_for_holder(
        self, holder: str, sku_list: Iterable[str]
    ) -> tuple[dict[str, StockLevel], list[Hold]]:
        """``lock_holder``, then the rows of ``sku_list`` and of the holder's active holds
        (sorted; SKUs not tracked left out), then its active holds, oldest first."""
        ...

    def lock_or_create(self, sku: str) -> StockLevel:
        """Lock one SKU's row, creating it with zero stock first if it does not exist."""
        ...

    def due_holds(self, sku: str) -> list[Hold]:
        """Active holds of ``sku`` whose time is up (call with the SKU locked)."""
        ...

    def skus_with_due_holds(self, limit: int) -> list[str]:
        """SKUs with an active hold past its time (a hint: lock before acting)."""
        ...

    def holds_by_id(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Hold]: ...

    def active_holds_of(self, holder: str) -> list[Hold]:
        """The holder's active holds, oldest first."""
        ...

    def holds_confirmed_for(self, holder: str, order_refs: Iterable[str]) -> list[Hold]: ...

    def add_hold(self, hold: Hold) -> None:
        """A hold made in this transaction (written with the rest on commit)."""
        ...

    def forget_holders(self, holders: Iterable[str] | None) -> None:
        """Privacy: drop these holders (None: every one) from holds."""
        ...

    def levels(self, sku: str | None = None) -> list[tuple[StockLevel, int]]:
        """Each SKU's row (or one) with the units of its holds that are due but not expired."""
        ...

    def movement_totals(self) -> dict[str, tuple[int, int, int]]:
        """Per SKU, the sums of the movements' deltas (on_hand, reserved, committed)."""
        ...

    def active_hold_totals(self) -> dict[str, int]:
        """Per SKU, the units of its active holds."""
        ...
