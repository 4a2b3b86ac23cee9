"""``GET /metrics``: the Prometheus counters of every process (multiprocess under gunicorn) and
the figures read from the database at scrape time (outbox depth and age, the hottest SKUs)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from spectree import Response as Answers
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ..db.engine import READ_ONLY
from ..observability import metrics
from ..runtime import Runtime, current_runtime
from ..web.auth import require_bearer
from ..web.openapi import api
from ..web.schemas import Error

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/metrics")
@api.validate(resp=Answers(HTTP_200=None, HTTP_401=Error), tags=["operations"])
def metrics_endpoint() -> Any:
    """Prometheus text format; asks for ``METRICS_TOKEN`` as a bearer token when it is set."""
    runtime = current_runtime()
    token = runtime.settings.metrics_token
    if token is not None:
        refused = require_bearer(token)
        if refused is not None:
            return refused
    from_database = CollectorRegistry(auto_describe=False)
    from_database.register(DatabaseCollector(runtime))
    body = generate_latest(metrics.scrape_registry()) + generate_latest(from_database)
    response = Response(body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


class DatabaseCollector(Collector):
    """Figures read from the database at scrape time: right whichever process did the work."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        from ..outbox import queue_figures
        from ..shopify.publications import backlog_of
        from ..stock.dirty import age
        from ..stock.tables import skus

        depth = GaugeMetricFamily(
            metrics.OUTBOX_DEPTH,
            "Outbox jobs waiting (pending) or dead-lettered, by kind.",
            labels=["kind", "status"],
        )
        outbox_age = GaugeMetricFamily(
            metrics.OUTBOX_OLDEST_AGE,
            "Age of the oldest pending outbox job, by kind.",
            labels=["kind"],
        )
        available = GaugeMetricFamily(
            metrics.STOCK_AVAILABLE, "Available units of the hottest SKUs.", labels=["sku"]
        )
        reserved = GaugeMetricFamily(
            metrics.STOCK_RESERVED, "Reserved units of the hottest SKUs.", labels=["sku"]
        )
        backlog = GaugeMetricFamily(
            metrics.PUBLISH_BACKLOG,
            "Dirty SKUs whose Shopify stock metafield is not published yet, by state: due (to "
            "publish now), waiting_for_variant (no variant known yet), scheduled (a follow-up at "
            "a hold's expiry).",
            labels=["state"],
        )
        oldest = GaugeMetricFamily(
            metrics.PUBLISH_OLDEST_AGE,
            "Age of the oldest ledger change not yet published to Shopify's checkout (0: none).",
        )
        try:
            figures = queue_figures(self.runtime)
            hottest = (
                select(skus.c.sku, skus.c.on_hand, skus.c.reserved, skus.c.committed)
                .order_by((skus.c.reserved + skus.c.committed).desc(), skus.c.sku)
                .limit(metrics.HOT_SKUS)
            )
            now = self.runtime.clock()
            with self.runtime.engine.connect() as conn:
                conn = conn.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    rows = conn.execute(hottest).all()
                    publishing, waiting = backlog_of(conn, now)
        except SQLAlchemyError as exc:  # /metrics must answer while the database is away
            log.warning("metrics: database unavailable (%s)", type(exc).__name__)
            return
        for kind, kind_figures in sorted(figures.kinds.items()):
            depth.add_metric([kind, "pending"], kind_figures.pending)
            depth.add_metric([kind, "dead"], kind_figures.dead)
            outbox_age.add_metric([kind], kind_figures.oldest_pending_age_seconds or 0.0)
        for row in rows:
            available.add_metric([row.sku], row.on_hand - row.reserved - row.committed)
            reserved.add_metric([row.sku], row.reserved)
        backlog.add_metric(["due"], publishing.due)
        backlog.add_metric(["waiting_for_variant"], waiting)
        backlog.add_metric(["scheduled"], publishing.scheduled)
        oldest.add_metric([], age(publishing.oldest_due_at, now).total_seconds())
        yield from (depth, outbox_age, available, reserved, backlog, oldest)
