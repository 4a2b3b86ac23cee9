"""Bling is away for a stretch while orders keep coming: the outbox holds them, then drains.

The Procfile's ``web`` (gunicorn) takes signed ``orders/create`` webhooks and serves
``/metrics``; its ``worker`` forwards orders to the Bling stand-in, which keeps Bling's real limit
of 3 requests/s. Bling first answers 503 to everything, then refuses connections altogether.

Asserted: every webhook is still answered 200 at once (the sale does not depend on Bling); the
outbox grows with no job dead; ``/metrics`` shows the backlog (depth and the oldest job's age,
growing with the wall clock) so that the production alert ``OutboxBacklogTooOld``
(deploy/prometheus/alerts.yml) fires on it, checked by ``promtool test rules`` on the scraped
figures carried forward at their measured rate (the alert needs 15 + 5 minutes; the test
cannot wait that long); when Bling is back the backlog drains by itself, within Bling's limit,
and each order is created in Bling exactly once.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shopify_app.outbox.kinds import FORWARD_ORDER
from tests.support.app import SHOP, SHOPIFY_SECRET
from tests.support.bling_standin import BlingStandIn
from tests.support.deployment import Deployment as ChaosDeployment
from tests.support.ledger import assert_ledger_balanced
from tests.support.orders import shopify_order
from tests.support.outage import percentile, request
from tests.support.procfile import REPO_ROOT, free_port, wait_for, wait_ready
from tests.support.shopify_sender import signed_headers
from tests.support.tools import tool

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
SKUS = [f"BZ-OUT-{n:02d}" for n in range(20)]
BEFORE, DURING_503, DURING_REFUSED = 3, 18, 12


def order_payload(order_id: int) -> bytes:
    sku = SKUS[order_id % len(SKUS)]
    return json.dumps(shopify_order(order_id, [(sku, 1, "59.90")], name=f"#B{order_id}")).encode()


class Deployment(ChaosDeployment):
    """The chaos test's deployment, with web and worker started and the worker's metrics on."""

    def __init__(self, database_url: str, bling: BlingStandIn) -> None:
        self.port, self.worker_metrics_port = free_port(), free_port()
        super().__init__(
            database_url,
            bling,
            PORT=str(self.port),
            WORKER_OUTBOX_INTERVAL_SECONDS="0.2",
            WORKER_METRICS_PORT=str(self.worker_metrics_port),
            WEB_CONCURRENCY="2",
            WEB_THREADS="4",
        )
        self.sync()  # the first sync, in this process
        self.web = self.runner.start("web")
        wait_ready(self.port, self.web)
        self.worker = self.start_worker()

    def order(self, order_id: int) -> float:
        """Send one signed orders/create; return its latency (it must be a 200)."""
        raw = order_payload(order_id)
        headers = signed_headers(raw, "orders/create", secret=SHOPIFY_SECRET, shop=SHOP)
        answer = request(
            self.port, "POST", "/webhooks/shopify", kind="webhook", body=raw, headers=headers
        )
        assert answer.status == 200, answer
        assert answer.body == {"status": "confirmed"}, answer
        return answer.elapsed

    def metrics(
        self, port: int | None = None
    ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://127.0.0.1:{port or self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def backlog(metrics: dict, kind: str = FORWARD_ORDER) -> tuple[float, float, float]:
    """(pending, dead, oldest pending age in s) of ``kind`` as /metrics shows them."""
    pending = metrics.get(("bazico_outbox_jobs", (("kind", kind), ("status", "pending"))), 0.0)
    dead = metrics.get(("bazico_outbox_jobs", (("kind", kind), ("status", "dead"))), 0.0)
    age = metrics.get(("bazico_outbox_oldest_pending_age_seconds", (("kind", kind),)), 0.0)
    return pending, dead, age


def bling_failures(metrics: dict) -> float:
    return sum(
        value
        for (name, labels), value in metrics.items()
        if name == "bazico_bling_requests_total"
        and dict(labels).get("outcome") in ("server_error", "no_answer")
    )


@pytest.fixture
def bling() -> Iterator[BlingStandIn]:
    with BlingStandIn(products=[(sku, 500) for sku in SKUS], rate_limit=3, seed=17) as standin:
        yield standin


def test_orders_wait_out_a_bling_outage_and_drain_at_blings_rate(
    postgres_url: str, bling: BlingStandIn
) -> None:
    deployment = Deployment(postgres_url, bling)
    try:
        run(deployment, bling)
    finally:
        deployment.close()


def run(deployment: Deployment, bling: BlingStandIn) -> None:
    latencies: list[float] = []
    # Bling up: the first orders go through (the path works before the outage).
    for order_id in range(1, BEFORE + 1):
        latencies.append(deployment.order(order_id))
    wait_for(lambda: deployment.forwarded() == BEFORE, "the first orders forwarded", 60)

    # Bling down: first 503 to everything, then no connection at all.
    outage_began = time.monotonic()
    bling.answer_unavailable()
    worker_before = deployment.metrics(deployment.worker_metrics_port)
    scrapes: list[tuple[float, float, float, float]] = []  # (t, pending, dead, age)
    order_id = BEFORE
    for phase, count in (("503", DURING_503), ("refused", DURING_REFUSED)):
        if phase == "refused":
            bling.answer_unavailable(False)
            bling.refuse_connections()
        for _ in range(count):
            order_id += 1
            latencies.append(deployment.order(order_id))
            time.sleep(0.5)
            if order_id % 3 == 0:
                scrapes.append((time.monotonic(), *backlog(deployment.metrics())))
    time.sleep(2.0)
    scrapes.append((time.monotonic(), *backlog(deployment.metrics())))
    worker_after = deployment.metrics(deployment.worker_metrics_port)
    outage_ended = time.monotonic()
    outage = outage_ended - outage_began
    total = order_id
    in_backlog = total - BEFORE

    # The backlog as /metrics shows it: every order waiting, none dead, the oldest aging.
    t_last, pending, dead, age = scrapes[-1]
    assert pending == in_backlog, scrapes
    assert dead == 0, scrapes
    assert deployment.forwarded() == BEFORE
    first = next(s for s in scrapes if s[1] > 0)
    slope = (age - first[3]) / (t_last - first[0])
    assert 0.8 < slope < 1.2, scrapes  # the oldest order's age follows the wall clock
    assert age == pytest.approx(t_last - outage_began, abs=3.0)
    failures_rate = (bling_failures(worker_after) - bling_failures(worker_before)) / outage
    alert_fires_after = check_backlog_alert(age, slope)

    # Bling is back: the backlog drains by itself.
    bling.accept_connections()
    back = time.monotonic()
    calls_before = len(bling.calls)
    wait_for(lambda: deployment.forwarded() == total, "the backlog forwarded", 180)
    drained = time.monotonic()
    wait_for(lambda: backlog(deployment.metrics())[0] == 0, "/metrics to show it", 10)
    drain_calls = [c for c in bling.calls[calls_before:] if not c.path.startswith("/oauth")]
    first_call = min(c.at for c in drain_calls)
    span = max(c.at for c in drain_calls) - first_call
    drain_time = drained - back
    assert deployment.runner.stop(deployment.worker) == 0

    # Exactly once in Bling, nothing lost or dead here, the ledger right.
    by_number = Counter(o["numeroLoja"] for o in bling.sales_orders.values())
    assert by_number == Counter({f"#B{i}": 1 for i in range(1, total + 1)})
    assert set(bling.postings.values()) == {1} and len(bling.postings) == total
    assert deployment.jobs() == Counter({"done": total})
    assert_ledger_balanced(deployment.runtime.engine)
    # Within Bling's limit: the stand-in refused few (or no) calls for the rate.
    refused_for_rate = sum(1 for c in drain_calls if c.status == 429)
    assert refused_for_rate <= 3, refused_for_rate
    assert bling.max_calls_in_any_second <= 3

    statuses = Counter(c.status for c in bling.calls)
    print(
        f"\nBling outage: {outage:.1f} s ({DURING_503} orders while Bling answered 503, "
        f"{DURING_REFUSED} while it refused connections); webhooks all 200, latency "
        f"p50 {percentile(latencies, 50) * 1000:.0f} ms max {max(latencies) * 1000:.0f} ms; "
        f"backlog {int(pending)} pending, 0 dead, oldest {age:.1f} s old (growing "
        f"{slope:.2f} s/s) -> OutboxBacklogTooOld would fire {alert_fires_after / 60:.0f} min "
        f"after the oldest order; Bling failures seen by the worker "
        f"{failures_rate:.2f}/s (BlingFailing threshold 0.1/s); {bling.unavailable_answers} "
        f"answers were 503s. Bling back: first call after {first_call - back:.2f} s, backlog "
        f"of {in_backlog} drained in {drain_time:.1f} s with {len(drain_calls)} calls "
        f"({len(drain_calls) / max(span, 0.001):.2f} req/s over {span:.1f} s, "
        f"{in_backlog / drain_time:.2f} orders/s; limit 3 req/s, max "
        f"{bling.max_calls_in_any_second} in any second, {refused_for_rate} 429s); "
        f"all Bling answers {dict(statuses)}"
    )


def humanize_duration(seconds: int) -> str:
    """Prometheus' ``humanizeDuration`` for whole seconds under a day."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def check_backlog_alert(age: float, slope: float) -> int:
    """``promtool test rules`` with the production alerts.yml: the scraped oldest age, carried
    forward at the measured rate, fires OutboxBacklogTooOld exactly when the rule says (over
    900 s for 5 minutes) and not before. Returns the firing time in seconds of backlog age."""
    promtool = tool("promtool")  # fails rather than skips under REQUIRE_PROMTOOLS=1, as in CI
    start = round(age)
    per_minute = round(slope * 60)
    # The first evaluation (one per minute) at which the age is over 900 s, then 5 minutes on.
    over = next(m for m in range(120) if start + per_minute * m > 900)
    fires = over + 5
    value = start + per_minute * fires
    kind = FORWARD_ORDER
    series = f'bazico_outbox_oldest_pending_age_seconds{{job="bazico-web",kind="{kind}"}}'
    description = (
        f"The oldest due {kind} job has been pending for {humanize_duration(value)}: orders "
        "are not reaching Bling. Check the worker process and the BlingFailing / "
        "BlingDailyLimitReached alerts."
    )
    test = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": f"{start}+{per_minute}x{fires + 5}"}],
                "alert_rule_test": [
                    {
                        "eval_time": f"{fires - 1}m",
                        "alertname": "OutboxBacklogTooOld",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": f"{fires}m",
                        "alertname": "OutboxBacklogTooOld",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "page", "kind": kind},
                                "exp_annotations": {
                                    "summary": f"Outbox {kind} jobs are waiting for more than "
                                    "15 minutes",
                                    "description": description,
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = Path(ALERTS.parent / f".outage_alert_test_{time.monotonic_ns()}.yml")
    try:
        path.write_text(json.dumps(test))  # YAML is a superset of JSON
        result = subprocess.run(
            [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
        )
    finally:
        path.unlink(missing_ok=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return value
