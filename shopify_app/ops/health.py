"""Liveness and readiness probes."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint
from spectree import Response as Answers
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..db.engine import READ_ONLY
from ..migrations_runner import head_revision
from ..runtime import current_runtime
from ..web.errors import error_response
from ..web.openapi import api
from ..web.schemas import Error

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
@api.validate(resp=Answers(HTTP_200=None), tags=["health"])
def healthz() -> Any:
    """200 while the process lives."""
    return {"status": "ok"}


@bp.get("/readyz")
@api.validate(resp=Answers(HTTP_200=None, HTTP_503=Error), tags=["health"])
def readyz() -> Any:
    """200 when the database answers and its schema is at the code's migration head, else 503."""
    runtime = current_runtime()
    try:
        with runtime.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        log.warning("readiness: database unavailable (%s)", exc.__class__.__name__)
        return error_response(503, "not_ready", "the database does not answer")
    if revision != head_revision():
        return error_response(
            503, "not_ready", f"database schema at {revision}, code expects {head_revision()}"
        )
    return {"status": "ready", "schema": revision}
