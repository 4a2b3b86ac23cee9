#!/usr/bin/env python3
"""Load our stock service and the seed's peer side by side with wrk, in one run.

    .venv/bin/python bench/run.py [--only ours|peer] [--workloads hot,spread,read]
                                  [--duration 15] [--connections 64] [--json PATH]

Starts a throwaway PostgreSQL cluster (unless --database-url), our service from the Procfile
(``release`` then ``web``), and the peer (FastAPI + one lock, uvicorn, one process); seeds our
stock; then, per workload, runs wrk against both alternately and prints req/s, p50, p99 and the
ratio ours/peer. The machine is shared and noisy, so only the ratios measured in the same run
mean anything; absolute figures do not carry over between runs. See bench/README.md.

Long because one script starts PostgreSQL, both services under gunicorn and wrk, runs each
workload side by side and prints the ratios, so a benchmark run is one command with nothing else
to install.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# The repository's own helpers (Procfile parsing, /proc walking, throwaway PostgreSQL).
sys.path.insert(0, str(REPO_ROOT))
from shopify_app.shopify.proxy import MAX_SKEW_SECONDS  # noqa: E402
from tests.support.pgcluster import PgCluster  # noqa: E402
from tests.support.procfile import children_of, free_port, procfile_commands  # noqa: E402

VENV_BIN = REPO_ROOT / ".venv" / "bin"
DEFAULT_PEER = REPO_ROOT.parent / "shared" / "peers" / "seed_reference"

#: The storefront's path first (the headline): App Proxy reserves with a cart and an address.
STOREFRONT_WORKLOADS = ("proxy_hot", "proxy_spread", "proxy_cart")
WORKLOADS = (*STOREFRONT_WORKLOADS, "hot", "spread", "read")
BENCH_SHOPIFY_SECRET = "bench-shopify-secret"
BENCH_SHOP = "bazico-bench.myshopify.com"
BENCH_SHOPIFY_TOKEN = "shpat_bench_run"
#: Variant ids of SKU-n in the Shopify stand-in (the worker publishes their metafields).
VARIANT_BASE = 90_000_000_000
# Reservations against 10^9 units can never run out, so any non-2xx there is a bug.
RESERVE_WORKLOADS = frozenset({"hot", "spread", *STOREFRONT_WORKLOADS})
SKU_COUNT = 1000
SEED_ON_HAND = 10**9
WARMUP_S = 3
WRK_THREADS = 2
# wrk's default 2 s timeout would turn slow answers into "socket errors" and drop them from the
# latency histogram, hiding exactly the tail we want to see.
WRK_TIMEOUT = "10s"
READY_TIMEOUT_S = 90.0
RELEASE_TIMEOUT_S = 300.0
STOP_GRACE_S = 15.0

TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


class BenchError(Exception):
    """A setup step failed; the message says which and where its log is."""


class CleanupStack(contextlib.ExitStack):
    """An ExitStack whose cleanup cannot be cut short by a second Ctrl-C or SIGTERM.

    An interrupted cleanup would leave gunicorn workers or the PostgreSQL cluster running.
    """

    def __exit__(self, *exc_info: Any) -> bool:
        signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in signums}
        try:
            return super().__exit__(*exc_info)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


class Terminated(Exception):
    """SIGTERM/SIGHUP arrived; raised so every ``finally`` cleanup still runs."""


def _on_signal(signum: int, _frame: object) -> None:
    raise Terminated(f"received signal {signal.Signals(signum).name}")


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


@dataclass
class Service:
    """A long-running process we started in its own process group (session)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        """SIGTERM the whole group (bash + gunicorn master + workers), then SIGKILL stragglers."""
        pgid = self.proc.pid  # start_new_session=True makes the child its group leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_GRACE_S)
        # The leader may be gone while workers linger in the group: always sweep it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def start_service(
    name: str, argv: list[str], *, cwd: Path, env: dict[str, str], log_dir: Path
) -> Service:
    log_path = log_dir / f"{name}.log"
    log = log_path.open("wb")
    try:
        # A new session keeps the terminal's Ctrl-C away from the services: we stop them
        # ourselves, in order, after wrk has been interrupted.
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()
    return Service(name, proc, log_path)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(service: Service, url: str, headers: dict[str, str] | None = None) -> None:
    """Poll ``url`` until 200; fail fast if the process dies, since it will never answer."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise BenchError(
                f"{service.name} exited with {service.proc.returncode} before it was ready; "
                f"log {service.log_path}:\n{log_tail(service.log_path)}"
            )
        try:
            r = requests.get(url, headers=headers, timeout=2)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    raise BenchError(
        f"{service.name} not ready after {READY_TIMEOUT_S:.0f}s at {url} ({last}); "
        f"log {service.log_path}:\n{log_tail(service.log_path)}"
    )


def _cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")).decode()
    except OSError:
        return ""


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def gunicorn_rss(root_pid: int) -> dict[str, Any]:
    """RSS of the gunicorn master and each worker under ``root_pid`` (bash may or may not exec)."""
    queue = [root_pid]
    master: int | None = None
    while queue:  # breadth first, so the first gunicorn found is the master, not a worker
        pid = queue.pop(0)
        if "gunicorn" in _cmdline(pid):
            master = pid
            break
        queue.extend(children_of(pid))
    if master is None:
        return {"master_pid": None, "master_mb": None, "workers_mb": []}
    workers = children_of(master)
    return {
        "master_pid": master,
        "master_mb": rss_mb(master),
        "workers_mb": [rss_mb(w) for w in workers],
    }


# ---------------------------------------------------------------------------------------------
# Our service
# ---------------------------------------------------------------------------------------------


def service_env(
    database_url: str,
    port: int,
    token: str,
    workers: int,
    threads: int,
    worker_class: str | None = None,
) -> dict[str, str]:
    # Only the variables of the contract (plus PATH), so nothing from the caller's shell
    # (a stray SHOPIFY_* or DB_POOL_SIZE) changes what is measured.
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}",
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "STOCK_API_TOKEN": token,
        "WEB_CONCURRENCY": str(workers),
        "WEB_THREADS": str(threads),
        "APP_ENV": "development",
        "LOG_LEVEL": "WARNING",
        # bench/webhooks.py signs deliveries, and storefront.lua App Proxy queries, with these,
        # as Shopify would for this shop.
        "SHOPIFY_API_SECRET": BENCH_SHOPIFY_SECRET,
        "SHOPIFY_SHOP_DOMAIN": BENCH_SHOP,
        # The abuse limits stay at the shipped defaults (per-cart caps, RATE_LIMIT_PER_IP,
        # RATE_LIMIT_PER_CART): the storefront workloads name a cart and an address on every
        # request; the REST ones are server-to-server calls without a holder.
    }
    if worker_class is not None:  # else gunicorn.conf.py's default, as a dyno runs
        env["WEB_WORKER_CLASS"] = worker_class
    return env


def run_release(command: str, env: dict[str, str], log_dir: Path, root: Path = REPO_ROOT) -> None:
    """Run the Procfile's ``release`` (migrations) to completion, as Heroku does before web."""
    service = start_service("release", ["bash", "-c", command], cwd=root, env=env, log_dir=log_dir)
    try:
        rc = service.proc.wait(timeout=RELEASE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        service.stop()
        raise BenchError(
            f"release did not finish in {RELEASE_TIMEOUT_S:.0f}s; log {service.log_path}:\n"
            f"{log_tail(service.log_path)}"
        ) from None
    finally:
        if service.proc.poll() is None:
            service.stop()
    if rc != 0:
        raise BenchError(
            f"release exited with {rc}; log {service.log_path}:\n{log_tail(service.log_path)}"
        )


def seed_stock(base_url: str, token: str) -> None:
    """PUT 10^9 units on SKU-1..SKU-1000 so reservations never run out during the run."""
    local = threading.local()
    headers = {"Authorization": f"Bearer {token}"}

    def put(i: int) -> str | None:
        # One keep-alive session per pool thread: requests.Session is not thread-safe.
        if not hasattr(local, "session"):
            local.session = requests.Session()
        r = local.session.put(
            f"{base_url}/stock/SKU-{i}",
            json={"on_hand": SEED_ON_HAND},
            headers=headers,
            timeout=30,
        )
        if 200 <= r.status_code < 300:
            return None
        return f"PUT /stock/SKU-{i} -> HTTP {r.status_code}: {r.text[:300]}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        failures = [f for f in pool.map(put, range(1, SKU_COUNT + 1)) if f]
    if failures:
        raise BenchError(f"seeding failed for {len(failures)} SKUs, first: {failures[0]}")


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    """Yield a DATABASE_URL: the given one, or a throwaway cluster stopped on exit."""
    if url:
        yield url
        return
    cluster = PgCluster()
    try:
        try:
            cluster.start()
            url = cluster.create_database("bench")
        except Exception as exc:
            raise BenchError(f"throwaway PostgreSQL cluster failed: {exc}") from exc
        print(f"[ours] throwaway PostgreSQL at {url}", flush=True)
        yield url
    finally:
        cluster.stop()


# ---------------------------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    requests: int | None
    non_2xx: int
    socket_errors: dict[str, int] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def _to_ms(value: str, unit: str) -> float:
    return round(float(value) * TIME_UNITS_MS[unit], 3)


def parse_wrk(text: str) -> WrkResult:
    """Read Requests/sec, the 50%/99% latency lines, and the error lines of ``wrk --latency``."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ", text, re.M)
    pct: dict[str, float] = {}
    for m in re.finditer(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M):
        pct[m.group(1)] = _to_ms(m.group(2), m.group(3))
    # wrk prints this line only when it is not zero; it counts every status >= 400.
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
        if sock
        else {}
    )
    return WrkResult(
        rps=float(rps.group(1)) if rps else None,
        p50_ms=pct.get("50"),
        p99_ms=pct.get("99"),
        requests=int(total.group(1)) if total else None,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=socket_errors,
    )


def signed_proxy_query() -> str:
    """The query Shopify's App Proxy adds to the storefront's request, signed now (the service
    accepts it for 120 s: one is made per wrk run)."""
    from tests.support.shopify_sender import signed_query

    return signed_query(secret=BENCH_SHOPIFY_SECRET, shop=BENCH_SHOP)


def run_wrk(
    base_url: str,
    workload: str,
    token: str,
    duration: int,
    connections: int,
    side: str = "ours",
) -> str:
    extra: list[str] = []
    if workload in STOREFRONT_WORKLOADS:
        script = BENCH_DIR / "storefront.lua"
        extra = [workload.removeprefix("proxy_"), side, signed_proxy_query()]
    else:
        script = BENCH_DIR / f"{workload}.lua"
    argv = [
        "wrk",
        f"-t{min(WRK_THREADS, connections)}",
        f"-c{connections}",
        f"-d{duration}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
        "-s",
        str(script),
        base_url,
        "--",
        token,  # reaches the script's init(args) as args[1]
        *extra,
    ]
    # wrk stays in our process group on purpose: Ctrl-C reaches it directly.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    return done.stdout


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str  # "ours" or "peer"
    base_url: str
    service: Service
    runs: dict[str, list[WrkResult]] = field(default_factory=dict)
    #: Ours with the worker: the Shopify stand-in it publishes to.
    stand_in: Any = None
    #: Ours: its database.
    db_url: str = ""


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarize(results: list[WrkResult]) -> dict[str, Any]:
    """Median over rounds (one round gives the plain figures); error counts are summed."""
    return {
        "rps": _median([r.rps for r in results]),
        "p50_ms": _median([r.p50_ms for r in results]),
        "p99_ms": _median([r.p99_ms for r in results]),
        "non_2xx": sum(r.non_2xx for r in results),
        "socket_errors": sum(sum(r.socket_errors.values()) for r in results),
        "rounds": [asdict(r) for r in results],
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(table: dict[str, dict[str, Any]]) -> None:
    header = [
        "workload",
        "ours req/s",
        "peer req/s",
        "ratio",
        "ours p50",
        "ours p99",
        "peer p50",
        "peer p99",
        "p99 ratio",
        "non-2xx o/p",
    ]
    rows = [header]
    for workload, entry in table.items():
        ours, peer = entry.get("ours"), entry.get("peer")

        def get(side: dict[str, Any] | None, key: str) -> float | None:
            return side.get(key) if side else None

        def errors(side: dict[str, Any] | None) -> str:
            if not side:
                return "-"
            extra = f"+{side['socket_errors']}sock" if side["socket_errors"] else ""
            return f"{side['non_2xx']}{extra}"

        rows.append(
            [
                workload,
                _fmt(get(ours, "rps"), 0),
                _fmt(get(peer, "rps"), 0),
                _fmt(entry.get("rps_ratio"), 2),
                _fmt(get(ours, "p50_ms"), 2),
                _fmt(get(ours, "p99_ms"), 2),
                _fmt(get(peer, "p50_ms"), 2),
                _fmt(get(peer, "p99_ms"), 2),
                _fmt(entry.get("p99_ratio"), 2),
                f"{errors(ours)}/{errors(peer)}",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for n, row in enumerate(rows):
        print(
            " | ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    print(
        "(latencies in ms; ratio = ours/peer req/s, higher is better for ours; "
        "p99 ratio = ours/peer p99, lower is better for ours)"
    )


def loud_warning(message: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n!!! WARNING: {message}\n{bar}\n", flush=True)


def start_ours(
    args: argparse.Namespace,
    stack: contextlib.ExitStack,
    token: str,
    log_dir: Path,
    root: Path = REPO_ROOT,
) -> Target:
    """Our Procfile's processes, from the checkout at ``root`` (another revision's, to compare
    with: bench/webhooks.py ``--baseline``)."""
    if not (root / "Procfile").is_file():
        raise BenchError(f"no Procfile in {root}; our service cannot be started")
    procfile = procfile_commands(root / "Procfile")
    if "web" not in procfile:
        raise BenchError("Procfile has no 'web' line")
    db_url = stack.enter_context(database(args.database_url))
    port = free_port()
    env = service_env(db_url, port, token, args.workers, args.threads, args.worker_class)
    env["PYTHONPATH"] = str(root)  # that checkout's package, not the one installed (editable)
    env.update(args.env)  # --env NAME=VALUE pairs, last one wins
    stand_in = None
    if args.with_worker:
        stand_in = stack.enter_context(shopify_stand_in())
        env.update(
            SHOPIFY_ADMIN_URL=stand_in.url,
            SHOPIFY_ACCESS_TOKEN=BENCH_SHOPIFY_TOKEN,
            SHOPIFY_API_KEY=stand_in.client_id,
        )
    if "release" in procfile:
        print(f"[ours] release: {procfile['release']}", flush=True)
        run_release(procfile["release"], env, log_dir, root)
    else:
        print("[ours] Procfile has no 'release' line; assuming the schema exists", flush=True)
    print(
        f"[ours] web on :{port}: {procfile['web']} "
        f"(WEB_CONCURRENCY={args.workers}, WEB_THREADS={args.threads}, "
        f"WEB_WORKER_CLASS={args.worker_class or 'default'})",
        flush=True,
    )
    web = start_service(
        "ours-web", ["bash", "-c", procfile["web"]], cwd=root, env=env, log_dir=log_dir
    )
    stack.callback(web.stop)
    base = f"http://127.0.0.1:{port}"
    wait_ready(web, f"{base}/readyz")
    t0 = time.monotonic()
    seed_stock(base, token)
    print(f"[ours] ready; seeded {SKU_COUNT} SKUs in {time.monotonic() - t0:.1f}s", flush=True)
    if stand_in is not None:
        if "worker" not in procfile:
            raise BenchError("the Procfile has no 'worker' line (run with --no-worker)")
        map_variants(base, [f"SKU-{i}" for i in range(1, SKU_COUNT + 1)])
        worker = start_service(
            "ours-worker",
            ["bash", "-c", procfile["worker"]],
            cwd=root,
            env=env,
            log_dir=log_dir,
        )
        stack.callback(worker.stop)
        wait_published(stand_in)
        print(
            f"[ours] worker up: {SKU_COUNT} variants published to the Shopify stand-in, "
            "inventory followed",
            flush=True,
        )
    analyze(db_url)
    return Target("ours", base, web, stand_in=stand_in, db_url=db_url)


def analyze(db_url: str) -> None:
    """Gather the planner's statistics once the catalog is seeded and published, as a store's
    database has them after its first sync (autovacuum's own analyze waits for its naptime and
    thresholds): plans chosen for empty tables scan whole tables once they fill."""
    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.autocommit = True
        conn.execute("ANALYZE")


@contextlib.contextmanager
def shopify_stand_in() -> Iterator[Any]:
    """The Shopify stand-in (tests/support/shopify_standin.py) in this process: the bench's shop
    with its token, its online location and SKU-1..SKU-1000 as variants stocked as seeded, so the
    worker's stock publisher and inventory follower run against it as against a live store."""
    from tests.support.shopify_install import standin

    with standin() as server:
        server.add_access_token(
            BENCH_SHOP, BENCH_SHOPIFY_TOKEN, "write_products,write_inventory,read_locations"
        )
        location = server.add_location(BENCH_SHOP, "Depósito Online")
        for i in range(1, SKU_COUNT + 1):
            variant = server.add_variant(BENCH_SHOP, f"SKU-{i}")
            item = server.inventory_item_of(BENCH_SHOP, variant)
            server.stock(BENCH_SHOP, item, location, SEED_ON_HAND)
        yield server


