"""The app serves the deprecated theme snippet (one more release) at its old route."""

from __future__ import annotations

from flask.testing import FlaskClient


def test_the_app_serves_the_snippet(client: FlaskClient) -> None:
    response = client.get("/static/bazico-reserve.js")
    try:
        assert response.status_code == 200
        assert b"reserveThenAdd" in response.data
    finally:
        response.close()  # the file is streamed: close it, or it leaks a handle
