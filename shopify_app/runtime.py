"""What one process shares between requests: settings, the engine and the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from flask import current_app
from sqlalchemy import Engine

from .clock import Clock, utc_now
from .config import Settings
from .ratelimit import RateLimits
from .stock.domain import HolderLimits
from .stock.reservations import Reservations, reservations_for
from .unit_of_work import SqlAlchemyUnitOfWork

EXTENSION_KEY = "bazico"


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    clock: Clock = utc_now
    rate_limits: RateLimits = field(init=False)

    def __post_init__(self) -> None:
        self.rate_limits = RateLimits(self.settings, self.engine)

    @cached_property
    def hold_limits(self) -> HolderLimits:
        """The per-holder caps (HOLD_MAX_UNITS_PER_SKU, HOLD_MAX_ACTIVE_HOLDS)."""
        return HolderLimits(
            self.settings.hold_max_units_per_sku, self.settings.hold_max_active_holds
        )

    @cached_property
    def reservations(self) -> Reservations:
        """Where holds for waiting callers are made (stock/reservations.py states the rule)."""
        return reservations_for(self.engine, self.clock, self.uow)

    def uow(self, *, read_only: bool = False, snapshot: bool = False) -> SqlAlchemyUnitOfWork:
        """A fresh unit of work; one per request or job, never shared between threads.

        ``snapshot`` makes a read-only unit whose statements all see one consistent state.
        """
        return SqlAlchemyUnitOfWork(self.engine, self.clock, read_only=read_only, snapshot=snapshot)


def current_runtime() -> Runtime:
    runtime: Runtime = current_app.extensions[EXTENSION_KEY]
    return runtime
