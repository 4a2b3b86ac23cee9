"""psycopg's wait on gevent's hub (shopify_app/db/green_wait.py), on a socket pair: it reports
what the generator waited for once the socket is ready, and gives up at the timeout.

gevent's waits run on its hub without monkey-patching, so the test process stays unpatched.
"""

from __future__ import annotations

import socket
from collections.abc import Generator

import gevent
import pytest
from psycopg import errors
from psycopg.waiting import READY_NONE, READY_R, READY_W, WAIT_R, WAIT_W

from shopify_app.db import green_wait


def _asks(*states: int) -> Generator[int, int, list[int]]:
    """A psycopg-style generator: yields each wait in turn (again while told nothing is
    ready), returns what it was told."""
    told = []
    for state in states:
        ready = yield state
        while ready == READY_NONE:
            ready = yield state
        told.append(ready)
    return told


def test_it_tells_the_generator_the_socket_is_ready_for_what_it_asked() -> None:
    left, right = socket.socketpair()
    with left, right:
        gevent.spawn_later(0.05, right.send, b"x")  # readable a moment later
        told = green_wait.wait(_asks(WAIT_W, WAIT_R), left.fileno(), interval=0.01)
    assert told == [READY_W, READY_R]


def test_it_gives_up_at_the_timeout() -> None:
    left, right = socket.socketpair()
    with left, right, pytest.raises(errors._WaitTimeout):
        green_wait.wait(_asks(WAIT_R), left.fileno(), timeout=0.05)
