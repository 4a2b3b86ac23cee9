"""OAuth pieces without a server: the authorize URL, secrets kept out of reprs, TokenManager."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from bling.errors import BlingNotConnected, InvalidGrant
from bling.oauth import (
    AUTHORIZE_URL,
    DEFAULT_BASE_URL,
    InMemoryTokenStore,
    OAuthClient,
    StoredToken,
    TokenGrant,
    TokenManager,
    authorization_url,
    authorize_endpoint,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_authorization_url_carries_only_what_bling_reads() -> None:
    url = authorization_url("https://api.bling.com.br/Api/v3/", "my-id", "nonce 1")
    parts = urlsplit(url)
    # The browser step on Bling's documented host (www.), not the API's (api.).
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://www.bling.com.br/Api/v3/oauth/authorize"
    )
    assert parse_qs(parts.query) == {
        "response_type": ["code"],
        "client_id": ["my-id"],
        "state": ["nonce 1"],
    }


def test_another_api_host_serves_its_own_authorize_page() -> None:
    assert authorize_endpoint(DEFAULT_BASE_URL) == AUTHORIZE_URL
    assert authorize_endpoint("http://127.0.0.1:8123/Api/v3/") == (
        "http://127.0.0.1:8123/Api/v3/oauth/authorize"
    )
    sandbox = "https://developer.bling.com.br/api/bling"
    assert authorize_endpoint(sandbox) == sandbox + "/oauth/authorize"
    client = OAuthClient("my-id", "secret", DEFAULT_BASE_URL)
    assert client.authorization_url("s").startswith(AUTHORIZE_URL + "?")
    client.close()


def test_tokens_and_secret_never_show_in_reprs() -> None:
    grant = TokenGrant("ACCESS-XYZ", "REFRESH-XYZ", 21600, "1 2")
    stored = StoredToken.from_grant(grant, T0)
    client = OAuthClient("id", "SECRET-XYZ", "http://127.0.0.1:9/Api/v3")
    for text in (repr(grant), repr(stored), repr(client), str(grant)):
        assert "XYZ" not in text
    assert stored.expires_at == T0 + timedelta(hours=6)
    client.close()


class FakeOAuth:
    """Bling's token endpoint in miniature: rotating refresh tokens, counted refreshes."""

    def __init__(self) -> None:
        self.live = {"r0"}
        self.refreshes = 0
        self.lock = threading.Lock()

    def refresh(self, refresh_token: str) -> TokenGrant:
        with self.lock:
            if refresh_token not in self.live:
                raise InvalidGrant("invalid_grant", status=400, type="invalid_grant")
            self.live.discard(refresh_token)
            self.refreshes += 1
            n = self.refreshes
            self.live.add(f"r{n}")
        return TokenGrant(f"a{n}", f"r{n}", 21600)

    def exchange_code(self, code: str) -> TokenGrant:
        return TokenGrant("a-code", "r0", 21600)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def make(store: InMemoryTokenStore, oauth: FakeOAuth, clock: Clock) -> TokenManager:
    return TokenManager(oauth, store, now=clock)  # type: ignore[arg-type]


def stored(access: str = "a0", refresh: str = "r0", at: datetime = T0) -> StoredToken:
    return StoredToken(access, refresh, at + timedelta(hours=6))


def test_fresh_token_is_served_without_refreshing() -> None:
    oauth, clock = FakeOAuth(), Clock()
    manager = make(InMemoryTokenStore(stored()), oauth, clock)
    assert manager() == "a0"
    clock.now += timedelta(hours=5, minutes=56)  # inside the 5-minute margin: refresh first
    assert manager() == "a1"
    assert oauth.refreshes == 1


def test_forced_refresh_rotates_and_saves_the_new_refresh_token() -> None:
    oauth, store = FakeOAuth(), InMemoryTokenStore(stored())
    manager = make(store, oauth, Clock())
    manager()
    assert manager(force_refresh=True) == "a1"
    current = store.load()
    assert current is not None and current.refresh_token == "r1"
    assert manager(force_refresh=True) == "a2", "a second 401 on the new token refreshes again"


def test_two_processes_hit_by_the_same_401_refresh_once() -> None:
    """The race research §7 describes: both saw token a0 rejected; only one may rotate."""
    oauth, clock, store = FakeOAuth(), Clock(), InMemoryTokenStore(stored())
    first, second = make(store, oauth, clock), make(store, oauth, clock)
    assert first() == second() == "a0"
    assert first(force_refresh=True) == "a1"
    assert second(force_refresh=True) == "a1", "must reuse the token the other one got"
    assert oauth.refreshes == 1


def test_threads_forcing_a_refresh_together_rotate_once() -> None:
    oauth, store = FakeOAuth(), InMemoryTokenStore(stored())
    manager = make(store, oauth, Clock())
    barrier = threading.Barrier(6)
    results: list[str] = []

    def worker() -> None:
        manager()  # each thread was served a0 ...
        barrier.wait()
        results.append(manager(force_refresh=True))  # ... and each saw it rejected

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["a1"] * 6
    assert oauth.refreshes == 1


def test_refused_refresh_token_is_a_lost_connection() -> None:
    oauth = FakeOAuth()
    oauth.live.clear()  # revoked in Bling (or rotated by a process that lost the answer)
    manager = make(InMemoryTokenStore(stored()), oauth, Clock())
    with pytest.raises(InvalidGrant):
        manager(force_refresh=True)


def test_no_token_means_not_connected_and_connect_stores_one() -> None:
    oauth, store = FakeOAuth(), InMemoryTokenStore()
    manager = make(store, oauth, Clock())
    with pytest.raises(BlingNotConnected):
        manager()
    manager.connect("the-code")
    assert manager() == "a-code" and store.saves == 1
