"""Every error leaves as JSON: ``{"error": "<code>", "message": "<human text>", ...}``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, MethodNotAllowed

log = logging.getLogger(__name__)

# Werkzeug's names, reworded as stable snake_case codes clients can switch on.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


def error_response(status: int, error: str, message: str, **extra: Any) -> Response:
    response = jsonify({"error": error, "message": message, **extra})
    response.status_code = status
    return response


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = "request body is larger than 1 MiB" if status == 413 else exc.description or exc.name
    response = error_response(status, CODES.get(status, "error"), message)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:  # werkzeug's (and abort's) 405
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _database_unavailable(exc: SQLAlchemyError) -> Response:
    # A lock or statement timeout, the database gone (a connection refused or closed under us),
    # or no pooled connection free in time: nothing was committed, so the client may retry.
    # The details stay in the log, not in the answer.
    log.warning("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
    response = error_response(503, "unavailable", "the stock database is busy; retry shortly")
    response.headers["Retry-After"] = "1"
    return response


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    for unavailable in (OperationalError, InterfaceError, PoolTimeout):
        app.register_error_handler(unavailable, _database_unavailable)
    app.register_error_handler(Exception, _unexpected)
