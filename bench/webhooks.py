"""Signed carts/update webhooks delivered concurrently to the Procfile's web: webhooks/s, p99.

Each delivery is signed as Shopify signs it (HMAC of the raw body, a fresh X-Shopify-Webhook-Id)
and moves one of many carts forward (a newer updated_at each time, 1-3 lines over 1,000 SKUs),
so every request does the full work: verify, receipt, cart lock, SKU locks, holds. The lines
have the shape of Shopify's (tests/fixtures/shopify/carts_update.json: prices, key, variant_id
of the SKU's variant), and the worker runs as in a live store (``--no-worker``: web only).

    python bench/webhooks.py --duration 15 --concurrency 32
    python bench/webhooks.py --baseline 40033d2 --rounds 3   # that revision and ours, alternated

``--baseline REV`` runs the same load against the service as it was at REV (a git worktree of
it, the same virtualenv) and ours, each on its own throwaway database, alternating for
``--rounds``, and reports the medians and their ratio: a figure from another day or another run
says little on these shared machines (one run to the next varies by a fifth).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

from shopify_app.shopify.signatures import webhook_signature


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=32, help="client threads")
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="seconds of the same load first, then ANALYZE, not measured (see measure)",
    )
    parser.add_argument("--carts", type=int, default=2000, help="distinct carts updated")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument(
        "--worker-class",
        choices=("gevent", "gthread"),
        help="WEB_WORKER_CLASS for our gunicorn (default: gunicorn.conf.py's, gevent)",
    )
    parser.add_argument("--database-url", help="use this database instead of a throwaway one")
    bench.add_service_options(
        parser,
        worker_help="run the Procfile's worker too, publishing into a Shopify stand-in (default)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile", type=Path, help="sample one gunicorn worker with py-spy (see bench/run.py)"
    )
    parser.add_argument("--baseline", metavar="REV", help="measure this git revision too")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --baseline: alternate the two this many times and report medians",
    )
    return parser.parse_args(argv)


#: One line of Shopify's carts/update payload, the template of every line delivered.
LINE_TEMPLATE = json.loads(
    (bench.REPO_ROOT / "tests/fixtures/shopify/carts_update.json").read_text()
)["line_items"][0]


def line(sku_number: int, quantity: int) -> dict[str, object]:
    """A line of SKU-``sku_number``'s variant (the id bench.map_variants gave it)."""
    variant = bench.VARIANT_BASE + sku_number
    return {
        **LINE_TEMPLATE,
        "id": variant,
        "variant_id": variant,
        "key": f"{variant}:{secrets.token_hex(16)}",
        "sku": f"SKU-{sku_number}",
        "quantity": quantity,
    }


class Deliveries:
    """Thread-safe source of signed carts/update deliveries, each newer than the last."""

    def __init__(self, carts: int) -> None:
        self.carts = carts
        self.counter = itertools.count()
        self.lock = threading.Lock()
        # Now, not a fixed instant: a later load (after the warm-up) moves the same carts on.
        self.start = datetime.now(UTC)

    def next(self, rng: random.Random) -> tuple[bytes, dict[str, str]]:
        with self.lock:
            n = next(self.counter)
        token = f"bench-cart-{rng.randrange(self.carts)}"
        chosen = rng.sample(range(1, bench.SKU_COUNT + 1), rng.randint(1, 3))
        lines = [line(n, rng.randint(1, 3)) for n in chosen]
        updated = self.start + timedelta(milliseconds=n)
        body = json.dumps(
            {
                "id": token,
                "token": token,
                "updated_at": updated.isoformat().replace("+00:00", "Z"),
                "line_items": lines,
            }
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "carts/update",
            "X-Shopify-Hmac-Sha256": webhook_signature(bench.BENCH_SHOPIFY_SECRET, body),
            "X-Shopify-Shop-Domain": bench.BENCH_SHOP,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        }
        return body, headers


