"""Connecting to Bling: the signed-state flow, encrypted storage, the row-locked token store and
the rate limiter shared through the database (SQLite and PostgreSQL).

Bling is the loopback stand-in (tests/support/bling_standin.py): it rotates refresh tokens,
counts refreshes and counts every request over 3 in any one-second window as a violation.

Long because the connection flow, the token store and the shared rate limiter are tested against
one stand-in and share its fixtures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, select, text

from bling.errors import BlingNotConnected, InvalidGrant
from bling.oauth import OAuthClient, TokenGrant, TokenManager
from shopify_app import create_app
from shopify_app.erp import connection
from shopify_app.erp.connection import bling_client
from shopify_app.erp.ratelimit import SqlRateLimiter
from shopify_app.erp.tables import bling_rate_limit
from shopify_app.migrations_runner import upgrade
from shopify_app.runtime import EXTENSION_KEY, Runtime
from tests.support.app import TOKEN, app_environ
from tests.support.bling_connection import CALLBACK, SECRET_KEY, decrypted, oauth_environ, raw_row
from tests.support.bling_standin import CLIENT_ID, CLIENT_SECRET, BlingStandIn
from tests.support.clock import FakeClock


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def approve_at_bling(authorize_url: str) -> dict[str, str]:
    """What the merchant's browser does: open the URL, approve, follow Bling's redirect back."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(CALLBACK + "?"), location
    return query_of(location)


def connect_through_cli(app: Flask, client: FlaskClient) -> Any:
    result = app.test_cli_runner().invoke(args=["bling", "connect"])
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    assert "\n" not in url, "stdout carries the URL alone"
    return client.get("/bling/callback", query_string=approve_at_bling(url))


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def stand_in() -> Iterator[BlingStandIn]:
    with BlingStandIn(products=[("BAZI-TEE-P", 5)], redirect_uri=CALLBACK) as server:
        yield server


@pytest.fixture
def bling_app(database_url: str, clock: FakeClock, stand_in: BlingStandIn) -> Iterator[Flask]:
    app = create_app(oauth_environ(database_url, stand_in.base_url), clock=clock)
    engine = app.extensions[EXTENSION_KEY].engine
    if engine.dialect.name == "sqlite":
        upgrade(engine)
    yield app
    engine.dispose()


@pytest.fixture
def runtime(bling_app: Flask) -> Runtime:
    return bling_app.extensions[EXTENSION_KEY]


@pytest.fixture
def web(bling_app: Flask) -> FlaskClient:
    return bling_app.test_client()


@pytest.fixture
def connected(bling_app: Flask, web: FlaskClient) -> None:
    assert connect_through_cli(bling_app, web).status_code == 200


# --- the authorization flow --------------------------------------------------------------------


