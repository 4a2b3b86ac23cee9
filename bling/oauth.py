"""Bling OAuth2 (authorization code + rotating refresh tokens), docs/bling-api.md §1.

- ``authorization_url``: where the merchant approves the app; Bling ignores ``redirect_uri`` and
  ``scope`` (the app's registration decides both), so only ``client_id`` and ``state`` are sent.
  The browser step is on Bling's documented host, ``www.bling.com.br``, not the API's ``api.``
  host (docs/bling-api.md §1): ``authorize_endpoint`` maps one to the other.
- ``OAuthClient``: the token endpoint ``{base}/oauth/token``. Client credentials go **only** in
  HTTP Basic (Bling refuses them in the body); the body is form-encoded; ``enable-jwt: 1`` asks
  for JWT access tokens.
- Refresh tokens rotate: every refresh returns a new one and kills the old. Two processes that
  refresh at once make the loser get ``invalid_grant`` and, without care, lose the connection.
  ``TokenManager`` therefore refreshes inside ``TokenStore.update``, which the app implements
  with a row lock (single flight across processes, new token saved in the same transaction), and
  re-reads under that lock: if someone else already refreshed, their token is used.

Tokens are secrets: they never appear in a repr, a log line or an exception message here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import requests

from bling.errors import BlingError, BlingNotConnected, BlingUnavailable, error_from_response

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.bling.com.br/Api/v3"
#: Bling's API host; its authorize page is documented on another one, ``AUTHORIZE_URL``'s.
API_HOST = "api.bling.com.br"
#: Where Bling documents the browser step ([DOC /aplicativos]: "GET
#: https://www.bling.com.br/Api/v3/oauth/authorize?response_type=code&client_id=…&state=…").
AUTHORIZE_URL = "https://www.bling.com.br/Api/v3/oauth/authorize"


def authorize_endpoint(base_url: str) -> str:
    """The authorize page that goes with an API base URL: ``AUTHORIZE_URL`` for Bling's own API
    host, else ``{base}/oauth/authorize`` (a sandbox or a stand-in serves its own)."""
    if urlsplit(base_url).hostname == API_HOST:
        return AUTHORIZE_URL
    return f"{base_url.rstrip('/')}/oauth/authorize"


def authorization_url(base_url: str, client_id: str, state: str) -> str:
    """``authorize_endpoint(base_url)?response_type=code&client_id=…&state=…``."""
    query = urlencode({"response_type": "code", "client_id": client_id, "state": state})
    return f"{authorize_endpoint(base_url)}?{query}"


@dataclass(frozen=True)
class TokenGrant:
    """What the token endpoint answered. The access token lasts ``expires_in`` s (6 h today)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    scope: str = ""


