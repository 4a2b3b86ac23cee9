#!/usr/bin/env python3
"""Publishing lag under load: how long Shopify's checkout trails the ledger, and what it costs.

    .venv/bin/python bench/publish.py [--workload hot|spread] [--duration 15] [--json PATH]

Starts a throwaway PostgreSQL cluster, the Shopify stand-in (tests/support/shopify_standin.py,
in this process, with the Standard plan's bucket unless --restore-rate), the Procfile's
``release``, ``web`` and ``worker`` pointed at it; seeds the SKUs, maps them to variants with
signed cart webhooks, waits for the first publish, then runs wrk's ``hot`` (or ``spread``)
reserve workload while the worker publishes.

The lag is measured per reservation, independently of the service's own metric: each
reservation's movement (its commit time, ``stock_movements.created_at``) is matched to the
first metafield write the stand-in stored whose ``free`` already counts it; lag = that write's
time − the reservation's. It prints p50/p99/max of that lag, the reservations/s, and the Shopify
calls and variant writes per second it cost, plus the publisher's own histogram
(``bazico_stock_publish_lag_seconds``, from the worker's metrics port) as a cross-check.
See bench/README.md, "Publishing to the checkout".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

from tests.support.procfile import free_port, procfile_commands, wait_for
from tests.support.shopify_install import standin
from tests.support.shopify_standin import ShopifyStandIn

ACCESS_TOKEN = "shpat_bench_publish"
TOKEN = secrets.token_urlsafe(16)
METRICS_PORT = free_port()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=("hot", "spread"), default="hot")
    parser.add_argument("--duration", type=int, default=15, help="seconds of wrk load")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=16, help="threads per gunicorn worker")
    parser.add_argument(
        "--restore-rate",
        type=float,
        default=100.0,
        help="the stand-in's cost bucket restore rate (Standard 100, Plus 1000 points/s)",
    )
    parser.add_argument("--database-url", help="use this database instead of a throwaway one")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def environ(args: argparse.Namespace, db_url: str, port: int, stand_in: ShopifyStandIn) -> Any:
    env = bench.service_env(db_url, port, TOKEN, args.workers, args.threads)
    env.update(
        SHOPIFY_ADMIN_URL=stand_in.url,
        SHOPIFY_ACCESS_TOKEN=ACCESS_TOKEN,
        SHOPIFY_API_KEY=stand_in.client_id,
        WORKER_METRICS_PORT=str(METRICS_PORT),
        # The abuse caps are per holder; the load has none, but the mapping carts hold many.
        HOLD_MAX_UNITS_PER_SKU="0",
        HOLD_MAX_ACTIVE_HOLDS="0",
        RATE_LIMIT_PER_CART="off",
        LOG_LEVEL="INFO",
    )
    return env


def histogram(port: int) -> dict[float, float]:
    """The worker's publish-lag histogram: upper bound -> cumulative count."""
    found: dict[float, float] = {}
    body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in body.splitlines():
        match = re.match(
            r'bazico_stock_publish_lag_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)', line
        )
        if match:
            found[float(match[1])] = float(match[2])
    return found


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> Any:
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank, lower, below = q * counts[-1], 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower
            return round(lower + (bound - lower) * (rank - below) / max(count - below, 1e-9), 3)
        lower, below = bound, count
    return None


def per_change_lags(
    engine: Any,
    writes: list[tuple[float, str, str]],
    variants: dict[str, int],
    baseline: dict[str, int],
    since: float,
) -> list[float]:
    """Each reservation since ``since``: its commit to the first write whose free counts it."""
    by_owner: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for at, owner, value in writes:
        by_owner[owner].append((at, int(json.loads(value)["free"])))
    lags: list[float] = []
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT sku, created_at FROM stock_movements WHERE reason = 'reserve' "
                "AND created_at >= to_timestamp(:since) ORDER BY sku, id"
            ),
            {"since": since},
        ).all()
    made: dict[str, int] = defaultdict(int)
    for sku, created_at in rows:
        made[sku] += 1
        owner = f"gid://shopify/ProductVariant/{variants[sku]}"
        needed = baseline[sku] - made[sku]  # the free figure that counts this reservation
        covering = next((at for at, free in by_owner[owner] if free <= needed), None)
        if covering is not None:
            lags.append(max(0.0, covering - created_at.timestamp()))
    return lags


def pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="bazico-bench-publish-"))
    skus = ["SKU-1"] if args.workload == "hot" else [f"SKU-{i}" for i in range(1, 1001)]
    with contextlib.ExitStack() as stack:
        stand_in = stack.enter_context(standin())
        stand_in.add_access_token(bench.BENCH_SHOP, ACCESS_TOKEN, "write_products")
        stand_in.set_bucket(bench.BENCH_SHOP, restore_rate=args.restore_rate)
        db_url = stack.enter_context(bench.database(args.database_url))
        port = free_port()
        env = environ(args, db_url, port, stand_in)
        procfile = procfile_commands(bench.REPO_ROOT / "Procfile")
        bench.run_release(procfile["release"], env, log_dir)
        web = bench.start_service(
            "web", ["bash", "-c", procfile["web"]], cwd=bench.REPO_ROOT, env=env, log_dir=log_dir
        )
        stack.callback(web.stop)
        base = f"http://127.0.0.1:{port}"
        bench.wait_ready(web, f"{base}/readyz")
        bench.seed_stock(base, TOKEN)
        variants = bench.map_variants(base, skus)
        worker = bench.start_service(
            "worker",
            ["bash", "-c", procfile["worker"]],
            cwd=bench.REPO_ROOT,
            env=env,
            log_dir=log_dir,
        )
        stack.callback(worker.stop)
        owners = {f"gid://shopify/ProductVariant/{v}" for v in variants.values()}
        wait_for(
            lambda: owners <= {m.owner_id for m in stand_in.metafields(bench.BENCH_SHOP)},
            "the first publish of every variant",
            120,
        )
        time.sleep(1.5)  # past the once-a-second interval: the load's first change is due
        baseline = {
            sku: int(stand_in.metafield(bench.BENCH_SHOP, f"gid://shopify/ProductVariant/{v}")
                     .json_value["free"])  # type: ignore[union-attr]
            for sku, v in variants.items()
        }  # fmt: skip
        calls_before = len(
            [c for c in stand_in.calls_of("graphql") if c.operation == "metafieldsSet"]
        )
        writes_before = len(stand_in.metafield_writes(bench.BENCH_SHOP))
        lag_before = histogram(METRICS_PORT)
        print(f"[publish] {args.workload}: wrk {args.duration}s, {args.connections} connections")
        started = time.time()
        output = bench.run_wrk(base, args.workload, TOKEN, args.duration, args.connections)
        ended = time.time()
        result = bench.parse_wrk(output)
        time.sleep(3.0)  # the last changes' publish
        writes = stand_in.metafield_writes(bench.BENCH_SHOP)
        calls = [c for c in stand_in.calls_of("graphql") if c.operation == "metafieldsSet"]
        lag_after = histogram(METRICS_PORT)
        engine = create_engine(db_url)
        try:
            lags = per_change_lags(engine, writes, variants, baseline, started)
        finally:
            engine.dispose()
        load_writes = [w for w in writes[writes_before:] if w[0] <= ended + 3.0]
        seconds = ended - started
        figures = {
            "workload": args.workload,
            "reservations_per_s": result.rps,
            "reserve_p50_ms": result.p50_ms,
            "reserve_p99_ms": result.p99_ms,
            "non_2xx": result.error_count,
            "reservations_matched": len(lags),
            "lag_p50_s": pct(lags, 0.50),
            "lag_p99_s": pct(lags, 0.99),
            "lag_max_s": pct(lags, 1.0),
            "metafield_writes_per_s": round(len(load_writes) / seconds, 2),
            "shopify_calls_per_s": round((len(calls) - calls_before) / seconds, 2),
            "throttled_calls": sum(1 for c in calls[calls_before:] if c.throttled),
            "publisher_metric_p50_s": histogram_quantile(0.5, lag_before, lag_after),
            "publisher_metric_p99_s": histogram_quantile(0.99, lag_before, lag_after),
            "restore_rate": args.restore_rate,
            "worker_log": str(worker.log_path),
        }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if result.error_count:
        bench.loud_warning(f"{result.error_count} errors under load")
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
