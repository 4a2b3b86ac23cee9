"""schemathesis against the service's own OpenAPI document (``/openapi.json``), in process.

Every documented operation is fuzzed through the Flask app (WSGI, no server), with schema-valid
and schema-violating requests, on SQLite and on PostgreSQL. For each request:

- never a 5xx, except the 5xx an operation documents for an outside dependency being down;
- the answer's status code, content type and body conform to the document;
- a refused request (4xx) leaves every row of every table as it was (``snapshot``);
- the ledger stays balanced (counters = movements = holds).

A stateful run then follows the document's links (PUT stock -> reserve -> confirm / release) so
that holds are really created, confirmed and released with ids the service gave out.

The budget is fixed and the runs are derandomized, so CI is reproducible; the hypothesis
example database is off (nothing is written into the tree).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import Case, GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from shopify_app import create_app
from shopify_app.migrations_runner import upgrade
from shopify_app.schema import metadata
from shopify_app.shopify.signatures import proxy_signature
from tests.support.app import SHOP, SHOPIFY_SECRET, TOKEN, app_environ, engine_of
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, snapshot

pytestmark = pytest.mark.slow

#: Examples per operation and database (about 30 s in all, both databases, on 2 cores).
EXAMPLES = 40
#: Stateful scenarios (each up to STEPS calls following the links).
SCENARIOS = 25
STEPS = 12
BEARER = {"Authorization": f"Bearer {TOKEN}"}
#: SKUs stocked before fuzzing, so reserve / confirm / release reach the ledger, not just 404.
STOCKED = {"0": 5, "A": 3, "BAZI-BONE-U": 2}
#: 5xx an operation documents because it depends on Shopify, Bling or the database being up.
DOCUMENTED_5XX = {502, 503}


def _environ(database_url: str) -> dict[str, str]:
    return app_environ(database_url, LOG_LEVEL="ERROR")


def _operation_labels() -> list[str]:
    """Every operation of the document (read from a throwaway app: the spec needs no database)."""
    app = create_app(_environ("sqlite://"))
    spec = app.test_client().get("/openapi.json").get_json()
    engine_of(app).dispose()
    return [f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops]


OPERATIONS = _operation_labels()

CONFIG = SchemathesisConfig.from_dict(
    {
        # Half the SKUs in paths and lines are stocked ones, so requests reach the ledger (holds
        # created, confirmed, released) instead of stopping at 404 unknown_sku.
        "dictionaries": {"stocked": {"values": sorted(STOCKED)}},
        "parameters": {
            "path.sku": {"dictionary": "stocked", "probability": 0.5},
            "body.lines.sku": {"dictionary": "stocked", "probability": 0.5},
        },
        "checks": {
            # Valid data may still meet an unknown SKU, an unknown / ended hold, or no stock; and
            # the webhooks' and OAuth's signatures are not something the document can describe.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", 401, 403, 404, 409, 410]
            },
        },
    }
)


def _integral_floats_as_ints(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer; the API (strict ints, README) does not."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    return value


def load_schema(app: Flask) -> Any:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=CONFIG)

    @schema.hook("map_body")
    def _strict_ints(context: Any, body: Any) -> Any:
        return _integral_floats_as_ints(body)

    return schema


@pytest.fixture
def fuzz_app(database_url: str, clock: FakeClock) -> Iterator[Flask]:
    app = create_app(_environ(database_url), clock=clock)
    engine = engine_of(app)
    if engine.dialect.name == "sqlite":
        upgrade(engine)
    stock_the_shelves(app)
    yield app
    engine.dispose()


def stock_the_shelves(app: Flask) -> None:
    """Empty every table, then stock ``STOCKED``: each stateful scenario starts the same."""
    with engine_of(app).begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    client = app.test_client()
    for sku, on_hand in STOCKED.items():
        answer = client.put(f"/stock/{sku}", json={"on_hand": on_hand}, headers=BEARER)
        assert answer.status_code == 200


def sign_for_the_proxy(case: Case, clock: FakeClock) -> None:
    """App Proxy calls carry Shopify's query signature; without it every case is a 401."""
    if not case.path.startswith("/proxy/"):
        return
    query = {k: str(v) for k, v in (case.query or {}).items()}
    query.update(shop=SHOP, timestamp=str(int(clock.now.timestamp())), path_prefix="/apps/bazico")
    query.pop("signature", None)
    query["signature"] = proxy_signature(SHOPIFY_SECRET, {k: [v] for k, v in query.items()})
    case.query = query


CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]
#: Operations whose real inputs the document cannot describe (Shopify's signed OAuth query, the
#: Bling app's configuration): a schema-valid request is still refused, as documented (400/503).
INPUTS_OUTSIDE_THE_DOCUMENT = {
    "GET /auth/install",
    "GET /auth/callback",
    "GET /bling/connect",
    "GET /bling/callback",
}


def call_and_check(case: Case, engine: Engine, clock: FakeClock) -> Any:
    """One request, with the service-wide properties checked around it."""
    sign_for_the_proxy(case, clock)
    before = snapshot(engine)
    # The bearer token of the fixtures, unless the case is about a bad or missing Authorization
    # header: then it goes as generated (and must be refused with 401, changing nothing).
    bad_auth = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    headers = None if bad_auth else BEARER
    response = case.call(headers=headers)
    status = response.status_code
    if status >= 500:
        documented = str(status) in case.operation.definition.raw.get("responses", {})
        assert documented and status in DOCUMENTED_5XX, (
            f"{case.operation.label} answered {status}: {response.text[:500]}"
        )
    checks = CHECKS
    if case.operation.label in INPUTS_OUTSIDE_THE_DOCUMENT:
        checks = [c for c in CHECKS if c is not positive_data_acceptance]
    case.validate_response(response, checks=checks, headers=headers)
    if 400 <= status < 500:
        assert snapshot(engine) == before, (
            f"{case.operation.label} refused with {status} but changed the database"
        )
        if response.headers.get("Content-Type", "").startswith("application/json"):
            body = json.loads(response.content)
            assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str)
    assert_ledger_balanced(engine)
    return response


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,  # no .hypothesis directory in the tree
    deadline=None,  # database round trips vary too much for a per-example deadline
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    report_multiple_bugs=False,
)


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_operation_answers_as_documented(
    label: str, fuzz_app: Flask, clock: FakeClock
) -> None:
    schema = load_schema(fuzz_app)
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    engine = engine_of(fuzz_app)
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @FUZZ_SETTINGS
    @given(case=cases)
    def fuzz(case: Case) -> None:
        call_and_check(case, engine, clock)

    fuzz()


def test_stateful_links_follow_holds_through_their_life(fuzz_app: Flask, clock: FakeClock) -> None:
    schema = load_schema(fuzz_app)
    engine = engine_of(fuzz_app)
    base = schema.as_state_machine()

    class Workflow(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            # Replays of a scenario must meet the same ledger, or hypothesis calls them flaky.
            stock_the_shelves(fuzz_app)

        def call(self, case: Case, **kwargs: Any) -> Any:
            return call_and_check(case, engine, clock)

        def validate_response(self, response: Any, case: Case, **kwargs: Any) -> None:
            """Checked in ``call`` already, with the same checks."""

    run_state_machine_as_test(
        Workflow,
        settings=settings(FUZZ_SETTINGS, max_examples=SCENARIOS, stateful_step_count=STEPS),
    )
