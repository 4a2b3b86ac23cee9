"""Request and response shapes of the ``/stock`` API; spectree turns them into the OpenAPI spec."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator
from pydantic.config import JsonDict

from ..web.schemas import NO_NUL, Error, RequestBody

MAX_QUANTITY = 1_000_000
MAX_TTL_SECONDS = 86_400
Holder = Field(
    default=None,
    min_length=1,
    max_length=255,
    pattern=NO_NUL,
    description="Cart token or client reference",
)


class ReserveIn(RequestBody):
    quantity: StrictInt = Field(default=1, ge=1, le=MAX_QUANTITY)
    holder: str | None = Holder
    ttl_seconds: StrictInt | None = Field(default=None, ge=1, le=MAX_TTL_SECONDS)


class LineIn(RequestBody):
    sku: str = Field(min_length=1, max_length=255, pattern=NO_NUL)
    quantity: StrictInt = Field(default=1, ge=1, le=MAX_QUANTITY)


class ReserveLinesIn(RequestBody):
    lines: list[LineIn] = Field(min_length=1, max_length=100)
    holder: str | None = Holder
    ttl_seconds: StrictInt | None = Field(default=None, ge=1, le=MAX_TTL_SECONDS)


class ReservationOut(BaseModel):
    reservation_id: uuid.UUID
    sku: str
    quantity: int
    expires_at: datetime
    line_hold: uuid.UUID = Field(
        description="The id the cart line carries as its `_bazico_hold` property: the hold's "
        "own id, or that of the line it joined (`hold_id` on the App Proxy)"
    )


class ReservationsOut(BaseModel):
    reservations: list[ReservationOut]


#: ``ConfirmIn``'s rule "exactly one of reservation_id and reservation_ids", said in JSON Schema so
#: that clients (and schemathesis) know ``{}`` or both ids are refused with 422.
_NULL: JsonDict = {"type": "null"}
_ONE_OF_IDS: JsonDict = {
    "oneOf": [
        {
            "required": ["reservation_id"],
            "properties": {"reservation_id": {"type": "string"}, "reservation_ids": _NULL},
        },
        {
            "required": ["reservation_ids"],
            "properties": {"reservation_ids": {"type": "array"}, "reservation_id": _NULL},
        },
    ]
}


class ConfirmIn(RequestBody):
    model_config = ConfigDict(extra="ignore", json_schema_extra=_ONE_OF_IDS)

    reservation_id: uuid.UUID | None = None
    reservation_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=100)
    order_id: str | None = Field(default=None, min_length=1, max_length=255, pattern=NO_NUL)

    @model_validator(mode="after")
    def _one_of_ids(self) -> ConfirmIn:
        if (self.reservation_id is None) == (self.reservation_ids is None):
            raise ValueError("give exactly one of reservation_id and reservation_ids")
        return self

    @property
    def ids(self) -> list[uuid.UUID]:
        return [self.reservation_id] if self.reservation_id else list(self.reservation_ids or [])


class ConfirmOut(BaseModel):
    status: str = Field(description="Always 'confirmed'")
    order_id: str | None
    reservations: list[ReservationOut]


class StockOut(BaseModel):
    sku: str
    on_hand: int
    reserved: int
    committed: int
    available: int


class SetStockIn(RequestBody):
    on_hand: StrictInt = Field(ge=0, le=10**12)


class OutOfStockError(Error):
    available: int = Field(description="Units still available of the SKU asked for")
    shortfalls: dict[str, int] = Field(description="Available units of each short SKU")


class LimitError(Error):
    """429 (``rate_limited``, ``hold_limit_exceeded``) or 422 (``hold_limit_exceeded``: more than
    one cart may ever hold); the 429s come with a ``Retry-After`` header."""

    retry_after: int | None = Field(default=None, description="Seconds until a retry can succeed")
    limit: str | None = Field(default=None, description="The rate, or the cap, that was reached")
    per: str | None = Field(default=None, description="Rates: what they count by (ip, cart)")
    maximum: int | None = Field(default=None, description="Caps: the most one cart may have")
    held: int | None = Field(default=None, description="Caps: what the cart has now")


class ReservationsError(Error):
    reservation_ids: list[str]