def load(port: int, args: argparse.Namespace) -> dict[str, object]:
    deliveries = Deliveries(args.carts)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + args.duration

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        seen: Counter[str] = Counter()
        while time.monotonic() < deadline:
            body, headers = deliveries.next(rng)
            started = time.perf_counter()
            try:
                conn.request("POST", "/webhooks/shopify", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                seen["connection_error"] += 1
                continue
            mine.append(time.perf_counter() - started)
            outcome = json.loads(data).get("status") if response.status == 200 else None
            seen[f"{response.status} {outcome or ''}".strip()] += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            statuses.update(seen)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.concurrency)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {
        "webhooks": len(latencies),
        "seconds": round(elapsed, 2),
        "webhooks_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
        "statuses": dict(statuses),
    }


def measure(args: argparse.Namespace, name: str, root: Path) -> dict[str, object]:
    """Start the Procfile's processes of the checkout at ``root``, load them, stop them.

    The carts, holds and receipts tables start empty, and plans the database prepared for
    empty tables scan them whole once they fill; a live store's tables have their statistics
    (autovacuum analyzes them). So a warm-up of the same load fills them, ANALYZE gathers their
    statistics (which also replans the prepared statements), and only then is it measured."""
    log_dir = Path(tempfile.mkdtemp(prefix=f"bazico-bench-webhooks-{name}-"))
    with contextlib.ExitStack() as stack:
        target = bench.start_ours(args, stack, secrets.token_urlsafe(16), log_dir, root)
        port = int(target.base_url.rsplit(":", 1)[1])
        if args.warmup > 0:
            load(port, argparse.Namespace(**{**vars(args), "duration": args.warmup}))
            bench.analyze(target.db_url)
        print(f"[{name}] {args.concurrency} clients, {args.duration:g}s of signed carts/update")
        profiler = bench.start_profile(args, target, f"webhooks-{name}", 0)
        result = load(port, args)
        if profiler is not None:
            bench.finish_profile(profiler)
    print(f"[{name}] {json.dumps(result, indent=2)}", flush=True)
    return result


@contextlib.contextmanager
def checkout_of(rev: str) -> Iterator[Path]:
    """A detached git worktree of ``rev``, removed afterwards."""
    where = Path(tempfile.mkdtemp(prefix="bazico-bench-baseline-")) / "checkout"
    git = ["git", "-C", str(bench.REPO_ROOT)]
    subprocess.run([*git, "worktree", "add", "--detach", str(where), rev], check=True)
    try:
        yield where
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(where)], check=False)


def median_of(runs: list[dict[str, object]]) -> dict[str, object]:
    """Each figure's median over ``runs`` (statuses summed)."""
    figures = ("webhooks_per_s", "p50_ms", "p99_ms", "mean_ms")
    merged: dict[str, object] = {
        k: round(statistics.median(float(str(r[k])) for r in runs), 2) for k in figures
    }
    statuses: Counter[str] = Counter()
    for r in runs:
        statuses.update(cast("dict[str, int]", r["statuses"]))
    merged["statuses"] = dict(statuses)
    merged["rounds"] = [r["webhooks_per_s"] for r in runs]
    return merged


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, object] = {}
    if args.baseline:
        with checkout_of(args.baseline) as root:
            runs: dict[str, list[dict[str, object]]] = {"baseline": [], "ours": []}
            for rnd in range(args.rounds):
                # Alternating order, so neither side always runs on a warmer (or busier) box.
                order = [("baseline", root), ("ours", bench.REPO_ROOT)]
                for name, where in order if rnd % 2 == 0 else order[::-1]:
                    runs[name].append(measure(args, name, where))
        results["baseline"] = {"rev": args.baseline, **median_of(runs["baseline"])}
        results["ours"] = ours = median_of(runs["ours"])
        base = results["baseline"]
        assert isinstance(base, dict)
        ratio = float(str(ours["webhooks_per_s"])) / float(str(base["webhooks_per_s"]))
        results["ratio"] = round(ratio, 2)
        print(json.dumps(results, indent=2))
        print(f"ours / {args.baseline}: {results['ratio']}x webhooks/s (medians of {args.rounds})")
    else:
        results["ours"] = measure(args, "ours", bench.REPO_ROOT)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    failures = {
        k: v
        for result in results.values()
        if isinstance(result, dict)
        for k, v in result["statuses"].items()
        if not k.startswith("200")
    }
    if failures:
        print(f"WARNING: non-200 answers: {failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