@dataclass(frozen=True)
class StoredToken:
    """A grant as kept by a ``TokenStore``: absolute expiry instead of a lifetime."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime  # timezone-aware
    scope: str = ""

    @classmethod
    def from_grant(cls, grant: TokenGrant, now: datetime) -> StoredToken:
        expires_at = now + timedelta(seconds=grant.expires_in)
        return cls(grant.access_token, grant.refresh_token, expires_at, grant.scope)

    def fresh_at(self, now: datetime, margin: timedelta) -> bool:
        """Still usable for a call that may take ``margin`` (clock skew, slow requests)."""
        return now + margin < self.expires_at


class OAuthClient:
    """Calls ``{base}/oauth/token``. Not rate limited by the API limiter: the token endpoint has
    its own rule (more than 20 calls in 60 s blocks the IP for an hour), which single-flight
    refreshing keeps far away. No retries: a refresh whose answer was lost has already rotated
    the token, so repeating it cannot help (the caller decides)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float | tuple[float, float] = (3.05, 10),
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.timeout = timeout
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"OAuthClient(client_id={self.client_id!r}, base_url={self.base_url!r})"

    def authorization_url(self, state: str) -> str:
        return authorization_url(self.base_url, self.client_id, state)

    def exchange_code(self, code: str) -> TokenGrant:
        """Trade the callback's ``code`` (valid 1 minute, once) for tokens."""
        return self._token({"grant_type": "authorization_code", "code": code})

    def refresh(self, refresh_token: str) -> TokenGrant:
        """A new access **and** refresh token; the old refresh token stops working."""
        return self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    # The default is the name of a token type (RFC 7009), not a secret.
    def revoke(self, token: str, token_type_hint: str = "refresh_token") -> None:  # noqa: S107 # nosec B107
        """``POST /oauth/revoke`` (disconnecting the app)."""
        self._post("/oauth/revoke", {"token": token, "token_type_hint": token_type_hint})

    def close(self) -> None:
        self._session.close()

    def _token(self, form: dict[str, str]) -> TokenGrant:
        body = self._post("/oauth/token", form)
        try:
            return TokenGrant(
                access_token=str(body["access_token"]),
                refresh_token=str(body["refresh_token"]),
                expires_in=int(body.get("expires_in") or 0),
                scope=str(body.get("scope") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BlingError("Bling's token answer lacks access_token/refresh_token") from exc

    def _post(self, path: str, form: dict[str, str]) -> Any:
        headers = {
            "Accept": "1.0",  # as Bling's documentation shows for the token endpoint
            "enable-jwt": "1",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        try:
            response = self._session.post(
                self.base_url + path,
                data=form,
                headers=headers,
                auth=(self.client_id, self._client_secret),
                timeout=self.timeout,
            )
        except (requests.Timeout, requests.ConnectionError) as exc:
            # The exception text carries the URL only; the form (with the token) is not in it.
            what = type(exc).__name__
            raise BlingUnavailable(f"Bling token endpoint unreachable: {what}") from None
        if response.status_code >= 400:
            error = error_from_response(response.status_code, response.content)
            log.warning(
                "bling.oauth_refused %s status=%s error=%s", path, response.status_code, error.type
            )
            raise error
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise BlingError("Bling's token endpoint answered something that is not JSON") from None


class TokenStore(Protocol):
    """Where the tokens live. The app implements it over its database; see ``update``."""

    def load(self) -> StoredToken | None:
        """The current token, or None when the app was never authorized (or was disconnected)."""
        ...

    def update(
        self, change: Callable[[StoredToken | None], StoredToken | None]
    ) -> StoredToken | None:
        """Run ``change(current)`` while holding an exclusive lock that every process honours
        (``SELECT … FOR UPDATE`` on the token row), save its result in the same transaction if it
        differs from ``current``, and return it. If ``change`` raises, nothing is saved."""
        ...


class InMemoryTokenStore:
    """A ``TokenStore`` for tests and scripts: one process, a thread lock for single flight."""

    def __init__(self, token: StoredToken | None = None) -> None:
        self._token = token
        self._lock = threading.Lock()
        self.saves = 0

    def load(self) -> StoredToken | None:
        with self._lock:
            return self._token

    def update(
        self, change: Callable[[StoredToken | None], StoredToken | None]
    ) -> StoredToken | None:
        with self._lock:
            new = change(self._token)
            if new is not self._token:
                self._token = new
                self.saves += 1
            return new


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenManager:
    """The ``token_provider`` of ``BlingClient``: a valid access token, refreshed when needed.

    ``manager()`` returns the stored token while it is fresh; ``manager(force_refresh=True)`` (the
    client calls it after a 401) refreshes unless another thread or process already has: the
    token this thread was last given is the one Bling rejected, so if the store holds a newer,
    fresh one, that one is used and the refresh token is not rotated again.
    ``InvalidGrant`` escaping from here means the connection is really lost (the refresh token
    was refused while holding the lock): the merchant must authorize again.
    """

    def __init__(
        self,
        oauth: OAuthClient,
        store: TokenStore,
        *,
        now: Callable[[], datetime] = _utcnow,
        refresh_margin: timedelta = timedelta(minutes=5),
    ) -> None:
        self._oauth = oauth
        self._store = store
        self._now = now
        self._margin = refresh_margin
        self.refreshes = 0  # refreshes this manager made (for reports and tests)
        self._served = threading.local()  # the access token each thread was last given

    def connect(self, code: str) -> StoredToken:
        """Finish the authorization: exchange the callback's code and store the tokens."""
        grant = self._oauth.exchange_code(code)
        token = StoredToken.from_grant(grant, self._now())
        self._store.update(lambda _current: token)
        return token

    def __call__(self, *, force_refresh: bool = False) -> str:
        current = self._store.load()
        if current is None:
            raise BlingNotConnected("Bling is not authorized yet: run the connect flow")
        if not force_refresh and current.fresh_at(self._now(), self._margin):
            self._served.token = current.access_token
            return current.access_token
        rejected = getattr(self._served, "token", None) or current.access_token

        def change(latest: StoredToken | None) -> StoredToken | None:
            if latest is None:
                raise BlingNotConnected("Bling was disconnected while refreshing")
            replaced = latest.access_token != rejected
            if replaced and latest.fresh_at(self._now(), self._margin):
                return latest  # someone else refreshed while we waited for the lock
            grant = self._oauth.refresh(latest.refresh_token)
            self.refreshes += 1
            log.info("bling.token_refreshed expires_in=%ss", grant.expires_in)
            return StoredToken.from_grant(grant, self._now())

        token = self._store.update(change)
        if token is None:  # change() never returns None; a store that loses it is broken
            raise BlingNotConnected("the token store returned no token after a refresh")
        self._served.token = token.access_token
        return token.access_token
