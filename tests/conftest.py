"""Fixtures every layer may use: the loopback guard, a throwaway PostgreSQL and the fake clock;
and the hook that marks each test with its layer (unit, integration, e2e) by its folder.

Each layer's own fixtures are in its conftest.py (tests/integration/conftest.py: the app and its
clients); plain helpers are in tests/support/ (see tests/README.md).

PostgreSQL tests start their own cluster (tests/support/pgcluster.py). Where its binaries are
missing they skip, unless REQUIRE_POSTGRES=1 (set by scripts/test, hence CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from shopify_app.db.metadata import metadata
from shopify_app.migrations_runner import upgrade
from tests.support.clock import FakeClock
from tests.support.pgcluster import PgCluster, find_pg_bin

REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"
TESTS = Path(__file__).resolve().parent
#: The layers, by folder; each folder's name is also its marker (setup.cfg's [tool:pytest]).
LAYERS = ("unit", "integration", "e2e")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its layer, from the folder its file is in (tests/<layer>/...):
    ``-m unit``, ``-m integration`` and ``-m e2e`` select by folder, and no module says it."""
    for item in items:
        try:
            folder = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:
            continue
        if folder in LAYERS:
            item.add_marker(folder)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network beyond 127.0.0.1 in tests: a stray call to Shopify or Bling fails loudly."""
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise OSError(f"tests may only connect to loopback, not {host}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


# --- databases -----------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Any, sqlite_template: Path) -> str:
    """A fresh SQLite file (integration tests, and e2e tests that run on both databases),
    migrated: a copy of the session's template, so each test does not run every migration
    again (``upgrade`` then finds it at head)."""
    shutil.copyfile(sqlite_template, tmp_path / "bazico.db")
    return f"sqlite:///{tmp_path}/bazico.db"


@pytest.fixture
def empty_sqlite_url(tmp_path: Any) -> str:
    """A SQLite file no migration has run on."""
    return f"sqlite:///{tmp_path}/empty.db"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite database migrated to head for the session, copied by ``sqlite_url``."""
    path = tmp_path_factory.mktemp("sqlite-template") / "bazico.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return path


# --- PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    if find_pg_bin() is None:
        if REQUIRE_POSTGRES:
            pytest.fail("PostgreSQL binaries not found and REQUIRE_POSTGRES=1")
        pytest.skip("PostgreSQL binaries not found (REQUIRE_POSTGRES=1 makes this a failure)")
    cluster = PgCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_migrated_url(pg_cluster: PgCluster) -> str:
    """One migrated database for the session; tests get it emptied (see ``postgres_url``)."""
    url = pg_cluster.create_database("bazico_test")
    engine = create_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_url(pg_migrated_url: str) -> str:
    engine = create_engine(pg_migrated_url)
    names = ", ".join(table.name for table in reversed(metadata.sorted_tables))
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return pg_migrated_url


# --- the clock -----------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
