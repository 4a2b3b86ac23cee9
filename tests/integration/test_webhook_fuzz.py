"""Hypothesis fuzzers for what Shopify and Bling may send: signed, so every payload reaches the
handlers, but with the payload's shape bent every way (missing fields, nulls, wrong types, huge
numbers, unicode and NUL in SKUs and tokens, zero and negative quantities, repeated lines, empty
and non-list line lists).

Each example delivers a short sequence (a cart, then its checkout, then its order...) into one
database that keeps its state across examples. After every delivery:

- the answer is 200 or a documented 4xx, never a 5xx;
- a refused delivery (4xx) changed nothing (``snapshot``), not even its receipt;
- the ledger is balanced (counters = movements = holds; nothing negative).

SQLite and PostgreSQL; fixed, derandomized budgets (``EXAMPLES``) keep CI reproducible.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from bling.webhooks import sign as bling_sign
from shopify_app import create_app
from shopify_app.erp.stock_sync import BlingStockRows
from shopify_app.migrations_runner import upgrade
from shopify_app.runtime import EXTENSION_KEY
from tests.support.app import SHOP, SHOPIFY_SECRET, TOKEN, app_environ, engine_of
from tests.support.clock import FakeClock
from tests.support.ledger import assert_ledger_balanced, snapshot
from tests.support.shopify_sender import FIXTURE_TOPICS, fixture, signed_headers

pytestmark = pytest.mark.slow

#: Examples (each a sequence of up to ``MAX_DELIVERIES`` deliveries) per test and database.
EXAMPLES = {"sqlite": 300, "postgresql": 100}
MAX_DELIVERIES = 4
BLING_SECRET = "test-bling-secret"
BLING_DEPOSIT = 14887164653
#: Stocked before fuzzing, so deliveries meet real SKUs, holds and shortfalls.
STOCKED = {"BAZI-BONE-U": 3, "BAZI-CAMISETA-P": 1, "SOLD-OUT": 0}
#: Bling product id of each stocked SKU (the catalog a sync would have saved).
PRODUCTS = {"BAZI-BONE-U": 16001, "BAZI-CAMISETA-P": 16002, "SOLD-OUT": 16003}


# --- strategies ----------------------------------------------------------------------------

HUGE_INTS = st.sampled_from([2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30])
HUGE_FLOATS = st.sampled_from([1e308, -1e308, 1.5, 0.5, -0.0, 9.999999e15, float("inf")])
WEIRD_TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "BAZI\x00BONE",
            "🧢🔥",
            "שלום-مرحبا",  # RTL
            "\u202eU-ENOB-IZAB",  # right-to-left override
            "BAZI-BONE-U ",  # a stocked SKU with trailing space
            "x" * 256,
            "é" * 5000,
            "?key=abc",
            "null",
        ]
    ),
    st.text(max_size=20),
)
#: Any JSON value, small, for "wrong type" replacements.
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    HUGE_INTS,
    HUGE_FLOATS,
    WEIRD_TEXT,
    st.just([]),
    st.just({}),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` four times in five, else ``odd``: bent, but not so bent nothing gets through."""
    return st.integers(0, 4).flatmap(lambda n: odd if n == 0 else usual)


SKUS = st.one_of(st.sampled_from(sorted(STOCKED)), st.sampled_from(["UNTRACKED-1"]), WEIRD_TEXT)
QUANTITIES = st.one_of(st.integers(-2, 4), st.just(0), HUGE_INTS, HUGE_FLOATS, st.just("2"))
#: A few cart tokens, so carts, checkouts and orders of one example find each other.
TOKENS = st.one_of(st.sampled_from(["cart-a", "cart-b", "cart-a?key=1"]), JUNK)


#: What a line may say about its hold (``_bazico_hold``): a cart's object, an order's list of
#: name/value pairs, an id of no hold, or junk in either place.
HOLD_VALUES = st.one_of(st.uuids().map(str), JUNK)
PROPERTIES = st.one_of(
    st.none(),
    st.fixed_dictionaries({"_bazico_hold": HOLD_VALUES}),
    st.lists(st.fixed_dictionaries({"name": st.just("_bazico_hold"), "value": HOLD_VALUES})),
    JUNK,
)


