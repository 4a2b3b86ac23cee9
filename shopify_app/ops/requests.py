"""Per-request plumbing: the request id (``X-Request-ID``, bound to every log line of the
request) and the latency histogram by route, method and status."""

from __future__ import annotations

import functools
import re
import time
from typing import Any

from flask import Flask, Response, g, request

from ..ids import random_uuid  # buffered urandom: no syscall per request
from ..observability import logs, metrics

REQUEST_ID_HEADER = "X-Request-ID"
# Heroku's router sends a UUID; accept any short, plain token and make one otherwise, so a
# client cannot inject line breaks or megabytes into every log line of its request.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def init_app(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_clear)


def _start() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _VALID_REQUEST_ID.fullmatch(incoming) else random_uuid().hex
    g.request_id = request_id
    g.started = time.perf_counter()
    logs.bind_request_id(request_id)


def _finish(response: Response) -> Response:
    request_id = getattr(g, "request_id", None)
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    started = getattr(g, "started", None)
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in _METHODS else "OTHER"
        _histogram(route, method, response.status_code).observe(time.perf_counter() - started)
    return response


# Label values come from the request: only known ones, so a client cannot mint new series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@functools.lru_cache(maxsize=1024)  # routes × methods × statuses: a small, fixed set
def _histogram(route: str, method: str, status: int) -> Any:
    return metrics.HTTP_REQUEST_DURATION.labels(route, method, str(status))


def _clear(_exc: BaseException | None) -> None:
    logs.clear_context()
