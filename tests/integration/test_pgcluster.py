"""The throwaway PostgreSQL cluster that the PostgreSQL tests and benchmarks rely on."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from tests.support.pgcluster import PgCluster, find_pg_bin

pytestmark = pytest.mark.postgres


def _pg_bin() -> Path:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        # CI sets REQUIRE_POSTGRES=1 so a machine without PostgreSQL fails instead of
        # silently skipping every database test.
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL binaries not found and REQUIRE_POSTGRES=1")
        pytest.skip("PostgreSQL binaries not found")
    return bin_dir


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_created_database_accepts_queries_and_cluster_is_removed() -> None:
    with PgCluster(_pg_bin()) as cluster:
        root = cluster.root_dir
        assert root is not None and root.is_dir()
        url = cluster.create_database("pgcluster_smoke")
        assert url.startswith("postgresql+psycopg://bazico@127.0.0.1:")
        assert url.endswith("/pgcluster_smoke")
        with psycopg.connect(_libpq(url)) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            assert conn.execute("select current_database()").fetchone() == ("pgcluster_smoke",)
    assert not root.exists()


def test_start_returns_superuser_url_and_stop_is_idempotent() -> None:
    cluster = PgCluster(_pg_bin())
    try:
        url = cluster.start()
        assert cluster.start() == url  # a second start must not spawn a second server
        with psycopg.connect(_libpq(url)) as conn:
            row = conn.execute(
                "select current_user, current_database(), current_setting('fsync')"
            ).fetchone()
        assert row == ("bazico", "postgres", "off")
        root = cluster.root_dir
    finally:
        cluster.stop()
    cluster.stop()
    assert root is not None and not root.exists()
