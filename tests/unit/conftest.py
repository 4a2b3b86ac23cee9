"""Unit fixtures. Unit tests do no I/O: the stock use cases run on the in-memory fakes of
tests/support/fakes.py, and there is no database here.

The root conftest's PostgreSQL fixtures are shadowed below so that a unit test asking for one
fails with the reason instead of quietly starting a cluster (the app and SQLite fixtures live in
tests/integration/conftest.py and are not visible here at all).
"""

from __future__ import annotations

import pytest

from tests.support.clock import FakeClock
from tests.support.fakes import FakeUnitOfWork, StockStore


def _no_database(name: str) -> None:
    pytest.fail(f"unit tests have no database ({name}): move the test to tests/integration")


@pytest.fixture(scope="session")
def pg_cluster() -> None:
    _no_database("pg_cluster")


@pytest.fixture(scope="session")
def pg_migrated_url() -> None:
    _no_database("pg_migrated_url")


@pytest.fixture
def postgres_url() -> None:
    _no_database("postgres_url")


@pytest.fixture
def store() -> StockStore:
    """The fake database of the use-case tests."""
    return StockStore()


@pytest.fixture
def uow(store: StockStore, clock: FakeClock) -> FakeUnitOfWork:
    """A unit of work over ``store`` at the root conftest's ``clock``."""
    return FakeUnitOfWork(store, clock)
