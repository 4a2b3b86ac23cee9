"""Load for fault tests: clients that keep calling the service and record every answer's timing.

Each request goes on a fresh loopback connection with a generous client timeout, so a request
the service leaves hanging shows up as a long ``elapsed`` (or as ``status`` 0 with the error),
never as a silent retry.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

CLIENT_TIMEOUT = 30.0


@dataclass
class Answer:
    kind: str  # what the client was doing: "reserve", "confirm", "get", "webhook", ...
    started: float  # time.monotonic() when the request was sent
    elapsed: float
    status: int  # 0: no HTTP answer (see ``error``)
    body: Any = None
    error: str | None = None
    content_type: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ended(self) -> float:
        return self.started + self.elapsed

    def is_json_error(self) -> bool:
        return (
            self.content_type.startswith("application/json")
            and isinstance(self.body, dict)
            and isinstance(self.body.get("error"), str)
            and isinstance(self.body.get("message"), str)
        )


def request(
    port: int,
    method: str,
    path: str,
    *,
    kind: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = CLIENT_TIMEOUT,
) -> Answer:
    """One request on a new connection; never raises for network errors (status 0)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        content_type = response.getheader("Content-Type") or ""
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw[:200].decode(errors="replace")
        return Answer(
            kind, started, time.monotonic() - started, response.status, decoded, None, content_type
        )
    except (OSError, http.client.HTTPException) as exc:
        return Answer(kind, started, time.monotonic() - started, 0, None, repr(exc))
    finally:
        conn.close()


def json_request(
    port: int, method: str, path: str, payload: Any = None, *, kind: str, token: str
) -> Answer:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = None if payload is None else json.dumps(payload).encode()
    return request(port, method, path, kind=kind, body=body, headers=headers)


class Load:
    """``clients`` threads, each running ``step(client_index, record)`` in a loop until stopped.

    ``step`` makes one or more requests and passes each ``Answer`` to ``record``.
    """

    def __init__(self, clients: int, step: Callable[[int, Callable[[Answer], None]], None]) -> None:
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._step = step
        self._threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(clients)
        ]
        self.errors: list[BaseException] = []

    def record(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)

    def _loop(self, index: int) -> None:
        try:
            while not self._stop.is_set():
                self._step(index, self.record)
        except BaseException as exc:  # surfaced by stop(): a client bug must fail the test
            self.errors.append(exc)

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = CLIENT_TIMEOUT + 10) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        if self.errors:
            raise self.errors[0]
        with self._lock:
            return sorted(self.answers, key=lambda a: a.started)


class Prober:
    """Polls one path every ``every`` seconds and records (time sent, status, elapsed)."""

    def __init__(self, port: int, path: str, every: float = 0.1) -> None:
        self.port, self.path, self.every = port, path, every
        self.samples: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(request(self.port, "GET", self.path, kind="probe", timeout=10))
            self._stop.wait(self.every)

    def start(self) -> Prober:
        self._thread.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        self._thread.join(15)
        return list(self.samples)


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of ``values``; nan when empty."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
