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


@dataclass(frozen=True)
class HoldLine:
    """The live holds of one cart line (one line id) on a SKU, as ``h`` counts them."""

    line_id: uuid.UUID
    units: int
    latest_expiry: datetime
    earliest_expiry: datetime
    at_checkout: bool = False


def hold_lines(holds: Iterable[LiveHold], now: datetime) -> list[HoldLine]:
    """The live holds (not past their time at ``now``) summed per line id, in the bound's
    order (:func:`ranked`)."""
    lines: dict[uuid.UUID, HoldLine] = {}
    for hold in holds:
        if hold.expires_at <= now or hold.quantity <= 0:
            continue
        found = lines.get(hold.line_id)
        if found is None:
            found = HoldLine(hold.line_id, 0, hold.expires_at, hold.expires_at, False)
        lines[hold.line_id] = HoldLine(
            hold.line_id,
            found.units + hold.quantity,
            max(found.latest_expiry, hold.expires_at),
            min(found.earliest_expiry, hold.expires_at),
            found.at_checkout or hold.at_checkout,
        )
    return ranked(lines.values())


def ranked(lines: Iterable[HoldLine]) -> list[HoldLine]:
    """The bound's order: carts at checkout first, then the latest expiry, then the id. The
    publisher's SQL ranks the same way, so it reads only the lines that fit."""
    return sorted(
        lines,
        key=lambda line: (
            not line.at_checkout,
            -line.latest_expiry.timestamp(),
            str(line.line_id),
        ),
    )


def stock_value(
    on_hand: int, reserved: int, committed: int, holds: Iterable[LiveHold], now: datetime
) -> StockValue:
    """The value for a SKU's figures and its active holds at ``now``."""
    return value_of_lines(on_hand, reserved, committed, hold_lines(holds, now))


@dataclass(frozen=True)
class HoldEntries:
    """What ``h`` is made of for one SKU: the kept lines' units by line id (its text), the
    earliest expiry among them, and how many lines are live in all (kept or not)."""

    units: dict[str, int]
    next_expiry: datetime | None = None
    line_count: int = 0

    @classmethod
    def of(cls, lines: list[HoldLine], line_count: int | None = None) -> HoldEntries:
        """The entries of ``lines`` (ranked, :func:`ranked`): the first MAX_HOLD_ENTRIES of
        them, of ``line_count`` in all (default ``len(lines)``: more when only the first were
        read)."""
        kept = lines[:MAX_HOLD_ENTRIES]
        return cls(
            {str(line.line_id): line.units for line in kept},
            min((line.earliest_expiry for line in kept), default=None),
            len(lines) if line_count is None else max(line_count, len(lines)),
        )


def value_of_lines(
    on_hand: int,
    reserved: int,
    committed: int,
    lines: list[HoldLine],
    line_count: int | None = None,
) -> StockValue:
    """The value for a SKU's figures and its live hold lines, ranked (:func:`ranked`), of which
    there are ``line_count`` in all (default ``len(lines)``: more when only the first were read).
    """
    return value_of_entries(on_hand, reserved, committed, HoldEntries.of(lines, line_count))


def value_of_entries(
    on_hand: int, reserved: int, committed: int, entries: HoldEntries
) -> StockValue:
    """The value for a SKU's figures and the entries of its live holds (at most
    MAX_HOLD_ENTRIES of them; the publisher's SQL builds them, ``HoldEntries.of`` from lines)."""
    kept = dict(sorted(entries.units.items()))
    free = on_hand - reserved - committed
    return StockValue(
        free=free,
        holds=kept,
        left_out=max(entries.line_count, len(kept)) - len(kept),
        next_expiry=entries.next_expiry,
        text=encode(free, kept),
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
