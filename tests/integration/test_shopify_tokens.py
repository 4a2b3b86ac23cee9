"""Expiring offline tokens: refresh before expiry, single-flight across threads and processes,
``invalid_grant`` handling, the custom-app short-circuit and uninstall (forget_shop)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, event, select

from shopify_app.crypto import TokenUnreadable
from shopify_app.db.engine import make_engine
from shopify_app.runtime import EXTENSION_KEY, Runtime
from shopify_app.shopify import client as shopify_client
from shopify_app.shopify.registration import LIST_QUERY
from shopify_app.shopify.shops import (
    REFRESH_MARGIN,
    ShopConnectionLost,
    ShopNotInstalled,
    TokenStore,
    forget_shop,
    save_tokens,
    shops,
)
from tests.support.clock import FakeClock
from tests.support.shopify_install import (
    API_KEY,
    API_SECRET,
    SCOPES,
    SHOP,
    TOPICS,
    make_app,
    shopify_environ,
    standin,
)
from tests.support.shopify_standin import ShopifyStandIn

REPO_ROOT = Path(__file__).resolve().parents[2]
LIFETIME = 3600


@pytest.fixture
def stand_in(clock: FakeClock) -> Iterator[ShopifyStandIn]:
    with standin(clock, refresh_delay_seconds=0.2) as server:
        yield server


@pytest.fixture
def shop_app(database_url: str, clock: FakeClock, stand_in: ShopifyStandIn) -> Iterator[Flask]:
    app = make_app(database_url, clock, stand_in.url)
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


@pytest.fixture
def runtime(shop_app: Flask) -> Runtime:
    return shop_app.extensions[EXTENSION_KEY]


@pytest.fixture
def store(runtime: Runtime) -> TokenStore:
    return TokenStore.for_runtime(runtime)


def install(store: TokenStore, stand_in: ShopifyStandIn, issued_at: datetime) -> Any:
    """What the OAuth callback does, minus the browser: exchange a code, store the grant."""
    grant = shopify_client.exchange_code(
        stand_in.url,
        client_id=API_KEY,
        client_secret=API_SECRET,
        code=stand_in.authorize(SHOP, SCOPES),
    )
    store.save_tokens(SHOP, grant, issued_at=issued_at)
    return grant


def stored(engine: Engine, store: TokenStore) -> dict[str, Any]:
    with engine.connect() as conn:
        row = dict(conn.execute(select(shops).where(shops.c.shop == SHOP)).mappings().one())
    for name in ("access_token", "refresh_token"):
        ciphertext = row[f"{name}_encrypted"]
        row[name] = None if ciphertext is None else store.cipher.decrypt(ciphertext)
    return row


def test_token_is_refreshed_shortly_before_it_expires(
    store: TokenStore, runtime: Runtime, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    first = install(store, stand_in, clock())
    assert store.access_token(SHOP) == first.access_token
    assert REFRESH_MARGIN.total_seconds() == 300, "the margin this test is written for"
    clock.advance(LIFETIME - 301)  # 301 s left: still fine
    assert store.access_token(SHOP) == first.access_token
    assert stand_in.calls_of("refresh") == []

    clock.advance(2)  # 299 s left: inside the margin, refresh now rather than fail mid-call
    second = store.access_token(SHOP)
    assert second != first.access_token
    assert [c.status for c in stand_in.calls_of("refresh")] == [200]
    assert store.access_token(SHOP) == second, "stored: the next caller does not refresh again"
    assert len(stand_in.calls_of("refresh")) == 1

    row = stored(runtime.engine, store)
    assert row["access_token"] == second
    assert row["refresh_token"] == stand_in.issued[-1]["refresh_token"] != first.refresh_token
    assert row["access_expires_at"] == clock() + timedelta(seconds=LIFETIME)

    clock.advance(600)  # the first token is now dead at Shopify; the refreshed one works
    with pytest.raises(shopify_client.ShopifyUnauthorized):
        shopify_client.graphql(stand_in.url, first.access_token, LIST_QUERY, {"first": 5})
    assert store.access_token(SHOP) == second
    shopify_client.graphql(stand_in.url, second, LIST_QUERY, {"first": 5})


def test_refresh_is_single_flight_across_threads(
    shop_app: Flask, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    install(TokenStore.for_runtime(shop_app.extensions[EXTENSION_KEY]), stand_in, clock())
    clock.advance(LIFETIME - 60)
    callers = 8
    barrier = threading.Barrier(callers)
    results: list[str | BaseException] = []

    def caller() -> None:
        store = TokenStore.for_runtime(shop_app.extensions[EXTENSION_KEY])  # as in a request
        barrier.wait()
        try:
            results.append(store.access_token(SHOP))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == callers
    assert [c.status for c in stand_in.calls_of("refresh")] == [200], "exactly one refresh"
    assert set(results) == {stand_in.issued[-1]["access_token"]}, results


_RACER = """
import os, sys, time
from shopify_app import create_app
from shopify_app.runtime import EXTENSION_KEY
from shopify_app.shopify.shops import TokenStore