@st.composite
def line_item(draw: st.DrawFn) -> Any:
    line: dict[str, Any] = {
        "variant_id": draw(st.one_of(st.integers(1, 5), HUGE_INTS, JUNK)),
        "properties": draw(PROPERTIES),
        "id": draw(st.one_of(st.integers(1, 50), HUGE_INTS, JUNK)),
        "sku": draw(mostly(st.sampled_from(sorted(STOCKED)), SKUS)),
        "quantity": draw(mostly(st.integers(1, 3), QUANTITIES)),
        "price": draw(st.one_of(st.just("89.90"), st.just("1e400"), st.just("NaN"), JUNK)),
        "name": draw(st.one_of(st.just("Boné Bázico"), WEIRD_TEXT, JUNK)),
    }
    for key in draw(st.sets(st.sampled_from(sorted(line)), max_size=2)):
        del line[key]
    return line


#: Line lists: empty, repeated SKUs, junk entries, or not a list at all.
LINE_ITEMS = st.one_of(
    st.lists(st.one_of(line_item(), JUNK), max_size=5),
    st.lists(line_item(), min_size=1, max_size=2).map(lambda lines: lines * 2),  # duplicated
    JUNK,
)


def _iso(base: Any, seconds: int) -> str:
    return (base + timedelta(seconds=seconds)).isoformat()


@st.composite
def payload(draw: st.DrawFn, topic: str, name: str, clock: FakeClock) -> dict[str, Any]:
    """The saved fixture for ``topic``, its ledger-relevant fields redrawn, then bent."""
    body: dict[str, Any] = copy.deepcopy(json.loads(fixture(name)))
    if "line_items" in body or topic.startswith(("carts/", "orders/")):
        body["line_items"] = draw(LINE_ITEMS)
    if topic.startswith("carts/"):
        body["token"] = body["id"] = draw(TOKENS)
    else:
        body["cart_token"] = draw(mostly(st.sampled_from(["cart-a", "cart-b"]), TOKENS))
    if topic.startswith("orders/"):
        body["id"] = draw(mostly(st.integers(1, 2**40), st.one_of(HUGE_INTS, JUNK)))
        body["name"] = draw(st.one_of(st.just("#1001"), JUNK))
        body["cancelled_at"] = draw(st.one_of(st.none(), st.just(_iso(clock.now, 0)), JUNK))
        body["note_attributes"] = draw(
            st.one_of(
                st.just([{"name": "_bazico_cart", "value": "cart-a"}]),
                st.lists(st.dictionaries(st.sampled_from(["name", "value"]), JUNK), max_size=2),
                JUNK,
            )
        )
        body["shipping_lines"] = draw(st.one_of(st.just(body.get("shipping_lines")), JUNK))
        body["total_shipping_price_set"] = draw(
            st.one_of(st.just(body.get("total_shipping_price_set")), JUNK)
        )
        body["customer"] = draw(st.one_of(st.just(body.get("customer")), JUNK))
        body["email"] = draw(st.one_of(st.just("a@b.c"), JUNK))
    if topic in ("customers/redact", "customers/data_request"):
        key = "orders_to_redact" if topic == "customers/redact" else "orders_requested"
        body[key] = draw(st.one_of(st.lists(st.one_of(st.integers(1, 5), HUGE_INTS, JUNK)), JUNK))
    # Time moves forward by default, so cart updates apply; sometimes it is junk or missing.
    body["updated_at"] = draw(mostly(st.integers(1, 10**6).map(lambda s: _iso(clock.now, s)), JUNK))
    body["processed_at"] = draw(st.one_of(st.just(_iso(clock.now, 0)), JUNK))
    # Then bend it: drop some fields, null others, give others a wrong type.
    keys = sorted(body)
    for key in draw(st.sets(st.sampled_from(keys), max_size=2)):
        del body[key]
    for key in draw(st.sets(st.sampled_from(keys), max_size=2)):
        body[key] = draw(JUNK)
    return body


