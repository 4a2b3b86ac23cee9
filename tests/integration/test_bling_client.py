"""The Bling adapter against the stand-in server (tests/support/bling_standin.py), over HTTP.

Sleeps are fake (recorded) except in the rate-limit test, which needs the real clock; timeouts
are tens of milliseconds. Each test's stand-in is fresh.

Long because every Bling call the adapter makes, and every error Bling answers with, against one
stand-in.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from bling import orders, products
from bling.client import BlingClient, LocalRateLimiter, NullRateLimiter
from bling.errors import (
    BlingDailyLimitReached,
    BlingError,
    BlingNotFound,
    BlingOutcomeUnknown,
    BlingRateLimited,
    BlingServerError,
    BlingUnauthorized,
    BlingUnavailable,
    BlingValidationError,
    InvalidGrant,
)
from bling.oauth import InMemoryTokenStore, OAuthClient, TokenManager
from bling.webhooks import SIGNATURE_HEADER, parse_event, verify_signature
from tests.support.bling_standin import PAYMENT_METHOD_ID, BlingStandIn


class Sleeps(list[float]):
    """A fake ``sleep`` that only records how long it was asked to wait."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class MaxRng(random.Random):
    """Jitter pinned to its upper bound, to see the exponential envelope itself."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture
def standin() -> Iterator[BlingStandIn]:
    # No per-second limit here: retries under a fake sleep would trip it; one test turns it on.
    with BlingStandIn(rate_limit=None) as server:
        yield server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


Connect = Callable[..., BlingClient]


@pytest.fixture
def connect(sleeps: Sleeps) -> Iterator[Connect]:
    """A client with a TokenManager over tokens the stand-in issued (as after the OAuth dance)."""
    made: list[Any] = []

    def make(server: BlingStandIn, **kw: Any) -> BlingClient:
        oauth = OAuthClient(server.client_id, server.client_secret, server.base_url)
        manager = TokenManager(oauth, InMemoryTokenStore())
        manager.connect(server.authorize())
        options: dict[str, Any] = {"sleep": sleeps, "timeout": (1.0, 2.0), "max_retries": 4}
        options.update(kw)
        limiter = options.pop("rate_limiter", NullRateLimiter())
        client = BlingClient(
            server.base_url, options.pop("token_provider", manager), limiter, **options
        )
        client.token_manager = manager  # type: ignore[attr-defined]
        made.extend([oauth, client])
        return client

    yield make
    for thing in made:
        thing.close()


def order_input(server: BlingStandIn, contact_id: int, number: str = "#1001", **kw: Any) -> Any:
    product = server.product_id("SKU-A")
    line = orders.OrderLine(product, 2, Decimal("49.90"), "Camiseta", sku="SKU-A")
    fields: dict[str, Any] = {
        "store_number": number,
        "order_date": date(2026, 11, 27),
        "contact_id": contact_id,
        "lines": [line],
        "payment_method_id": PAYMENT_METHOD_ID,
        "shipping": Decimal("10.00"),
    }
    fields.update(kw)
    return orders.SalesOrderInput(**fields)


# --- reading -------------------------------------------------------------------------------


def test_iter_products_walks_every_page_until_an_empty_one(
    standin: BlingStandIn, connect: Connect
) -> None:
    skus = [f"SKU-{n:03d}" for n in range(205)]
    for sku in skus:
        standin.add_product(sku, 1)
    standin.add_product("", 1)  # a variation without SKU cannot be mapped: skipped
    client = connect(standin)

    refs = list(products.iter_products(client))

    assert [r.codigo for r in refs] == skus
    assert len({r.id for r in refs}) == 205
    pages = standin.calls_to("GET", "/produtos")
    # One walk per balance class: positive (4 pages, the 4th empty), then zero and negative.
    assert [(c.query["filtroSaldoEstoque"], c.query["pagina"]) for c in pages] == [
        (["1"], ["1"]),
        (["1"], ["2"]),
        (["1"], ["3"]),
        (["1"], ["4"]),
        (["0"], ["1"]),
        (["2"], ["1"]),
    ]
    assert all(c.query["limite"] == ["100"] and c.query["criterio"] == ["2"] for c in pages)


def test_a_plain_listing_hides_sold_out_products_and_the_walk_lists_every_balance(
    standin: BlingStandIn, connect: Connect
) -> None:
    """Bling's documented default (filtroSaldoEstoque=1, positive only), as the stand-in
    speaks it: a listing that passes nothing misses what is at zero or below."""
    stocked = {"POS": 3.0, "ZERO": 0.0, "NEG": -2.0, "HALF": 0.5}
    ids = {sku: standin.add_product(sku, balance) for sku, balance in stocked.items()}
    client = connect(standin)

    plain = client.get("/produtos", params={"criterio": 2})["data"]
    assert sorted(row["codigo"] for row in plain) == ["HALF", "POS"]

    refs = list(products.iter_products(client))
    assert sorted(refs) == sorted(products.ProductRef(i, sku) for sku, i in ids.items())
    assert products.find_products_by_sku(client, ["ZERO", "NEG", "POS"]) == {
        "ZERO": ids["ZERO"],
        "NEG": ids["NEG"],
        "POS": ids["POS"],
    }


def test_a_product_whose_balance_changes_during_the_walk_is_listed_once(
    standin: BlingStandIn, connect: Connect
) -> None:
    product = standin.add_product("SELLING", 1)
    client = connect(standin)
    walk = products.iter_products(client)
    assert next(walk) == products.ProductRef(product, "SELLING")  # listed as positive…
    standin.set_stock(product, 0)  # …sells out before the walk reaches the zero class
    assert list(walk) == []


def test_stock_balances_batch_ids_and_read_one_deposit(connect: Connect) -> None:
    with BlingStandIn(rate_limit=None, deposits=(1, 2)) as server:
        ids = [server.add_product(f"S{n}", n) for n in range(5)]  # S0 has zero stock
        server.set_stock(ids[3], 7, reserved=2, deposit_id=2)  # S3: 3 in deposit 1, 5 in 2
        client = connect(server)

        in_one = products.stock_balances(client, [*ids, 99], deposit_id=1, batch_size=2)
        virtual_total = products.stock_balances(client, ids)
        physical_two = products.stock_balances(client, ids, deposit_id=2, kind="physical")

        assert in_one == {ids[0]: 0, ids[1]: 1, ids[2]: 2, ids[3]: 3, ids[4]: 4, 99: 0}
        assert virtual_total[ids[3]] == 3 + 5
        assert physical_two[ids[3]] == 7
        batches = server.calls_to("GET", "/estoques/saldos/1")
        assert [len(c.query["idsProdutos[]"]) for c in batches] == [2, 2, 2]


def test_find_products_by_sku_matches_exactly(standin: BlingStandIn, connect: Connect) -> None:
    a = standin.add_product("BAZI-1")
    standin.add_product("BAZI-10")
    assert products.find_products_by_sku(connect(standin), ["BAZI-1", "NOPE"]) == {"BAZI-1": a}


def test_every_call_carries_the_bearer_token_and_enable_jwt(
    standin: BlingStandIn, connect: Connect
) -> None:
    client = connect(standin)
    products.stock_balances(client, [1, 2])
    client.get("/produtos")
    assert standin.calls and all(c.jwt_header and c.status == 200 for c in standin.calls)
    assert client.http_calls == len(standin.calls) == 2


# --- retries -------------------------------------------------------------------------------


def test_500s_are_retried_with_exponential_backoff(
    standin: BlingStandIn, connect: Connect, sleeps: Sleeps
) -> None:
    standin.add_product("SKU-A", 3)
    standin.fail_next(3)
    client = connect(standin, rng=MaxRng(), backoff_base=0.5)

    assert [r.codigo for r in products.iter_products(client)] == ["SKU-A"]

    assert sleeps == [0.5, 1.0, 2.0]  # the upper bound of each full-jitter draw doubles
    assert [c.status for c in standin.calls][:4] == [500, 500, 500, 200]
    # 4 for page 1, 1 for the empty page 2, then one (empty) page each for zero and negative
    assert client.http_calls == len(standin.calls) == 7


def test_jittered_delays_stay_within_their_bounds(
    standin: BlingStandIn, connect: Connect, sleeps: Sleeps
) -> None:
    standin.fail_next(4)
    client = connect(standin, rng=random.Random(3), backoff_base=0.2)
    client.get("/produtos")
    assert len(sleeps) == 4
    for attempt, delay in enumerate(sleeps):
        assert 0 <= delay <= 0.2 * 2**attempt


def test_persistent_500s_give_up_after_max_retries(
    standin: BlingStandIn, connect: Connect, sleeps: Sleeps
) -> None:
    standin.fail_rate = 1.0
    client = connect(standin, max_retries=2)
    with pytest.raises(BlingServerError) as caught:
        client.get("/produtos")
    assert caught.value.status == 500 and caught.value.type == "SERVER_ERROR"
    assert len(standin.calls) == 3 and len(sleeps) == 2


def test_random_500s_are_absorbed(connect: Connect) -> None:
    with BlingStandIn(rate_limit=None, seed=11) as server:
        for n in range(150):
            server.add_product(f"R{n}", n)
        server.fail_rate = 0.3
        client = connect(server, max_retries=8)
        refs = list(products.iter_products(client, page_size=20))
        assert len(refs) == 150
        assert any(c.status == 500 for c in server.calls), "the seeded faults did happen"


def test_429_bursts_wait_at_least_retry_after(
    standin: BlingStandIn, connect: Connect, sleeps: Sleeps
) -> None:
    standin.burst_429(2)
    client = connect(standin, rng=random.Random(5), backoff_base=0.5)
    client.get("/produtos")
    assert [c.status for c in standin.calls] == [429, 429, 200]
    assert len(sleeps) == 2
    for attempt, delay in enumerate(sleeps):
        assert 1.0 <= delay <= 1.0 + 0.5 * 2**attempt  # the 1 s window, plus jitter


def test_429_bursts_longer_than_the_retries_raise_rate_limited(
    standin: BlingStandIn, connect: Connect
) -> None:
    standin.burst_429(10)
    with pytest.raises(BlingRateLimited) as caught:
        connect(standin, max_retries=1).get("/produtos")
    assert "Limite de requisições" in str(caught.value)


def test_daily_limit_stops_at_once_until_midnight_in_sao_paulo(
    connect: Connect, sleeps: Sleeps
) -> None:
    now = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)  # 18:00 in São Paulo
    with BlingStandIn(rate_limit=None, daily_limit=2) as server:
        client = connect(server, now=lambda: now)
        client.get("/produtos")
        client.get("/produtos")
        with pytest.raises(BlingDailyLimitReached) as caught:
            client.get("/produtos")
        assert caught.value.until == datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
        assert sleeps == [], "retrying a daily 429 only burns tomorrow's budget"
        assert client.http_calls == 3


def test_read_timeouts_end_in_unavailable_after_the_retries(
    standin: BlingStandIn, connect: Connect, sleeps: Sleeps
) -> None:
    standin.slow(0.3)
    client = connect(standin, timeout=(1.0, 0.05), max_retries=2)
    with pytest.raises(BlingUnavailable) as caught:
        client.get("/produtos")
    assert not isinstance(caught.value, BlingOutcomeUnknown), "a GET changed nothing"
    assert "3 attempts" in str(caught.value)
    assert client.http_calls == 3 and len(sleeps) == 2


def test_connection_refused_is_unavailable(connect: Connect, sleeps: Sleeps) -> None:
    with BlingStandIn(rate_limit=None) as server:
        client = connect(server, max_retries=1)
    with pytest.raises(BlingUnavailable):  # the server is gone: nothing listens on its port
        client.get("/produtos")
    assert len(sleeps) == 1


# --- writes happen once --------------------------------------------------------------------


def test_a_create_whose_answer_is_lost_is_not_repeated_and_is_found_later(
    standin: BlingStandIn, connect: Connect
) -> None:
    standin.add_product("SKU-A", 5)
    client = connect(standin)
    contact = orders.consumer_final(client).id
    standin.lose_answers_rate = 1.0

    with pytest.raises(BlingOutcomeUnknown):
        orders.create_sales_order(client, order_input(standin, contact))

    assert len(standin.calls_to("POST", "/pedidos/vendas")) == 1, "never re-sent blindly"
    assert len(standin.orders_with_store_number("#1001")) == 1, "the write did happen"
    standin.lose_answers_rate = 0.0
    found = orders.find_sales_order_by_store_number(client, "#1001")
    assert found is not None and found.numero_loja == "#1001"
    assert orders.ensure_sales_order(client, order_input(standin, contact)) == (found.id, False)
    assert len(standin.sales_orders) == 1


def test_a_create_that_got_a_500_is_not_repeated(standin: BlingStandIn, connect: Connect) -> None:
    standin.add_product("SKU-A", 5)
    client = connect(standin)
    standin.fail_next(1)
    with pytest.raises(BlingServerError):
        orders.create_sales_order(client, order_input(standin, 1))
    assert len(standin.calls_to("POST", "/pedidos/vendas")) == 1


def test_a_create_refused_by_a_429_is_retried(
    standin: BlingStandIn, connect: Connect, sleeps: Sleeps
) -> None:
    standin.add_product("SKU-A", 5)
    client = connect(standin)
    standin.burst_429(1)
    created = orders.create_sales_order(client, order_input(standin, 1))
    assert [c.status for c in standin.calls_to("POST", "/pedidos/vendas")] == [429, 201]
    assert list(standin.sales_orders) == [created.id] and len(sleeps) == 1


def test_search_before_create_makes_one_order_and_one_contact(
    standin: BlingStandIn, connect: Connect
) -> None:
    standin.add_product("SKU-A", 5)
    client = connect(standin)
    ids = {
        orders.find_or_create_contact(client, "Ana", document="123.456.789-09", email="a@b.co")
        for _ in range(2)
    }
    assert len(ids) == 1 and len(standin.calls_to("POST", "/contatos")) == 1
    [contact] = ids
    assert orders.find_contact(client, "A@B.CO") is not None
    assert orders.find_or_create_contact(client, "Anônimo") == 1  # Consumidor Final

    first = orders.ensure_sales_order(client, order_input(standin, contact, store_id=2040))
    again = orders.ensure_sales_order(client, order_input(standin, contact, store_id=2040))
    assert first[1] is True and again == (first[0], False)
    assert len(standin.sales_orders) == 1
    stored = standin.sales_orders[first[0]]
    assert stored["total"] == 109.8 and stored["numero"] == 1
    assert orders.find_sales_order_by_store_number(client, "#1001", store_id=9) is None
    assert orders.get_sales_order(client, first[0]).store_id == 2040


def test_stock_is_posted_once_and_can_be_reversed(standin: BlingStandIn, connect: Connect) -> None:
    product = standin.add_product("SKU-A", 5)
    client = connect(standin)
    order_id, _ = orders.ensure_sales_order(client, order_input(standin, 1))

    orders.post_stock(client, order_id, standin.default_deposit)
    with pytest.raises(BlingValidationError):
        orders.post_stock(client, order_id, standin.default_deposit)
    assert standin.postings[order_id] == 1 and standin.balance(product) == (3, 3)

    orders.reverse_stock(client, order_id)
    assert standin.balance(product) == (5, 5)
    orders.post_stock(client, order_id)  # Bling's default deposit
    assert standin.postings[order_id] == 2 and standin.reversals[order_id] == 1
    orders.set_sales_order_status(client, order_id, 9)
    assert orders.get_sales_order(client, order_id).situacao_id == 9


# --- errors --------------------------------------------------------------------------------


def test_error_json_becomes_typed_errors_with_bling_messages(
    standin: BlingStandIn, connect: Connect, sleeps: Sleeps
) -> None:
    standin.add_product("SKU-A", 5)
    client = connect(standin)
    with pytest.raises(BlingValidationError) as caught:
        orders.create_sales_order(client, order_input(standin, 1, payment_method_id=999))
    [field] = caught.value.fields
    assert (field.code, field.collection[0].element) == (49, "formaPagamento")
    assert "Id da forma de pagamento inválido." in str(caught.value)

    with pytest.raises(BlingNotFound):
        orders.get_sales_order(client, 424242)
    with pytest.raises(BlingNotFound):
        products.stock_balances(client, [1], deposit_id=5)
    with pytest.raises(BlingValidationError) as missing:
        client.get("/estoques/saldos")
    assert missing.value.type == "MISSING_REQUIRED_FIELD_ERROR"
    assert sleeps == [] and client.http_calls == 4, "client errors are not retried"
    assert standin.sales_orders == {}


# --- tokens --------------------------------------------------------------------------------


def test_an_expired_token_gets_one_forced_refresh(
    standin: BlingStandIn, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = connect(standin)
    before = client.token_manager()  # type: ignore[attr-defined]
    client.get("/produtos")
    standin.expire_access_tokens()
    standin.fail_next(1)  # a retry too, so the retry log line is in the capture
    client.get("/produtos")
    assert [c.status for c in standin.calls] == [200, 500, 401, 200]  # faults come before auth
    assert standin.refreshes == 1
    after = client.token_manager._store.load()  # type: ignore[attr-defined]
    assert "bling.token_refreshed" in caplog.text and "bling.retry" in caplog.text
    for secret in (before, after.access_token, after.refresh_token, standin.client_secret):
        assert secret not in caplog.text, "tokens and secrets never reach the logs"


def test_concurrent_401s_refresh_once(standin: BlingStandIn, connect: Connect) -> None:
    client = connect(standin)
    client.get("/produtos")
    standin.expire_access_tokens()
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def worker() -> None:
        client.token_manager()  # type: ignore[attr-defined] # each thread holds the old token
        barrier.wait()
        try:
            client.get("/produtos")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert (standin.refreshes, standin.refused_refreshes) == (1, 0)


def test_a_second_401_is_not_refreshed_again(standin: BlingStandIn, connect: Connect) -> None:
    asked: list[bool] = []

    def bad_token(*, force_refresh: bool = False) -> str:
        asked.append(force_refresh)
        return "not-a-token-bling-issued"

    client = connect(standin, token_provider=bad_token)
    with pytest.raises(BlingUnauthorized) as caught:
        client.get("/produtos")
    assert caught.value.type == "invalid_token"
    assert asked == [False, True] and len(standin.calls) == 2


def test_oauth_code_flow_and_refresh_rotation(standin: BlingStandIn) -> None:
    oauth = OAuthClient(standin.client_id, standin.client_secret, standin.base_url)
    answer = requests.get(oauth.authorization_url("st-1"), allow_redirects=False, timeout=2)
    assert answer.status_code == 302
    callback = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert callback["state"] == ["st-1"]
    code = callback["code"][0]

    grant = oauth.exchange_code(code)
    assert grant.expires_in == 21600 and grant.scope
    with pytest.raises(InvalidGrant):
        oauth.exchange_code(code)  # a code works once

    newer = oauth.refresh(grant.refresh_token)
    assert newer.refresh_token != grant.refresh_token
    with pytest.raises(InvalidGrant) as caught:
        oauth.refresh(grant.refresh_token)  # rotated: the old one is dead
    assert caught.value.status == 400 and caught.value.type == "invalid_grant"
    assert (standin.refreshes, standin.refused_refreshes) == (1, 1)

    wrong = OAuthClient(standin.client_id, "not-the-secret", standin.base_url)
    with pytest.raises(BlingError) as refused:
        wrong.refresh(newer.refresh_token)
    assert refused.value.status == 401 and refused.value.type == "invalid_client"
    assert "not-the-secret" not in str(refused.value)
    oauth.close()
    wrong.close()


# --- the account's rate limit, for real ----------------------------------------------------


def hammer(client: BlingClient, threads: int, calls: int) -> list[BaseException]:
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        for _ in range(calls):
            try:
                client.get("/produtos")
            except BlingError as exc:
                errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return errors


def test_local_rate_limiter_keeps_four_threads_under_three_per_second(connect: Connect) -> None:
    with BlingStandIn() as server:  # Bling's 3 requests per sliding second, enforced
        client = connect(server, rate_limiter=LocalRateLimiter(rate=3, per=1.0), max_retries=0)
        assert hammer(client, threads=4, calls=2) == []
        assert server.rate_violations == 0
        assert server.max_calls_in_any_second <= 3
        assert client.http_calls == 8


def test_without_the_limiter_the_standin_sees_the_burst(connect: Connect) -> None:
    """The control: the stand-in's counters do catch a client that does not limit itself."""
    with BlingStandIn() as server:
        client = connect(server, max_retries=0)
        errors = hammer(client, threads=4, calls=2)
        assert server.max_calls_in_any_second > 3
        assert server.rate_violations == len(errors) > 0
        assert all(isinstance(e, BlingRateLimited) for e in errors)


# --- webhooks ------------------------------------------------------------------------------


def test_webhook_signed_by_bling_is_accepted_and_tampering_refused(standin: BlingStandIn) -> None:
    product = standin.add_product("SKU-W", 4)
    raw = standin.stock_event(product)
    headers = {SIGNATURE_HEADER: standin.sign_webhook(raw)}

    assert verify_signature(raw, headers[SIGNATURE_HEADER], standin.client_secret)
    assert not verify_signature(raw, headers[SIGNATURE_HEADER], "another-secret")
    assert not verify_signature(
        raw.replace(b'"B"', b'"E"'), headers[SIGNATURE_HEADER], standin.client_secret
    )
    change = parse_event(raw).stock_change()
    assert change is not None and change.product_id == product
    assert change.virtual_in(standin.default_deposit) == 4
