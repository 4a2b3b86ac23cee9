"""The JSON shapes every HTTP route shares: the error body, the base of request bodies, and the
rule that text holds no NUL. Feature schemas (``stock/schemas.py``) build on them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: Text fields may hold any character but NUL, which PostgreSQL cannot store in text (a fuzzer
#: found the 500); refusing it here keeps SQLite and PostgreSQL answering alike, with 422.
NO_NUL = r"^[^\x00]*$"


class RequestBody(BaseModel):
    # The interface (README, HTTP API): unknown fields are ignored. Strict ints: "2" and 2.0 are
    # not quantities.
    model_config = ConfigDict(extra="ignore")


class Error(BaseModel):
    error: str = Field(description="Machine-readable code")
    message: str = Field(description="Human-readable explanation")


class ValidationFailed(Error):
    """422: a body of the wrong shape (``invalid_request``, with ``details``), or on the reserve
    routes a quantity over the per-cart cap (``hold_limit_exceeded``, as LimitError)."""

    details: list[dict[str, object]] | None = Field(
        default=None, description="What is wrong with the body, field by field"
    )