SHOPIFY_TOPICS = sorted(
    {topic: name for name, topic in FIXTURE_TOPICS.items() if name != "carts_create.raw_2024.json"}
)
NAMES = {topic: name for name, topic in FIXTURE_TOPICS.items()}


@st.composite
def delivery(draw: st.DrawFn, clock: FakeClock) -> tuple[str, bytes]:
    topic = draw(st.sampled_from(SHOPIFY_TOPICS))
    body = draw(payload(topic, NAMES[topic], clock))
    # Now and then the X-Shopify-Topic header names no topic (or one longer than its column).
    odd_topic = st.one_of(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz/_-", max_size=100), st.just("x/" + "y" * 200)
    )
    return draw(mostly(st.just(topic), odd_topic)), json.dumps(body).encode()


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,  # the same examples every run: CI is reproducible
        database=None,  # no .hypothesis directory in the tree
        deadline=None,  # database round trips vary too much for a per-example deadline
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        report_multiple_bugs=False,
    )


# --- the app -------------------------------------------------------------------------------


@pytest.fixture
def fuzz_app(database_url: str, clock: FakeClock) -> Iterator[Flask]:
    environ = app_environ(
        database_url,
        LOG_LEVEL="ERROR",
        BLING_CLIENT_ID="test-bling-client",
        BLING_CLIENT_SECRET=BLING_SECRET,
        BLING_DEPOSIT_ID=str(BLING_DEPOSIT),
    )
    app = create_app(environ, clock=clock)
    engine = engine_of(app)
    if engine.dialect.name == "sqlite":
        upgrade(engine)
    client = app.test_client()
    for sku, on_hand in STOCKED.items():
        answer = client.put(
            f"/stock/{sku}", json={"on_hand": on_hand}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert answer.status_code == 200
    uow = app.extensions[EXTENSION_KEY].uow()
    with uow:
        BlingStockRows(uow).save_catalog(PRODUCTS)
        uow.commit()
    yield app
    engine.dispose()


def deliver_and_check(
    client: FlaskClient, engine: Engine, path: str, raw: bytes, headers: dict[str, str]
) -> int:
    before = snapshot(engine)
    answer = client.post(path, data=raw, headers=headers)
    status = answer.status_code
    assert status < 500, f"{status} for {raw[:300]!r}: {answer.get_data(as_text=True)[:300]}"
    assert status in (200, 400, 401, 413), f"undocumented {status}"
    if status != 200:
        assert snapshot(engine) == before, f"refused with {status} but changed the database"
        body = answer.get_json()
        assert isinstance(body["error"], str) and isinstance(body["message"], str)
    assert_ledger_balanced(engine)
    # Seen with --hypothesis-show-statistics: how far the bent payloads got.
    outcome = (answer.get_json() or {}).get("status") or (answer.get_json() or {}).get("error")
    if currently_in_test_context():
        event(f"{path} {status} {outcome}")
    return status


# --- Shopify -------------------------------------------------------------------------------


def test_bent_shopify_webhooks_never_break_the_ledger(fuzz_app: Flask, clock: FakeClock) -> None:
    engine = engine_of(fuzz_app)
    client = fuzz_app.test_client()

    webhook_ids = itertools.count()  # every delivery is new: duplicates are tested elsewhere

    @_settings(EXAMPLES[engine.dialect.name])
    @given(deliveries=st.lists(delivery(clock), min_size=1, max_size=MAX_DELIVERIES))
    def fuzz(deliveries: list[tuple[str, bytes]]) -> None:
        for topic, raw in deliveries:
            webhook_id = f"fuzz-{next(webhook_ids)}"
            headers = signed_headers(
                raw, topic, secret=SHOPIFY_SECRET, shop=SHOP, webhook_id=webhook_id
            )
            deliver_and_check(client, engine, "/webhooks/shopify", raw, headers)
        clock.advance(60)  # holds of earlier examples come due now and then

    fuzz()


def test_every_saved_fixture_is_accepted_after_the_fuzzing_shapes(
    fuzz_app: Flask, clock: FakeClock
) -> None:
    """Sanity for the strategies: the unbent fixtures are still applied (200)."""
    engine = engine_of(fuzz_app)
    client = fuzz_app.test_client()
    for name, topic in sorted(FIXTURE_TOPICS.items()):
        raw = fixture(name)
        headers = signed_headers(raw, topic, secret=SHOPIFY_SECRET, shop=SHOP)
        assert deliver_and_check(client, engine, "/webhooks/shopify", raw, headers) == 200


# --- Bling ---------------------------------------------------------------------------------

PRODUCT_IDS = st.one_of(st.sampled_from(sorted(PRODUCTS.values())), HUGE_INTS, JUNK)
BALANCES = st.one_of(st.integers(-3, 10), st.floats(allow_nan=False, width=32), HUGE_FLOATS, JUNK)


FRESH = "<fresh event id>"  # replaced by a new id at delivery: most events are not repeats


@st.composite
def bling_event(draw: st.DrawFn, clock: FakeClock) -> dict[str, Any]:
    deposit = {
        "id": draw(mostly(st.just(BLING_DEPOSIT), st.one_of(HUGE_INTS, JUNK))),
        "saldoFisico": draw(BALANCES),
        "saldoVirtual": draw(BALANCES),
    }
    data: dict[str, Any] = {
        "produto": draw(
            mostly(st.fixed_dictionaries({"id": PRODUCT_IDS}), st.one_of(JUNK, st.just({})))
        ),
        "deposito": deposit,
        "operacao": draw(st.one_of(st.sampled_from(["E", "S", "B"]), JUNK)),
        "quantidade": draw(BALANCES),
        "saldoFisicoTotal": draw(BALANCES),
        "saldoVirtualTotal": draw(BALANCES),
    }
    if draw(st.booleans()):
        data["depositos"] = draw(st.one_of(st.lists(st.just(deposit), max_size=2), JUNK))
    envelope: dict[str, Any] = {
        "eventId": draw(mostly(st.just(FRESH), st.one_of(WEIRD_TEXT, JUNK))),
        "date": draw(
            mostly(
                st.integers(-(10**5), 10**5).map(lambda s: _iso(clock.now, s)),
                st.one_of(
                    st.just("2025-02-30T00:00:00Z"), st.just("9999-12-31T23:59:59+14:00"), JUNK
                ),
            )
        ),
        "version": "v1",
        "event": draw(
            mostly(
                st.sampled_from(
                    ["stock.updated", "stock.created", "stock.deleted", "virtual_stock.updated"]
                ),
                st.one_of(
                    st.sampled_from(["order.created", "product.updated", "stock", "."]), JUNK
                ),
            )
        ),
        "companyId": "abc",
        "data": draw(mostly(st.just(data), JUNK)),
    }
    for key in draw(st.sets(st.sampled_from(sorted(envelope)), max_size=1)):
        del envelope[key]
    return envelope


def test_bent_bling_events_never_break_the_ledger(fuzz_app: Flask, clock: FakeClock) -> None:
    engine = engine_of(fuzz_app)
    client = fuzz_app.test_client()

    event_ids = itertools.count()

    @_settings(EXAMPLES[engine.dialect.name])
    @given(events=st.lists(bling_event(clock), min_size=1, max_size=MAX_DELIVERIES))
    def fuzz(events: list[dict[str, Any]]) -> None:
        for envelope in events:
            if envelope.get("eventId") == FRESH:
                envelope["eventId"] = f"fuzz-{next(event_ids)}"
            raw = json.dumps(envelope).encode()
            headers = {"Content-Type": "application/json", "X-Bling-Signature-256": ""}
            headers["X-Bling-Signature-256"] = bling_sign(raw, BLING_SECRET)
            deliver_and_check(client, engine, "/webhooks/bling", raw, headers)

    fuzz()