workdir, shop = sys.argv[1], sys.argv[2]
store = TokenStore.for_runtime(create_app().extensions[EXTENSION_KEY])
open(os.path.join(workdir, f"ready-{os.getpid()}"), "w").close()
while not os.path.exists(os.path.join(workdir, "go")):
    time.sleep(0.002)
print(store.access_token(shop))
"""


@pytest.mark.postgres
@pytest.mark.slow
def test_refresh_is_single_flight_across_processes(postgres_url: str) -> None:
    # Real processes, real clocks: the stand-in does not expire tokens, the stored expiry does.
    with standin(None, refresh_delay_seconds=0.3) as stand_in:
        app = make_app(postgres_url, FakeClock(datetime.now(UTC)), stand_in.url)
        try:
            almost_expired = datetime.now(UTC) - timedelta(seconds=LIFETIME - 60)
            install(TokenStore.for_runtime(app.extensions[EXTENSION_KEY]), stand_in, almost_expired)
        finally:
            app.extensions[EXTENSION_KEY].engine.dispose()

        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            **shopify_environ(postgres_url, stand_in.url),
        }
        with tempfile.TemporaryDirectory() as workdir:
            racers = [
                subprocess.Popen(
                    [sys.executable, "-c", _RACER, workdir, SHOP],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(4)
            ]
            deadline = time.monotonic() + 60
            while len(list(Path(workdir).glob("ready-*"))) < len(racers):
                assert time.monotonic() < deadline, "racers did not start"
                assert all(r.poll() is None for r in racers), [r.communicate() for r in racers]
                time.sleep(0.02)
            (Path(workdir) / "go").touch()
            outputs = [r.communicate(timeout=60) for r in racers]
        assert [r.returncode for r in racers] == [0] * len(racers), outputs
        tokens = {out.strip().splitlines()[-1] for out, _ in outputs}  # after the JSON logs
        assert [c.status for c in stand_in.calls_of("refresh")] == [200], "exactly one refresh"
        assert tokens == {stand_in.issued[-1]["access_token"]}


def test_invalid_grant_after_a_concurrent_refresh_reads_again_instead_of_failing(
    store: TokenStore, runtime: Runtime, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    first = install(store, stand_in, clock())
    clock.advance(LIFETIME - 60)
    # Another process refreshed with the same refresh token at Shopify (outside this store's
    # lock: a re-install, an older release) and stores its result only once our row lock is
    # released; by then Shopify refuses our attempt with invalid_grant.
    stand_in.retry_window_seconds = 0
    theirs = shopify_client.TokenGrant(**stand_in.rotate(first.refresh_token))
    other_engine = make_engine(runtime.settings)
    stored_theirs = threading.Event()

    def other_process_commits(*_: object) -> None:
        refused = any(c.status == 400 for c in stand_in.calls_of("refresh"))
        if refused and not stored_theirs.is_set():
            stored_theirs.set()
            with other_engine.begin() as conn:
                save_tokens(conn, store.cipher, SHOP, theirs, issued_at=clock(), now=clock())

    event.listen(runtime.engine, "checkin", other_process_commits)
    try:
        assert store.access_token(SHOP) == theirs.access_token
    finally:
        event.remove(runtime.engine, "checkin", other_process_commits)
        other_engine.dispose()
    assert stored_theirs.is_set(), "the race was staged: our refresh was refused first"
    assert [c.status for c in stand_in.calls_of("refresh")] == [400], "no second refresh"
    assert stored(runtime.engine, store)["refresh_token"] == theirs.refresh_token


def test_invalid_grant_with_nothing_newer_stored_means_the_connection_is_lost(
    store: TokenStore, runtime: Runtime, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    first = install(store, stand_in, clock())
    stand_in.retry_window_seconds = 0
    stand_in.rotate(first.refresh_token)  # rotated elsewhere, and the result was lost
    clock.advance(LIFETIME - 60)
    with pytest.raises(ShopConnectionLost):
        store.access_token(SHOP)
    assert [c.status for c in stand_in.calls_of("refresh")] == [400], "one attempt, no loop"
    assert stored(runtime.engine, store)["access_token"] == first.access_token, "row untouched"


def test_expired_refresh_token_is_not_sent(
    store: TokenStore, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    install(store, stand_in, clock())
    clock.advance(91 * 24 * 3600)
    with pytest.raises(ShopConnectionLost):
        store.access_token(SHOP)
    assert stand_in.calls_of("refresh") == []


def test_a_retry_within_shopifys_window_gets_the_same_tokens(
    store: TokenStore, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    # The stand-in's side of the contract the store relies on (and Shopify documents).
    first = install(store, stand_in, clock())
    stand_in.retry_window_seconds = 30
    one = stand_in.rotate(first.refresh_token)
    assert stand_in.rotate(first.refresh_token) == one
    with pytest.raises(shopify_client.InvalidGrant):
        shopify_client.refresh_access_token(
            stand_in.url, client_id=API_KEY, client_secret=API_SECRET, refresh_token="shprt_nope"
        )
    with pytest.raises(shopify_client.ShopifyUnauthorized):
        shopify_client.refresh_access_token(
            stand_in.url,
            client_id=API_KEY,
            client_secret="wrong",
            refresh_token=one["refresh_token"],
        )


def test_custom_app_token_short_circuits_oauth(
    database_url: str, clock: FakeClock, stand_in: ShopifyStandIn
) -> None:
    app = make_app(database_url, clock, stand_in.url, SHOPIFY_ACCESS_TOKEN="shpat_custom_app")
    try:
        store = TokenStore.for_runtime(app.extensions[EXTENSION_KEY])
        assert store.access_token(SHOP) == "shpat_custom_app"
        with pytest.raises(ShopNotInstalled):
            store.access_token("another.myshopify.com")  # the custom token is for SHOP only
        assert stand_in.calls == []

        stand_in.add_access_token(SHOP, "shpat_custom_app")
        result = app.test_cli_runner().invoke(args=["shopify", "register-webhooks"])
        assert result.exit_code == 0, result.output
        assert {s["topic"] for s in stand_in.subscriptions(SHOP)} == TOPICS
        assert stand_in.calls_of("refresh") == [] and stand_in.calls_of("code") == []
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()


def test_forget_shop_erases_tokens_and_a_reinstall_restores_them(
    store: TokenStore, runtime: Runtime, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    install(store, stand_in, clock())
    clock.advance(60)
    with runtime.uow() as uow:  # as the app/uninstalled webhook handler calls it
        assert forget_shop(uow, SHOP) is True
        uow.commit()
    row = stored(runtime.engine, store)
    assert row["access_token"] is None and row["refresh_token"] is None
    assert row["uninstalled_at"] == clock() and row["scopes"] == ""
    with pytest.raises(ShopNotInstalled):
        store.access_token(SHOP)
    with runtime.engine.begin() as conn:
        assert forget_shop(conn, "unknown.myshopify.com") is False
        assert forget_shop(conn, SHOP) is True, "repeating it is harmless"

    clock.advance(60)
    again = install(store, stand_in, clock())
    row = stored(runtime.engine, store)
    assert row["uninstalled_at"] is None and row["installed_at"] == clock()
    assert store.access_token(SHOP) == again.access_token


def test_tokens_are_unreadable_under_another_secret_key(
    store: TokenStore, runtime: Runtime, stand_in: ShopifyStandIn, clock: FakeClock
) -> None:
    install(store, stand_in, clock())
    with pytest.raises(ShopNotInstalled):
        store.access_token("never-installed.myshopify.com")
    other = dataclasses.replace(runtime.settings, secret_key="a-different-secret-key-0123456789")
    with pytest.raises(TokenUnreadable):
        TokenStore(runtime.engine, other, runtime.clock).access_token(SHOP)
