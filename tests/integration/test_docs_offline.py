"""``/docs`` works without reaching a CDN: Swagger UI's files come from an installed package."""

from __future__ import annotations

import re

from flask.testing import FlaskClient


def test_the_docs_page_loads_only_this_services_assets(client: FlaskClient) -> None:
    page = client.get("/docs", follow_redirects=True)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "unpkg" not in html and "cdn" not in html.lower()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/docs/assets/") for a in assets), assets
    for asset in [*assets, "/docs/assets/start.js"]:
        with client.get(asset) as answer:  # a file's answer: closed, or it warns
            assert answer.status_code == 200, asset
            assert len(answer.get_data()) > 50, asset
    with client.get("/docs/assets/swagger-ui-bundle.js") as bundle:
        assert "SwaggerUIBundle" in bundle.get_data(as_text=True)
    assert 'data-spec-url="/docs/openapi.json"' in html
    assert client.get("/docs/openapi.json").status_code == 200
    assert client.get("/docs/assets/../openapi.py").status_code == 404
    assert client.get("/docs/assets/VERSION").status_code == 404  # only the page's files
    assert client.get("/docs/redoc/").status_code == 404  # spectree's CDN pages are off
