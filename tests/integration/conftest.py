"""Integration fixtures: the database each test runs on (SQLite, and PostgreSQL from the root
conftest's cluster), the app built on it and its clients. No HTTP server: see tests/e2e/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from shopify_app import create_app
from shopify_app.migrations_runner import upgrade
from tests.support.app import ApiClient, app_environ, engine_of
from tests.support.clock import FakeClock

# --- the database ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite (the default) and once on PostgreSQL (production)."""
    return request.getfixturevalue(f"{request.param}_url")


# --- the app -------------------------------------------------------------------------------


@pytest.fixture
def app(database_url: str, clock: FakeClock) -> Iterator[Flask]:
    app = create_app(app_environ(database_url), clock=clock)
    engine = engine_of(app)
    if engine.dialect.name == "sqlite":
        upgrade(engine)
    yield app
    engine.dispose()


@pytest.fixture
def engine(app: Flask) -> Engine:
    return engine_of(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def api(client: FlaskClient) -> ApiClient:
    return ApiClient(client)
