"""The variant stock metafield the checkout validation function reads, built from the ledger.

The contract is the function's (extensions/bazico-checkout-validation/README.md, "The
metafield"): namespace ``$app:bazico``, key ``stock``, type ``json``, value
``{"v":1,"free":N,"h":{"<line hold id>":units}}``:

- ``free`` is the SKU's ledger ``available`` (on hand − reserved − committed) as it is, even
  negative: the units no live hold covers;
- ``h`` maps the id each cart line carries (``_bazico_hold``: a hold's ``line_id``) to the units
  of the live holds with that id. A hold past its expiry is left out (the function has no clock:
  it would count until removed); its units stay out of ``free`` until the sweeper expires it, so
  leaving it out can only refuse its owner, never oversell;
- at most :data:`MAX_HOLD_ENTRIES` entries (Shopify reads 10,000 bytes of a value). When more
  line ids are live, the ones most likely to check out are kept (their cart reached checkout,
  then the latest expiry); the others are left out and counted, and their units are **not**
  added to ``free``.

Plain Python (standard library only): the publisher (shopify/publishing.py) builds each
variant's value here and checks it against the contract before writing it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

NAMESPACE = "$app:bazico"
KEY = "stock"
TYPE = "json"
VERSION = 1
#: The function README's bound: 200 entries of 36-character ids stay under 8,700 bytes.
MAX_HOLD_ENTRIES = 200
#: What Shopify reads of a metafield's value in a function's input query.
MAX_VALUE_BYTES = 10_000


@dataclass(frozen=True)
class LiveHold:
    """An active hold as the publisher reads it."""

    line_id: uuid.UUID
    quantity: int
    expires_at: datetime
    #: Its cart reached checkout (a checkout webhook named it): the likeliest to be bought.
    at_checkout: bool = False


@dataclass(frozen=True)
class StockValue:
    """A variant's metafield value and what building it decided."""

    free: int
    holds: dict[str, int]
    #: Line ids live but left out by the bound.
    left_out: int
    #: The earliest expiry among the holds written: the value is wrong from then on, so the
    #: publisher writes it again then.
    next_expiry: datetime | None
    text: str


@dataclass
class _Line:
    units: int = 0
    at_checkout: bool = False
    latest: datetime | None = None
    earliest: datetime | None = None

    def add(self, hold: LiveHold) -> None:
        self.units += hold.quantity
        self.at_checkout = self.at_checkout or hold.at_checkout
        self.latest = hold.expires_at if self.latest is None else max(self.latest, hold.expires_at)
        self.earliest = (
            hold.expires_at if self.earliest is None else min(self.earliest, hold.expires_at)
        )


def stock_value(
    on_hand: int, reserved: int, committed: int, holds: Iterable[LiveHold], now: datetime
) -> StockValue:
    """The value for a SKU's figures and its active holds at ``now``."""
    lines: dict[uuid.UUID, _Line] = {}
    for hold in holds:
        if hold.expires_at > now and hold.quantity > 0:
            lines.setdefault(hold.line_id, _Line()).add(hold)
    ranked = sorted(
        lines.items(),
        key=lambda item: (
            not item[1].at_checkout,
            -(item[1].latest.timestamp() if item[1].latest else 0.0),
            str(item[0]),
        ),
    )
    kept = ranked[:MAX_HOLD_ENTRIES]
    entries = {str(line_id): line.units for line_id, line in sorted(kept, key=lambda i: str(i[0]))}
    free = on_hand - reserved - committed
    expiries = [line.earliest for _, line in kept if line.earliest is not None]
    return StockValue(
        free=free,
        holds=entries,
        left_out=len(ranked) - len(kept),
        next_expiry=min(expiries) if expiries else None,
        text=encode(free, entries),
    )


def encode(free: int, holds: dict[str, int]) -> str:
    """The compact JSON the function parses (``{"v":1,"free":N,"h":{…}}``)."""
    return json.dumps({"v": VERSION, "free": free, "h": holds}, separators=(",", ":"))


def contract_problems(text: str) -> list[str]:
    """Why ``text`` breaks the function's contract; empty when it keeps it. The function passes
    a malformed value unchecked, so the publisher checks each one before writing it."""
    if len(text.encode("utf-8")) > MAX_VALUE_BYTES:
        return [f"value is {len(text.encode('utf-8'))} bytes, over {MAX_VALUE_BYTES}"]
    try:
        value = json.loads(text)
    except ValueError:
        return ["value is not JSON"]
    if not isinstance(value, dict):
        return ["value is not an object"]
    problems = []
    if value.get("v") != VERSION or isinstance(value.get("v"), bool):
        problems.append(f'"v" is not {VERSION}')
    free = value.get("free")
    if not isinstance(free, int) or isinstance(free, bool):
        problems.append('"free" is not an integer')
    holds = value.get("h", {})
    if not isinstance(holds, dict):
        problems.append('"h" is not an object')
    else:
        if len(holds) > MAX_HOLD_ENTRIES:
            problems.append(f'"h" has {len(holds)} entries, over {MAX_HOLD_ENTRIES}')
        for key, units in holds.items():
            if not isinstance(units, int) or isinstance(units, bool) or units < 0:
                problems.append(f'"h"[{key!r}] is not an integer >= 0')
                break
    return problems


def variant_gid(variant_id: int) -> str:
    return f"gid://shopify/ProductVariant/{variant_id}"