def test_cli_url_then_bling_then_callback_stores_the_tokens_encrypted(
    bling_app: Flask,
    web: FlaskClient,
    runtime: Runtime,
    stand_in: BlingStandIn,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    answer = connect_through_cli(bling_app, web)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "text/html" and "Bling connected" in answer.get_data(as_text=True)

    access, refresh = decrypted(runtime.engine)
    row = raw_row(runtime.engine)
    assert row is not None
    for column, value in row.items():  # ciphertext at rest, in every column
        assert access not in str(value) and refresh not in str(value), column
    assert row["connected_at"] == clock() and row["lost_at"] is None
    assert row["expires_at"] == clock() + timedelta(seconds=stand_in.access_ttl)
    assert row["scope"] == "98309 318257570 5862218180"

    # The connection read the account (company id, default deposit) through the shared limiter;
    # a bare request knows nothing of it, so it waits for Bling's per-second window to pass.
    time.sleep(stand_in.rate_window)
    # The stored token is the one Bling issued: it works against the API, through the factory too.
    direct = requests.get(
        stand_in.base_url + "/produtos", headers={"Authorization": f"Bearer {access}"}, timeout=5
    )
    assert direct.status_code == 200
    with bling_client(runtime) as client:
        assert client.get("/produtos")["data"][0]["codigo"] == "BAZI-TEE-P"
    assert stand_in.refreshes == 0

    status = bling_app.test_cli_runner().invoke(args=["bling", "status"])
    assert status.output.startswith("connected since"), status.output
    for text_seen in (caplog.text, status.output, answer.get_data(as_text=True)):
        assert access not in text_seen and refresh not in text_seen


def test_connect_route_needs_the_bearer_and_redirects_to_bling_with_a_state(
    web: FlaskClient, runtime: Runtime, clock: FakeClock
) -> None:
    assert web.get("/bling/connect").status_code == 401
    wrong = web.get("/bling/connect", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "unauthorized"

    answer = web.get("/bling/connect", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 302
    target = answer.headers["Location"]
    assert target.startswith(runtime.settings.bling_api_base_url + "/oauth/authorize?")
    assert query_of(target)["client_id"] == CLIENT_ID and query_of(target)["state"]
    assert not answer.headers.getlist("Set-Cookie"), "the state is checked server-side, no cookie"

    # Approved 30 minutes (less 5 s) later, in another browser: no cookie, only the signed state.
    clock.advance(connection.STATE_MAX_AGE.total_seconds() - 5)
    other_browser = web.application.test_client()
    callback = other_browser.get("/bling/callback", query_string=approve_at_bling(target))
    assert callback.status_code == 200
    assert raw_row(runtime.engine) is not None


def test_against_bling_itself_the_merchant_is_sent_to_the_documented_authorize_host(
    database_url: str, clock: FakeClock
) -> None:
    environ = oauth_environ(database_url, "https://api.bling.com.br/Api/v3")
    app = create_app(environ, clock=clock)
    try:
        answer = app.test_client().get(
            "/bling/connect", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert answer.status_code == 302
        target = answer.headers["Location"]
        # Bling documents the browser step on www.; the API (and the tokens) stay on api.
        assert target.startswith("https://www.bling.com.br/Api/v3/oauth/authorize?")
        assert query_of(target)["client_id"] == CLIENT_ID and query_of(target)["state"]
        printed = app.test_cli_runner().invoke(args=["bling", "connect"])
        assert printed.stdout.startswith("https://www.bling.com.br/Api/v3/oauth/authorize?")
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()


def _foreign_state(runtime: Runtime, clock: FakeClock, **settings: str) -> str:
    return connection.make_state(replace(runtime.settings, **settings), clock())


@pytest.mark.parametrize(
    ("case", "status", "error"),
    [
        ("missing", 400, "missing_state"),
        ("tampered", 403, "invalid_state"),
        ("other secret key", 403, "invalid_state"),
        ("other Bling app", 403, "invalid_state"),
        ("expired", 403, "expired_state"),
    ],
)
def test_callback_refuses_a_state_not_made_here_and_stores_nothing(
    case: str,
    status: int,
    error: str,
    web: FlaskClient,
    runtime: Runtime,
    stand_in: BlingStandIn,
    clock: FakeClock,
) -> None:
    good = connection.make_state(runtime.settings, clock())
    state = {
        "missing": "",
        "tampered": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "other secret key": _foreign_state(runtime, clock, secret_key="another-secret-key-0123456"),
        "other Bling app": _foreign_state(runtime, clock, bling_client_id="another-app"),
        "expired": good,
    }[case]
    if case == "expired":
        clock.advance(connection.STATE_MAX_AGE.total_seconds() + 1)
    code = stand_in.authorize()

    answer = web.get("/bling/callback", query_string={"code": code, "state": state})
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.get_json()["error"] == error
    assert raw_row(runtime.engine) is None
    # The code was never spent: it still buys tokens (the service did not call Bling).
    OAuthClient(CLIENT_ID, CLIENT_SECRET, stand_in.base_url).exchange_code(code)


def test_callback_with_a_refused_code_or_a_denial_stores_nothing(
    web: FlaskClient, runtime: Runtime, clock: FakeClock
) -> None:
    state = connection.make_state(runtime.settings, clock())
    used = web.get("/bling/callback", query_string={"code": "not-a-code", "state": state})
    assert used.status_code == 400 and used.get_json()["error"] == "invalid_code"
    denied = web.get(
        "/bling/callback",
        query_string={"error": "access_denied", "error_description": "no", "state": state},
    )
    assert denied.status_code == 400 and denied.get_json()["error"] == "authorization_denied"
    no_code = web.get("/bling/callback", query_string={"state": state})
    assert no_code.status_code == 400 and no_code.get_json()["error"] == "invalid_request"
    assert raw_row(runtime.engine) is None


def test_bling_off_or_not_connected_is_the_null_bling(
    database_url: str, clock: FakeClock, runtime: Runtime
) -> None:
    with pytest.raises(BlingNotConnected, match="not connected yet"):
        bling_client(runtime)  # configured, never authorized

    app = create_app(app_environ(database_url, SECRET_KEY=SECRET_KEY), clock=clock)
    off = app.extensions[EXTENSION_KEY]
    try:
        with pytest.raises(BlingNotConnected, match="Bling is off"):
            bling_client(off)
        web = app.test_client()
        connect = web.get("/bling/connect", headers={"Authorization": f"Bearer {TOKEN}"})
        assert connect.status_code == 503 and connect.get_json()["error"] == "not_configured"
        assert web.get("/bling/callback?code=x&state=y").status_code == 503
        result = app.test_cli_runner().invoke(args=["bling", "connect"])
        assert result.exit_code == 1 and "BLING_CLIENT_ID" in result.output
    finally:
        off.engine.dispose()


def test_the_routes_are_in_the_openapi_document(web: FlaskClient) -> None:
    paths = web.get("/openapi.json").get_json()["paths"]
    assert "bearer" in str(paths["/bling/connect"]["get"]["security"])
    assert {"302", "401", "503"} <= set(paths["/bling/connect"]["get"]["responses"])
    assert {"200", "400", "403"} <= set(paths["/bling/callback"]["get"]["responses"])


# --- the token store: single flight, rotation, a refused refresh token ------------------------


class SlowOAuth(OAuthClient):
    """Bling's token endpoint on a slow day: without the row lock, refreshes would overlap."""

    def refresh(self, refresh_token: str) -> TokenGrant:
        time.sleep(0.2)
        return super().refresh(refresh_token)


def manager_for(runtime: Runtime, stand_in: BlingStandIn) -> TokenManager:
    """A token provider as ``bling_client`` builds it, one per request or job."""
    oauth = SlowOAuth(CLIENT_ID, CLIENT_SECRET, stand_in.base_url)
    return TokenManager(oauth, connection.token_store(runtime), now=runtime.clock)


@pytest.mark.usefixtures("connected")
def test_threads_refreshing_together_rotate_the_token_once(
    runtime: Runtime, stand_in: BlingStandIn, clock: FakeClock
) -> None:
    old_access, old_refresh = decrypted(runtime.engine)
    clock.advance(stand_in.access_ttl)  # expired by the stored expiry ...
    stand_in.expire_access_tokens()  # ... and at Bling
    callers = 5
    barrier = threading.Barrier(callers)
    served: list[str | BaseException] = []

    def caller() -> None:
        manager = manager_for(runtime, stand_in)
        barrier.wait()
        try:
            served.append(manager())
        except BaseException as exc:
            served.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert (stand_in.refreshes, stand_in.refused_refreshes) == (1, 0), "exactly one refresh"
    new_access, new_refresh = decrypted(runtime.engine)
    assert served == [new_access] * callers
    assert new_access != old_access and new_refresh != old_refresh, "rotated, and stored"
    assert raw_row(runtime.engine)["expires_at"] == clock() + timedelta(  # type: ignore[index]
        seconds=stand_in.access_ttl
    )


@pytest.mark.usefixtures("connected")
def test_a_401_refreshes_once_and_the_call_goes_through(
    runtime: Runtime, stand_in: BlingStandIn
) -> None:
    stand_in.expire_access_tokens()  # Bling stops accepting a token the store thinks is fresh
    with bling_client(runtime) as client:
        assert client.get("/produtos")["data"]
    assert stand_in.refreshes == 1
    assert [c.status for c in stand_in.calls_to("GET", "/produtos")] == [401, 200]


@pytest.mark.usefixtures("connected")
def test_a_refused_refresh_token_nobody_replaced_is_a_lost_connection(
    bling_app: Flask,
    web: FlaskClient,
    runtime: Runtime,
    stand_in: BlingStandIn,
    clock: FakeClock,
) -> None:
    # Someone rotated the token and kept the answer to themselves (or the merchant revoked us).
    _, refresh = decrypted(runtime.engine)
    OAuthClient(CLIENT_ID, CLIENT_SECRET, stand_in.base_url).refresh(refresh)
    clock.advance(stand_in.access_ttl)

    with pytest.raises(InvalidGrant):
        manager_for(runtime, stand_in)()
    assert stand_in.refused_refreshes == 1, "refused once, then the row was re-read, not retried"
    row = raw_row(runtime.engine)
    assert row is not None and row["lost_at"] == clock()
    assert row["access_token_encrypted"] is None and row["refresh_token_encrypted"] is None
    assert "refused" in row["lost_reason"]
    with pytest.raises(BlingNotConnected, match="lost"):
        bling_client(runtime)
    status = bling_app.test_cli_runner().invoke(args=["bling", "status"])
    assert status.output.startswith("connection lost")

    clock.advance(60)  # the operator connects again: a new authorization, nothing lost any more
    assert connect_through_cli(bling_app, web).status_code == 200
    row = raw_row(runtime.engine)
    assert row is not None and row["lost_at"] is None and row["connected_at"] == clock()
    with bling_client(runtime) as client:
        assert client.get("/produtos")["data"]


@pytest.mark.usefixtures("connected")
def test_tokens_stored_under_another_secret_key_are_not_a_connection(
    database_url: str, clock: FakeClock, stand_in: BlingStandIn
) -> None:
    sent = len(stand_in.calls)  # the connection's own reads of the account
    environ = oauth_environ(database_url, stand_in.base_url, SECRET_KEY="a-rotated-secret-key-000")
    app = create_app(environ, clock=clock)
    runtime = app.extensions[EXTENSION_KEY]
    try:
        with pytest.raises(BlingNotConnected, match="SECRET_KEY"), bling_client(runtime) as client:
            client.get("/produtos")
    finally:
        runtime.engine.dispose()
    assert stand_in.calls[sent:] == [], "nothing was sent with a token it could not read"


# --- the rate limiter shared through the database ----------------------------------------------


def lock_is_free(engine: Engine) -> bool:
    """Could another process take the limiter's row right now, without waiting?"""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '50ms'"))
            try:
                conn.execute(select(bling_rate_limit).with_for_update(nowait=True)).all()
            except Exception:
                return False
            return True
    other = create_engine(engine.url, connect_args={"timeout": 0})
    try:
        with other.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.exec_driver_sql("ROLLBACK")
        return True
    except Exception:
        return False
    finally:
        other.dispose()


def test_limiter_books_even_slots_and_never_sleeps_holding_the_lock(
    runtime: Runtime, clock: FakeClock
) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        assert lock_is_free(runtime.engine), "slept while holding the row lock"
        sleeps.append(round(seconds, 3))

    limiter = SqlRateLimiter(runtime.engine, clock, sleep, rate=3, per=1.0, margin=0.05)
    for _ in range(4):  # four requests at the same instant: the first goes, the rest queue
        limiter.acquire()
    assert sleeps == [0.383, 0.767, 1.15]
    clock.advance(10)  # idle: the next request goes at once, and the queue restarts from it
    limiter.acquire()
    limiter.acquire()
    assert sleeps[3:] == [0.383]

    other_account = SqlRateLimiter(runtime.engine, clock, sleep, account="another")
    other_account.acquire()
    assert len(sleeps) == 4, "each account has its own row"


@pytest.mark.usefixtures("connected")
def test_threads_sharing_the_database_stay_under_three_per_second(
    runtime: Runtime, stand_in: BlingStandIn
) -> None:
    threads_count, calls_each = 3, 3
    barrier = threading.Barrier(threads_count)
    results: list[Any] = []
    started = time.monotonic()

    def caller() -> None:
        with bling_client(runtime) as client:  # one client per thread, as per request or job
            barrier.wait()
            for _ in range(calls_each):
                results.append(client.get("/produtos", params={"limite": 1}))

    threads = [threading.Thread(target=caller) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started

    total = threads_count * calls_each
    assert len(results) == total, "every call went through"
    assert stand_in.rate_violations == 0
    assert stand_in.max_calls_in_any_second <= 3
    interval = 1 / 3 + 0.05
    assert (total - 1) * interval - 0.05 <= elapsed < total * interval + 3, elapsed
