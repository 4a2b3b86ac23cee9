"""What one process shares between requests: settings, the engine and the clock."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import Engine

from .config import Settings
from .stock.unit_of_work import Clock, SqlAlchemyUnitOfWork, utc_now

EXTENSION_KEY = "bazico"


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    clock: Clock = utc_now

    def uow(self, *, read_only: bool = False, snapshot: bool = False) -> SqlAlchemyUnitOfWork:
        """A fresh unit of work; one per request or job, never shared between threads.

        ``snapshot`` makes a read-only unit whose statements all see one consistent state.
        """
        return SqlAlchemyUnitOfWork(self.engine, self.clock, read_only=read_only, snapshot=snapshot)


def current_runtime() -> Runtime:
    runtime: Runtime = current_app.extensions[EXTENSION_KEY]
    return runtime