def map_variants(base: str, skus: list[str], lines_per_cart: int = 20) -> dict[str, int]:
    """Signed carts/update webhooks whose lines carry the SKUs: the service learns each one's
    variant (and holds one unit per line, like a shopper's cart; 20 lines a cart stay within
    the shipped per-cart caps)."""
    from shopify_app.shopify.signatures import webhook_signature

    variants = {sku: VARIANT_BASE + n for n, sku in enumerate(skus, start=1)}
    for start in range(0, len(skus), lines_per_cart):
        chunk = skus[start : start + lines_per_cart]
        cart = f"bench-map-{start}"
        body = json.dumps(
            {
                "id": cart,
                "token": cart,
                "updated_at": "2026-12-02T12:00:00Z",
                "line_items": [
                    {"id": i, "variant_id": variants[sku], "sku": sku, "quantity": 1}
                    for i, sku in enumerate(chunk, start=1)
                ],
            }
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "carts/update",
            "X-Shopify-Hmac-Sha256": webhook_signature(BENCH_SHOPIFY_SECRET, body),
            "X-Shopify-Shop-Domain": BENCH_SHOP,
            "X-Shopify-Webhook-Id": secrets.token_hex(16),
        }
        response = requests.post(f"{base}/webhooks/shopify", data=body, headers=headers, timeout=30)
        if response.status_code != 200:
            raise BenchError(f"mapping webhook: {response.status_code} {response.text[:300]}")
    return variants


