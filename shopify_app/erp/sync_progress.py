"""Progress of a long Bling read (``bling sync``): pages read, products, time left.

Bling gives no total while the catalog is paged, so the time left is known once the catalog is
read: one balance request per 50 SKUs remains, at BLING_REQUESTS_PER_SECOND. On a terminal one
line is rewritten in place; otherwise (a dyno, a pipe) a line is printed and logged every few
requests, so an operator tailing the logs sees the sync move.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from bling.client import BlingClient, data_list
from bling.products import BALANCE_BATCH

log = logging.getLogger(__name__)
#: Without a terminal, a line every this many requests (and at each phase's end).
LINE_EVERY = 10


class SyncProgress:
    """Counts the requests a sync makes through ``track(client)`` and reports them."""

    def __init__(
        self,
        stream: IO[str],
        *,
        tty: bool,
        requests_per_second: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = tty
        self.rate = requests_per_second
        self.clock = clock
        self.started = clock()
        self.pages = 0
        self.products = 0
        self.batches = 0
        self.batches_total: int | None = None

    def track(self, client: BlingClient) -> BlingClient:
        """``client`` with its GETs counted (the sync only reads)."""
        progress = self

        class Counted(BlingClient):
            def __init__(self) -> None:  # a view of ``client``: nothing of its own to set up
                self.__dict__.update(client.__dict__)

            def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
                body = client.get(path, params)
                progress.answered(path, body)
                return body

        return Counted()

    def answered(self, path: str, body: Any) -> None:
        if path == "/produtos":
            self.pages += 1
            rows = data_list(body) if isinstance(body, dict) else []
            self.products += len(rows)
            if not rows:  # the empty page ends the catalog: the balance requests are known
                self.batches_total = math.ceil(self.products / BALANCE_BATCH)
                self.report("products", force=True)
                return
            self.report("products")
        elif path.startswith("/estoques/saldos"):
            self.batches += 1
            self.report("balances", force=self.batches == self.batches_total)

    def seconds_left(self) -> float | None:
        if self.batches_total is None:
            return None
        return max(0, self.batches_total - self.batches) / self.rate

    def line(self, phase: str) -> str:
        elapsed = self.clock() - self.started
        left = self.seconds_left()
        eta = "?" if left is None else f"~{left:.0f} s"
        if phase == "products":
            done = f"products: {self.pages} page(s) read, {self.products} product(s)"
        else:
            done = f"balances: {self.batches}/{self.batches_total or '?'} request(s)"
        return f"bling sync {done}; {elapsed:.0f} s elapsed, time left {eta}"

    def report(self, phase: str, *, force: bool = False) -> None:
        text = self.line(phase)
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            return
        if force or (self.pages + self.batches) % LINE_EVERY == 0:
            self.stream.write(text + "\n")
            self.stream.flush()
            log.info("bling.sync_progress %s", text)

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
