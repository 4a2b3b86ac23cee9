"""psycopg's wait on gevent's hub: one I/O watcher per wait, not a ``poll`` object.

Under gevent's monkey-patching psycopg cannot use its C wait (it would block the process's
other greenlets) and falls back to ``wait_poll`` over gevent's green ``select.poll``, which
builds a poll object, registers the socket and makes a watcher for every wait; a cart webhook
waits on its connection about twenty times (each pipelined statement sends), and those waits
cost more than the round trips themselves. ``install`` (gunicorn.conf.py, after patching) makes
psycopg wait with gevent's ``wait_read``/``wait_write`` instead: the same contract as
psycopg's own waits (``psycopg.waiting``), the readiness reported for what was asked.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from gevent.socket import wait_read, wait_readwrite, wait_write
from psycopg import errors, waiting
from psycopg.waiting import READY_NONE, READY_R, READY_RW, READY_W, WAIT_R, WAIT_RW, WAIT_W

_WAITS = {WAIT_R: wait_read, WAIT_W: wait_write, WAIT_RW: wait_readwrite}
_READY = {WAIT_R: READY_R, WAIT_W: READY_W, WAIT_RW: READY_RW}


class _Idle(Exception):
    """The interval passed with the socket not ready (psycopg is then told READY_NONE)."""


def wait(gen: Any, fileno: int, interval: float = 0.0, timeout: float | None = None) -> Any:
    """``psycopg.waiting.wait`` on gevent: run ``gen`` until it returns, waiting on ``fileno``
    for what it asks (read, write or either), until ``timeout`` if one is given."""
    deadline = monotonic() + timeout if timeout is not None else None
    try:
        state = next(gen)
        while True:
            # No timer for ``interval``: it only lets psycopg's C wait notice a Ctrl-C, and gevent's
            # hub handles signals itself; a timer per wait would cost what this saves.
            seconds = None if deadline is None else max(deadline - monotonic(), 0.0)
            try:
                _WAITS[state](fileno, timeout=seconds, timeout_exc=_Idle)
                state = gen.send(_READY[state])
            except _Idle:
                state = gen.send(READY_NONE)
            if deadline is not None and monotonic() >= deadline:
                raise errors._WaitTimeout("wait timeout expired")
    except StopIteration as stop:
        return stop.value


def install() -> None:
    """Make psycopg wait on gevent's hub (call once gevent has patched the process)."""
    waiting.wait = wait