def wait_published(stand_in: Any, timeout: float = 180.0) -> None:
    """Until the worker has written every variant's stock metafield once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(stand_in.metafields(BENCH_SHOP)) >= SKU_COUNT:
            return
        time.sleep(0.5)
    raise BenchError(
        f"the worker published {len(stand_in.metafields(BENCH_SHOP))} of {SKU_COUNT} variants "
        f"in {timeout:.0f}s"
    )


def start_peer(args: argparse.Namespace, stack: contextlib.ExitStack, log_dir: Path) -> Target:
    peer_dir = Path(args.peer).resolve()
    if not (peer_dir / "app.py").is_file():
        raise BenchError(f"peer not found: {peer_dir}/app.py does not exist (use --peer PATH)")
    python = VENV_BIN / "python"
    port = free_port()
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    argv = [
        str(python if python.exists() else sys.executable),
        "-m",
        "uvicorn",
        "app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    print(f"[peer] {peer_dir} on :{port}", flush=True)
    service = start_service("peer", argv, cwd=peer_dir, env=env, log_dir=log_dir)
    stack.callback(service.stop)
    base = f"http://127.0.0.1:{port}"
    # The peer has no /readyz; its stock is in memory from import, so one GET proves readiness.
    wait_ready(service, f"{base}/stock/SKU-1")
    return Target("peer", base, service)


def sku1_figures(target: Target, token: str) -> dict[str, Any]:
    try:
        r = requests.get(
            f"{target.base_url}/stock/SKU-1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    except requests.RequestException as exc:
        # A service that died under load must still get its table and RSS printed.
        return {"error": f"{type(exc).__name__}: {exc}"}
    if r.status_code != 200:
        return {"error": f"HTTP {r.status_code}: {r.text[:200]}"}
    data: dict[str, Any] = r.json()
    return data


@dataclass
class Profile:
    proc: subprocess.Popen[bytes]
    path: Path


def start_profile(
    args: argparse.Namespace, target: Target, workload: str, rnd: int
) -> Profile | None:
    """``--profile DIR``: py-spy samples one gunicorn worker of ours (wall time, all threads,
    idle ones included: waiting for PostgreSQL or for a pooled connection shows) during the
    measured run; collapsed stacks go to DIR/<workload>-<round>.txt."""
    if args.profile is None or target.name != "ours":
        return None
    workers = gunicorn_rss(target.service.proc.pid)
    master = workers["master_pid"]
    pids = children_of(master) if master else []
    if not pids:
        return None
    args.profile.mkdir(parents=True, exist_ok=True)
    path = args.profile / f"{workload}-{rnd + 1}.txt"
    argv = [
        str(VENV_BIN / "py-spy"),
        "record",
        "--idle",
        "--format",
        "raw",
        "--rate",
        "100",
        "--duration",
        str(max(1, round(args.duration))),  # py-spy takes whole seconds only
        "--pid",
        str(pids[0]),
        "--output",
        str(path),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Profile(proc, path)


def finish_profile(profile: Profile) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        profile.proc.wait(timeout=30)
    if profile.path.exists():
        print(f"  profile {profile.path}:")
        for share, name in profile_summary(profile.path)[:18]:
            print(f"    {share:5.1f}%  {name}")


def profile_summary(path: Path) -> list[tuple[float, str]]:
    """Inclusive share of samples per function (``file:function``), of request threads only
    (stacks through Flask's ``wsgi_app``); a function counted once per sample."""
    totals: dict[str, int] = {}
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "wsgi_app" not in stack:
            continue
        n = int(count)
        samples += n
        seen = set()
        for frame in stack.split(";"):
            name = re.sub(r" \(([^:)]*/)?([^/:)]+):\d+\)$", r" (\2)", frame.strip())
            if name not in seen:
                seen.add(name)
                totals[name] = totals.get(name, 0) + n
    if not samples:
        return []
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return [(100.0 * n / samples, name) for name, n in ranked]


def _shopify_calls(targets: list[Target]) -> tuple[int, int, int]:
    stand_in = next((t.stand_in for t in targets if t.stand_in is not None), None)
    if stand_in is None:
        return (0, 0, 0)
    return (
        len(stand_in.calls_of("graphql")),
        len(stand_in.metafield_writes(BENCH_SHOP)),
        len(stand_in.inventory_changes(BENCH_SHOP)),
    )


def _shopify_cost(
    targets: list[Target], before: tuple[int, int, int], seconds: float
) -> dict[str, Any]:
    """What the worker's publishing and inventory following cost in Shopify calls meanwhile."""
    stand_in = next((t.stand_in for t in targets if t.stand_in is not None), None)
    if stand_in is None:
        return {}
    calls, writes, inventory = _shopify_calls(targets)
    throttled = sum(1 for c in stand_in.calls_of("graphql")[before[0] :] if c.throttled)
    return {
        "seconds": round(seconds, 1),
        "calls_per_s": round((calls - before[0]) / seconds, 2),
        "metafield_writes_per_s": round((writes - before[1]) / seconds, 2),
        "inventory_writes": inventory - before[2],
        "throttled": throttled,
    }


def run_benchmark(
    args: argparse.Namespace, stack: contextlib.ExitStack, log_dir: Path
) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    targets: list[Target] = []
    if args.only in (None, "ours"):
        targets.append(start_ours(args, stack, token, log_dir))
    if args.only in (None, "peer"):
        targets.append(start_peer(args, stack, log_dir))

    warnings: list[str] = []
    shopify_calls_before = _shopify_calls(targets)
    load_started = time.monotonic()
    for rnd in range(args.rounds):
        for w_index, workload in enumerate(args.workloads):
            # Flip who goes first per workload and round, so a slow drift in the machine's
            # background load does not always favour the same side.
            order = targets if (w_index + rnd) % 2 == 0 else targets[::-1]
            for target in order:
                label = f"[{target.name}] {workload}" + (
                    f" (round {rnd + 1}/{args.rounds})" if args.rounds > 1 else ""
                )
                print(
                    f"{label}: warm-up {WARMUP_S}s, then {args.duration}s x "
                    f"{args.connections} connections",
                    flush=True,
                )
                side = target.name
                run_wrk(target.base_url, workload, token, WARMUP_S, args.connections, side)
                profiler = start_profile(args, target, workload, rnd)
                out = run_wrk(
                    target.base_url, workload, token, args.duration, args.connections, side
                )
                if profiler is not None:
                    finish_profile(profiler)
                result = parse_wrk(out)
                target.runs.setdefault(workload, []).append(result)
                print(
                    f"{label}: {_fmt(result.rps, 0)} req/s, p50 {_fmt(result.p50_ms, 2)} ms, "
                    f"p99 {_fmt(result.p99_ms, 2)} ms, non-2xx {result.non_2xx}, "
                    f"socket errors {result.socket_errors or 0}",
                    flush=True,
                )
                if result.rps is None:
                    warnings.append(f"{target.name}/{workload}: could not parse wrk output")
                    print(out, flush=True)
                if result.error_count and (workload in RESERVE_WORKLOADS or result.non_2xx):
                    msg = (
                        f"{target.name}/{workload}: {result.non_2xx} non-2xx answers and "
                        f"{sum(result.socket_errors.values())} socket errors "
                        f"(expected none with {SEED_ON_HAND:,} units per SKU)"
                    )
                    warnings.append(msg)
                    loud_warning(msg)
                time.sleep(1)  # let sockets and CPU settle before the other side starts

    table: dict[str, dict[str, Any]] = {}
    for workload in args.workloads:
        entry: dict[str, Any] = {}
        for target in targets:
            entry[target.name] = summarize(target.runs[workload])
        if "ours" in entry and "peer" in entry:
            entry["rps_ratio"] = _ratio(entry["ours"]["rps"], entry["peer"]["rps"])
            entry["p99_ratio"] = _ratio(entry["ours"]["p99_ms"], entry["peer"]["p99_ms"])
        table[workload] = entry

    shopify_cost = _shopify_cost(targets, shopify_calls_before, time.monotonic() - load_started)
    rss: dict[str, Any] = {}
    sanity: dict[str, Any] = {}
    for target in targets:
        if target.name == "ours":
            rss["ours"] = gunicorn_rss(target.service.proc.pid)
        else:
            rss["peer"] = {"pid": target.service.proc.pid, "mb": rss_mb(target.service.proc.pid)}
        sanity[target.name] = sku1_figures(target, token)

    ours_sku1 = sanity.get("ours", {})
    if "ours" in sanity:
        available = ours_sku1.get("available")
        if not isinstance(available, int) or available < 0:
            msg = f"ours: SKU-1 available is {available!r} after the run (must be an int >= 0)"
            warnings.append(msg)
            loud_warning(msg)

    print()
    print_table(table)
    print()
    if "ours" in rss:
        workers = ", ".join(_fmt(mb) for mb in rss["ours"]["workers_mb"]) or "-"
        print(
            f"RSS ours: gunicorn master {_fmt(rss['ours']['master_mb'])} MB, workers [{workers}] MB"
        )
    if "peer" in rss:
        print(f"RSS peer: {_fmt(rss['peer']['mb'])} MB (one uvicorn process)")
    if shopify_cost:
        print(
            f"Shopify stand-in during the load: {shopify_cost['calls_per_s']} GraphQL calls/s "
            f"({shopify_cost['metafield_writes_per_s']} variant metafields written/s, "
            f"{shopify_cost['inventory_writes']} inventory changes, "
            f"{shopify_cost['throttled']} throttled)"
        )
    for name, figures in sanity.items():
        keys = ("on_hand", "reserved", "committed", "available")
        shown = {k: figures[k] for k in keys if k in figures} or figures
        print(f"SKU-1 after the run, {name}: {shown}")
    if warnings:
        print(f"\n{len(warnings)} WARNING(S):")
        for w in warnings:
            print(f"  - {w}")

    return {
        "config": {
            "workloads": list(args.workloads),
            "duration_s": args.duration,
            "warmup_s": WARMUP_S,
            "connections": args.connections,
            "wrk_threads": min(WRK_THREADS, args.connections),
            "rounds": args.rounds,
            "web_concurrency": args.workers,
            "web_threads": args.threads,
            "web_worker_class": args.worker_class,
            "with_worker": args.with_worker,
            "targets": [t.name for t in targets],
            "cpus": os.cpu_count(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "results": table,
        "shopify": shopify_cost,
        "rss_mb": rss,
        "sku1_after": sanity,
        "warnings": warnings,
    }


def _env_item(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"{item!r} is not NAME=VALUE")
    return name, value


def add_service_options(p: argparse.ArgumentParser, *, worker_help: str) -> None:
    """How our processes run, for this bench and bench/webhooks.py alike: with the worker or
    without (``--no-worker``), and extra environment (``--env``)."""
    p.add_argument(
        "--with-worker", action=argparse.BooleanOptionalAction, default=True, help=worker_help
    )
    p.add_argument(
        "--no-worker",
        dest="with_worker",
        action="store_false",
        help="web only (the same as --no-with-worker)",
    )
    p.add_argument(
        "--env",
        type=_env_item,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for our processes (repeatable), to measure what one setting "
        "costs, e.g. --env CART_HOLD_GRACE_SECONDS=3600",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--only", choices=("ours", "peer"), help="benchmark one side only")
    p.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma separated subset of hot,spread,read (default: all)",
    )
    p.add_argument("--duration", type=int, default=15, help="seconds per measured wrk run")
    p.add_argument("--connections", type=int, default=64, help="wrk connections")
    p.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY for our gunicorn")
    p.add_argument("--threads", type=int, default=16, help="WEB_THREADS per gunicorn worker")
    p.add_argument(
        "--worker-class",
        choices=("gevent", "gthread"),
        help="WEB_WORKER_CLASS for our gunicorn (default: gunicorn.conf.py's, gevent)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every workload N times (alternating order) and report medians",
    )
    p.add_argument("--peer", default=str(DEFAULT_PEER), help=f"peer directory ({DEFAULT_PEER})")
    p.add_argument("--database-url", help="use this database instead of a throwaway cluster")
    add_service_options(
        p,
        worker_help="run the Procfile's 'worker' line too, publishing holds and following "
        "inventory into a Shopify stand-in, as a live store does (default; --no-worker: web only)",
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    p.add_argument(
        "--profile",
        type=Path,
        help="sample one gunicorn worker of ours with py-spy during each measured run "
        "(collapsed stacks in this directory, a summary printed)",
    )
    args = p.parse_args(argv)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown or not workloads:
        p.error(f"--workloads: unknown {unknown}; choose from {', '.join(WORKLOADS)}")
    args.workloads = workloads
    for name in ("duration", "connections", "workers", "threads", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.only != "ours" and not (Path(args.peer) / "app.py").is_file():
        p.error(f"--peer: {Path(args.peer).resolve()}/app.py not found")
    longest = WARMUP_S + args.duration
    if set(workloads) & set(STOREFRONT_WORKLOADS) and longest >= MAX_SKEW_SECONDS:
        # One signed query serves a whole wrk run; past the service's window it answers 401.
        p.error(
            f"--duration: the storefront workloads' signed query is accepted for "
            f"{MAX_SKEW_SECONDS} s, and a run lasts {longest} s with its warm-up"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk not found on PATH (apt-get install -y wrk)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    log_dir = Path(tempfile.mkdtemp(prefix="bazico-bench-"))
    ok = False
    try:
        with CleanupStack() as stack:
            report = run_benchmark(args, stack, log_dir)
            print("\nstopping services...", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
            print(f"results written to {args.json}")
        ok = not report["warnings"]
        return 0 if ok else 1
    except BenchError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as exc:
        print(f"\ninterrupted ({str(exc) or 'Ctrl-C'}); services stopped", file=sys.stderr)
        return 130
    finally:
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"service logs kept in {log_dir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
