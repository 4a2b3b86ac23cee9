"""What an operator and the platform talk to: ``/healthz`` and ``/readyz``, ``/metrics``, and the
per-request plumbing (request id, latency). The primitives (log setup, metric definitions,
business events) are in ``observability/``; this package puts them on HTTP."""

from __future__ import annotations

from flask import Flask

from . import health, metrics, requests


def init_app(app: Flask) -> None:
    requests.init_app(app)
    metrics.init_app(app)
    app.register_blueprint(health.bp)
