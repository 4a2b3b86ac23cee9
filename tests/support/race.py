"""Many HTTP clients released at once by a barrier: the way to provoke a race without sleeping."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# What a client sees when the worker serving it dies: the connection breaks, no answer comes.
BROKEN = (
    ConnectionError,
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    http.client.IncompleteRead,  # killed after the headers, before the body
)


@dataclass
class Outcome:
    status: int
    body: Any
    broken_attempts: int  # answers lost to a dead worker before this one came back


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()  # on top of JSON and the bearer token


def race(
    port: int,
    token: str,
    calls: list[Call],
    *,
    on_answer: Callable[[int], None] | None = None,
    max_attempts: int = 5,
) -> list[Outcome]:
    """Open one connection per call, wait until every client is connected, then fire together.

    A call whose connection breaks (its worker was killed) is retried on a new connection, as a
    real client would; ``on_answer(n)`` is called with the running count of answers.
    """
    barrier = threading.Barrier(len(calls))
    outcomes: list[Outcome | None] = [None] * len(calls)
    answered = 0
    lock = threading.Lock()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def client(index: int) -> None:
        nonlocal answered
        call = calls[index]
        payload = None if call.body is None else json.dumps(call.body)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.connect()
        sent = {**headers, **dict(call.headers)}
        barrier.wait()
        broken = 0
        while True:
            try:
                conn.request(call.method, call.path, body=payload, headers=sent)
                response = conn.getresponse()
                data = response.read()
                break
            except BROKEN:
                broken += 1
                conn.close()
                if broken >= max_attempts:
                    raise
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.close()
        outcomes[index] = Outcome(response.status, json.loads(data) if data else None, broken)
        with lock:
            answered += 1
            count = answered
        if on_answer is not None:
            on_answer(count)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    missing = [i for i, outcome in enumerate(outcomes) if outcome is None]
    if missing:
        raise AssertionError(f"{len(missing)} clients got no answer at all")
    return [o for o in outcomes if o is not None]
