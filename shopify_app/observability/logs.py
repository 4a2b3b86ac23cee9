"""JSON logs on stdout, one object per line, with Elastic Common Schema names (structlog).

Every record (the app's, the libraries', gunicorn's) goes through one formatter, so ELK sees a
single shape: ``@timestamp``, ``log.level``, ``log.logger``, ``message``, ``ecs.version``,
``service.name``, ``process.pid``, ``http.request.id`` (bound per request, and per outbox job so
a worker's lines join the request that queued the job), ``event.action`` (business events, see
``events.py``) and ``error.*`` for exceptions. Fields of our own go under ``bazico.*``.

Secrets never reach the output: values under sensitive keys are dropped and the rendered line
is scrubbed of bearer credentials and e-mail addresses (``scrub``), whatever logged them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

ECS_VERSION = "8.11.0"
SERVICE_NAME = "bazico-stock-service"
_HANDLER_FLAG = "_bazico_json_handler"

# Keys whose values are never logged, whoever passes them.
SENSITIVE_KEYS = frozenset(
    {"token", "access_token", "refresh_token", "authorization", "password", "secret", "email"}
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_KEY_VALUE = re.compile(
    r"(?i)\b(access_token|refresh_token|client_secret|code|password)=([^&\s\"']+)"
)

# structlog's own keys → ECS names
_RENAMES = {
    "event": "message",
    "level": "log.level",
    "logger": "log.logger",
    "timestamp": "@timestamp",
    "http_request_id": "http.request.id",
    "event_action": "event.action",
    "event_outcome": "event.outcome",
}
_DROP = frozenset({"_record", "_from_structlog", "positional_args"})


def scrub(text: str) -> str:
    """Take bearer/basic credentials, token-looking query values and e-mails out of a text."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}=[redacted]", text)
    return _EMAIL.sub("[email]", text)


def _to_ecs(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    out: dict[str, Any] = {}
    for key, value in event.items():
        if key in _DROP:
            continue
        if key.lower() in SENSITIVE_KEYS:
            continue
        name = _RENAMES.get(key)
        if name is None:
            if key == "exception":
                out["error.stack_trace"] = value
                continue
            name = key if "." in key or key.startswith("@") else f"bazico.{key}"
        out[name] = value
    out["log.level"] = str(out.get("log.level", "info")).lower()
    out.setdefault("message", "")
    out["ecs.version"] = ECS_VERSION
    out["service.name"] = SERVICE_NAME
    out["process.pid"] = os.getpid()
    return out


def _render(_logger: WrappedLogger, _method: str, event: EventDict) -> str:
    line = structlog.processors.JSONRenderer(sort_keys=False)(_logger, _method, event)
    # The default serializer (json.dumps) renders str; only a bytes serializer (orjson) gives bytes.
    return scrub(line if isinstance(line, str) else line.decode())


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
    ]


def make_formatter() -> logging.Formatter:
    """The one formatter every handler uses (gunicorn.conf.py's logconfig_dict names it too)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _to_ecs,
            _render,
        ],
    )


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is now (a test's capture, a redirected stream)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(level: str = "INFO") -> None:
    """Send every log record to stdout as ECS JSON (idempotent: ``create_app`` may run again)."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # below LOG_LEVEL: dropped before any work
            *_shared_processors(),  # the formatter stamps the time and formats exceptions
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    if not any(getattr(h, _HANDLER_FLAG, False) for h in root.handlers):
        handler = StdoutHandler()
        handler.setFormatter(make_formatter())
        setattr(handler, _HANDLER_FLAG, True)
        # Anything configured before (basicConfig by a library, a plain handler) would print a
        # second, non-JSON copy of every line; pytest's capture handlers are kept.
        for other in list(root.handlers):
            if type(other) is logging.StreamHandler:
                root.removeHandler(other)
        root.addHandler(handler)
    root.setLevel(level)
    # Alembic announces each of its plugins at INFO on every import; that is noise, not news.
    logging.getLogger("alembic.runtime.plugins").setLevel(max(logging.WARNING, root.level))


def bind_request_id(request_id: str | None) -> None:
    """Tag every line of this request (or outbox job) with ``http.request.id``."""
    structlog.contextvars.clear_contextvars()
    if request_id:
        structlog.contextvars.bind_contextvars(http_request_id=request_id)


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("http_request_id")
    return None if value is None else str(value)


def clear_context() -> None:
    structlog.contextvars.clear_contextvars()
