"""Bling webhooks (v3): signature check and event parsing (docs/bling-api.md §5).

- Signature: ``X-Bling-Signature-256: sha256=<hex>``, the HMAC-SHA256 of the **raw** body keyed
  with the app's client secret. Check it on the bytes as received, before parsing: re-serialised
  JSON is different bytes.
- Envelope: ``{"eventId", "date", "version", "event": "<resource>.<action>", "companyId",
  "data"}``. Deliveries repeat and arrive out of order: de-duplicate on ``event_id`` and treat a
  balance as "as of ``date``".
- Stock: ``stock.created|updated|deleted`` (physical postings; one ``deposito``) and
  ``virtual_stock.updated`` (reservations by sales orders; a ``depositos`` list, and
  ``vinculoComplexo: true`` when the product has so many links that Bling sends no balances:
  read them through the API). ``StockChange`` gives both the same shape.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

SIGNATURE_HEADER = "X-Bling-Signature-256"
_PREFIX = "sha256="

STOCK_EVENTS = frozenset({"stock.created", "stock.updated", "stock.deleted"})
VIRTUAL_STOCK_EVENTS = frozenset({"virtual_stock.updated"})


class InvalidEvent(ValueError):
    """The body is not a Bling webhook envelope."""


def sign(raw_body: bytes, client_secret: str) -> str:
    """The header value Bling sends for this body: ``sha256=<lower-case hex>``."""
    digest = hmac.new(client_secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify_signature(raw_body: bytes, header_value: str | None, client_secret: str) -> bool:
    """True when ``header_value`` is this body's signature under ``client_secret``.

    Constant-time comparison; a missing header, a missing ``sha256=`` prefix or an empty secret
    is a refusal, never an exception.
    """
    if not header_value or not client_secret:
        return False
    value = header_value.strip()
    if value[: len(_PREFIX)].lower() != _PREFIX:
        return False
    received = value[len(_PREFIX) :].strip().lower().encode("ascii", "replace")
    expected = sign(raw_body, client_secret)[len(_PREFIX) :].encode("ascii")
    return hmac.compare_digest(received, expected)


@dataclass(frozen=True)
class DepositBalance:
    deposit_id: int
    physical: float | None  # saldoFisico
    virtual: float | None  # saldoVirtual: physical minus reservations of open sales orders


@dataclass(frozen=True)
class StockChange:
    """A product's balances as carried by a stock or virtual-stock event."""

    product_id: int
    deposits: tuple[DepositBalance, ...]
    physical_total: float | None
    virtual_total: float | None
    operation: str | None = None  # E entrada, S saída, B balanço (stock.created/updated only)
    quantity: float | None = None
    complex_link: bool = False  # vinculoComplexo: balances absent, read them via the API

    def virtual_in(self, deposit_id: int | None) -> float | None:
        """``saldoVirtual`` of one deposit (None: not in this event), or the total."""
        if deposit_id is None:
            return self.virtual_total
        for deposit in self.deposits:
            if deposit.deposit_id == deposit_id:
                return deposit.virtual
        return None


@dataclass(frozen=True)
class BlingEvent:
    event_id: str
    event: str  # "<resource>.<action>", e.g. "stock.updated"
    date: datetime | None
    version: str | None
    company_id: str | None
    data: Mapping[str, Any] = field(repr=False)

    @property
    def resource(self) -> str:
        return self.event.partition(".")[0]

    @property
    def action(self) -> str:
        return self.event.partition(".")[2]

    @property
    def carries_stock(self) -> bool:
        """A stock or virtual-stock event: it carries balances (``stock_change``)."""
        return self.event in STOCK_EVENTS | VIRTUAL_STOCK_EVENTS

    def stock_change(self) -> StockChange | None:
        """The balances of a stock/virtual_stock event; None for other events."""
        if not self.carries_stock:
            return None
        product = self.data.get("produto") or {}
        product_id = _id(product.get("id")) if isinstance(product, Mapping) else None
        if product_id is None:
            raise InvalidEvent(f"{self.event} without a numeric produto.id")
        raw_deposits = self.data.get("depositos")
        if raw_deposits is None and isinstance(self.data.get("deposito"), Mapping):
            raw_deposits = [self.data["deposito"]]
        if not isinstance(raw_deposits, list):
            raw_deposits = []
        deposits = tuple(
            DepositBalance(
                deposit_id, _number(d.get("saldoFisico")), _number(d.get("saldoVirtual"))
            )
            for d in raw_deposits
            if isinstance(d, Mapping) and (deposit_id := _id(d.get("id"))) is not None
        )
        return StockChange(
            product_id=product_id,
            deposits=deposits,
            physical_total=_number(self.data.get("saldoFisicoTotal")),
            virtual_total=_number(self.data.get("saldoVirtualTotal")),
            operation=self.data.get("operacao"),
            quantity=_number(self.data.get("quantidade")),
            complex_link=bool(self.data.get("vinculoComplexo")),
        )


def parse_event(raw: bytes | str | Mapping[str, Any]) -> BlingEvent:
    """The envelope of a delivery (raw body or already-decoded JSON); ``InvalidEvent`` if not."""
    if isinstance(raw, bytes | str):
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise InvalidEvent("webhook body is not JSON") from exc
    else:
        body = raw
    if not isinstance(body, Mapping):
        raise InvalidEvent("webhook body is not a JSON object")
    event_id, event = body.get("eventId"), body.get("event")
    if not _is_name(event_id, MAX_EVENT_ID):
        raise InvalidEvent("webhook without an eventId (1 to 255 characters, no NUL)")
    if not _is_name(event, MAX_EVENT_NAME) or "." not in event:
        raise InvalidEvent("webhook without an event name like 'stock.updated'")
    data = body.get("data")
    return BlingEvent(
        event_id=event_id,
        event=event,
        date=_date(body.get("date")),
        version=body.get("version"),
        company_id=body.get("companyId"),
        data=data if isinstance(data, Mapping) else {},
    )


#: Longest ``eventId`` and ``event`` accepted: longer ones are not Bling's (nor fit their columns).
MAX_EVENT_ID = 255
MAX_EVENT_NAME = 64


def _is_name(value: object, max_length: int) -> TypeGuard[str]:
    """A non-empty string of at most ``max_length`` characters, without NUL (which no database
    text column can hold)."""
    return isinstance(value, str) and 0 < len(value) <= max_length and "\x00" not in value


def _date(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)  # Python 3.11 reads the trailing "Z"
    except ValueError as exc:
        raise InvalidEvent(f"webhook date is not ISO 8601: {value!r}") from exc


#: Bling's ids are 64-bit integers.
MAX_ID = 2**63 - 1
#: No balance is larger: beyond it a number is garbage, not stock (and would not fit a column).
MAX_BALANCE = 1e12


def _id(value: Any) -> int | None:
    """A positive 64-bit id (an int, or its decimal string), else None."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID:
        return value
    return None


def _number(value: Any) -> float | None:
    """A balance as a float; None when absent, unreadable, not finite or beyond any stock."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and abs(number) <= MAX_BALANCE else None
