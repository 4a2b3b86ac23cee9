"""Bearer-token auth for server-to-server clients of ``/stock``."""

from __future__ import annotations

import hmac

from flask import Response, request

from .errors import error_response


def require_bearer(expected: str | None) -> Response | None:
    """Return a 401 response unless the request carries ``Authorization: Bearer <expected>``.

    With no token configured nobody gets in: an unset secret must never mean "open".
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if (
        expected
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    ):
        return None
    response = error_response(401, "unauthorized", "missing or invalid bearer token")
    response.headers["WWW-Authenticate"] = 'Bearer realm="stock"'
    return response
