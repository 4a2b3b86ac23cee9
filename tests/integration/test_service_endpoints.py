"""Health, readiness, the OpenAPI document and the docs page."""

from __future__ import annotations

import socket

from flask.testing import FlaskClient

from shopify_app import create_app
from tests.support.app import app_environ


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_when_the_database_answers(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"


def test_readyz_is_503_when_the_database_is_down() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(app_environ(f"postgresql://nobody@127.0.0.1:{port}/none"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["error"] == "not_ready"
    assert app.test_client().get("/healthz").status_code == 200


def test_readyz_is_503_before_migrations(tmp_path: object) -> None:
    app = create_app(app_environ(f"sqlite:///{tmp_path}/empty.db"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["error"] == "not_ready"


def test_openapi_documents_every_route(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    expected = {
        "/stock/{sku}": {"get", "put"},
        "/stock/{sku}/reserve": {"post"},
        "/stock/reserve": {"post"},
        "/stock/confirm": {"post"},
        "/stock/reservations/{reservation_id}": {"delete"},
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/webhooks/shopify": {"post"},
        "/proxy/stock/{sku}": {"get"},
        "/proxy/stock/{sku}/reserve": {"post"},
        "/auth/install": {"get"},
        "/auth/callback": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, paths[path].keys())
    reserve = paths["/stock/{sku}/reserve"]["post"]
    assert {"200", "404", "409", "422", "401"} <= set(reserve["responses"])
    assert reserve["security"] == [{"bearer": []}]
    confirm = paths["/stock/confirm"]["post"]
    assert {"200", "404", "409", "410"} <= set(confirm["responses"])
    assert "bearer" in spec["components"]["securitySchemes"]


def test_docs_page_is_served(client: FlaskClient) -> None:
    response = client.get("/docs", follow_redirects=True)
    assert response.status_code == 200
    assert b"swagger" in response.get_data().lower()
    assert b"/docs/openapi.json" in response.get_data() or b"openapi.json" in response.get_data()
