"""End-to-end fixtures: the Procfile's processes, spoken to over HTTP on loopback."""

from __future__ import annotations

from contextlib import AbstractContextManager

import pytest

from tests.support.pgcluster import PgCluster
from tests.support.procfile import Web, WebOnPostgres, serve_web


@pytest.fixture(scope="session")
def web_on_postgres(pg_cluster: PgCluster) -> WebOnPostgres:
    """``web_on_postgres(name, env, workers=1, clean_exit=False)``: a context manager serving
    the Procfile's ``web`` on a new database ``name`` of the session's cluster (see
    tests/support/procfile.py's ``serve_web``). Each test module's own fixture says its
    environment and scope."""

    def serve(
        database: str, env: dict[str, str], *, workers: int = 1, clean_exit: bool = False
    ) -> AbstractContextManager[Web]:
        url = pg_cluster.create_database(database)
        return serve_web(url, env, workers=workers, clean_exit=clean_exit)

    return serve
