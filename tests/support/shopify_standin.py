"""A Shopify stand-in: a real HTTP server on 127.0.0.1 speaking the formats the service uses.

- ``POST /admin/oauth/access_token`` (form or JSON body): an authorization ``code`` (made with
  :meth:`ShopifyStandIn.authorize`, as if the merchant had approved) gives an expiring offline
  token; ``grant_type=refresh_token`` rotates both tokens. A rotated refresh token may be replayed
  within ``retry_window_seconds`` (same answer), after that it gets 400 ``invalid_grant``.
  Wrong client credentials get 401.
- ``POST /admin/api/<version>/graphql.json``: ``X-Shopify-Access-Token`` must be a token it
  issued (else 401); answers ``webhookSubscriptions`` (paginated) and ``webhookSubscriptionCreate``
  with Shopify's JSON shapes, including its userErrors for an address already taken or not HTTPS.

One port serves every shop (``SHOPIFY_ADMIN_URL=http://127.0.0.1:<port>``): the shop is known from
the code or token presented. Every request is recorded in ``calls`` for assertions.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

ACCESS_LIFETIME = 3600
REFRESH_LIFETIME = 90 * 24 * 3600
_GRAPHQL_PATH = re.compile(r"^/admin/api/(?P<version>[0-9]{4}-[0-9]{2}|unstable)/graphql\.json$")
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"


@dataclass
class Call:
    path: str
    kind: str  # "code", "refresh", "graphql", "other"
    version: str | None = None
    shop: str | None = None
    operation: str | None = None
    status: int = 0


@dataclass
class _Rotation:
    replacement: tuple[str, str]  # the (access, refresh) pair its use produced
    at: float  # time.monotonic() of the rotation


@dataclass
class _ShopState:
    subscriptions: list[dict[str, str]] = field(default_factory=list)


class ShopifyStandIn:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        clock: Callable[[], datetime] | None = None,
        retry_window_seconds: float = 1.0,
        refresh_delay_seconds: float = 0.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = clock  # when given, access tokens past their lifetime get 401
        self.retry_window_seconds = retry_window_seconds
        self.refresh_delay_seconds = refresh_delay_seconds  # widens races on purpose
        self.calls: list[Call] = []
        self.issued: list[dict[str, Any]] = []  # every token grant answered, in order
        self.shops: dict[str, _ShopState] = {}
        self._lock = threading.RLock()  # one lock for all state, re-entered by helpers
        self._codes: dict[str, tuple[str, str]] = {}  # code -> (shop, scope)
        self._access: dict[str, tuple[str, str, datetime | None]] = {}  # -> (shop, scope, expiry)
        self._refresh: dict[str, tuple[str, str]] = {}  # live refresh token -> (shop, scope)
        self._rotated: dict[str, _Rotation] = {}
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # --- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> ShopifyStandIn:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for it, once per test.
        poll = {"poll_interval": 0.05}
        threading.Thread(target=self._server.serve_forever, kwargs=poll, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "use the stand-in as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- what a test arranges or inspects --------------------------------------------------

    def authorize(self, shop: str, scope: str) -> str:
        """The code Shopify would put in the callback after the merchant approved ``scope``."""
        code = secrets.token_hex(16)
        with self._lock:
            self._codes[code] = (shop, scope)
        return code

    def add_access_token(self, shop: str, token: str, scope: str = "") -> None:
        """A non-expiring token, as a custom app gets in the Shopify admin."""
        with self._lock:
            self._access[token] = (shop, scope, None)

    def calls_of(self, kind: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.kind == kind]

    def subscriptions(self, shop: str) -> list[dict[str, str]]:
        with self._lock:
            return list(self.shops.get(shop, _ShopState()).subscriptions)

    def drop_subscription(self, shop: str, topic: str) -> None:
        """What Shopify does to an API subscription after repeated failed deliveries."""
        with self._lock:
            state = self.shops[shop]
            state.subscriptions = [s for s in state.subscriptions if s["topic"] != topic]

    def rotate(self, refresh_token: str) -> dict[str, Any]:
        """Refresh as another process would, without the service knowing (for race tests)."""
        status, body = self._refresh_grant(refresh_token, Call(path="", kind="refresh"))
        assert status == 200, body
        return body

    # --- the token endpoint ----------------------------------------------------------------

    def token_endpoint(self, form: dict[str, str], call: Call) -> tuple[int, dict[str, Any]]:
        credentials = (form.get("client_id"), form.get("client_secret"))
        if credentials != (self.client_id, self.client_secret):
            return 401, {"error": "invalid_client", "error_description": "client credentials"}
        if form.get("grant_type") == "refresh_token":
            call.kind = "refresh"
            if self.refresh_delay_seconds:
                time.sleep(self.refresh_delay_seconds)
            return self._refresh_grant(form.get("refresh_token", ""), call)
        call.kind = "code"
        with self._lock:
            found = self._codes.pop(form.get("code", ""), None)
        if found is None:
            return 400, {
                "error": "invalid_request",
                "error_description": "The authorization code was not found or was already used",
            }
        shop, scope = found
        call.shop = shop
        expiring = form.get("expiring") in ("1", "true")
        return 200, self._issue(shop, scope, expiring=expiring)

    def _refresh_grant(self, token: str, call: Call) -> tuple[int, dict[str, Any]]:
        invalid = {"error": "invalid_grant", "error_description": "refresh token is not valid"}
        with self._lock:
            live = self._refresh.pop(token, None)
            if live is None:
                rotation = self._rotated.get(token)
                if rotation is None or time.monotonic() - rotation.at > self.retry_window_seconds:
                    return 400, invalid
                access, refresh = rotation.replacement  # a retry within the window: same answer
                shop, scope, _ = self._access[access]
                call.shop = shop
                return 200, self._grant_body(access, scope, refresh)
            shop, scope = live
            call.shop = shop
            body = self._issue(shop, scope, expiring=True)
            pair = (body["access_token"], body["refresh_token"])
            self._rotated[token] = _Rotation(pair, time.monotonic())
            return 200, body

    def _issue(self, shop: str, scope: str, *, expiring: bool) -> dict[str, Any]:
        access = "shpat_" + secrets.token_hex(16)
        with self._lock:
            expiry = None
            if expiring and self.clock is not None:
                expiry = self.clock() + timedelta(seconds=ACCESS_LIFETIME)
            self._access[access] = (shop, scope, expiry)
            if not expiring:
                self.issued.append({"access_token": access, "scope": scope})
                return dict(self.issued[-1])
            refresh = "shprt_" + secrets.token_hex(16)
            self._refresh[refresh] = (shop, scope)
            self.issued.append(self._grant_body(access, scope, refresh))
            return dict(self.issued[-1])

    @staticmethod
    def _grant_body(access: str, scope: str, refresh: str) -> dict[str, Any]:
        return {
            "access_token": access,
            "scope": scope,
            "expires_in": ACCESS_LIFETIME,
            "refresh_token": refresh,
            "refresh_token_expires_in": REFRESH_LIFETIME,
        }

    # --- GraphQL ---------------------------------------------------------------------------

    def graphql(self, token: str, body: Any, call: Call) -> tuple[int, dict[str, Any]]:
        with self._lock:
            known = self._access.get(token)
        if known is None or (
            known[2] is not None and self.clock is not None and self.clock() >= known[2]
        ):
            return 401, {"errors": INVALID_TOKEN}
        shop = call.shop = known[0]
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return 400, {"errors": {"query": "Required parameter missing or invalid"}}
        query, variables = body["query"], body.get("variables") or {}
        with self._lock:
            state = self.shops.setdefault(shop, _ShopState())
            if "webhookSubscriptionCreate" in query:
                call.operation = "webhookSubscriptionCreate"
                return 200, {"data": {"webhookSubscriptionCreate": self._create(state, variables)}}
            if "webhookSubscriptions" in query:
                call.operation = "webhookSubscriptions"
                return 200, {"data": {"webhookSubscriptions": self._page(state, variables)}}
        return 200, {"errors": [{"message": "the stand-in does not know this operation"}]}

    def _page(self, state: _ShopState, variables: dict[str, Any]) -> dict[str, Any]:
        first = int(variables.get("first") or 0)
        if not 1 <= first <= 250:
            first = 250
        after = variables.get("after")
        ids = [s["id"] for s in state.subscriptions]
        start = ids.index(after) + 1 if after in ids else 0
        chosen = state.subscriptions[start : start + first]
        edges = [{"cursor": s["id"], "node": dict(s)} for s in chosen]
        return {
            "edges": edges,
            "nodes": [dict(s) for s in chosen],
            "pageInfo": {
                "hasNextPage": start + first < len(ids),
                "endCursor": chosen[-1]["id"] if chosen else None,
            },
        }

    def _create(self, state: _ShopState, variables: dict[str, Any]) -> dict[str, Any]:
        topic = str(variables.get("topic", ""))
        uri = str((variables.get("webhookSubscription") or {}).get("uri", ""))

        def refused(message: str) -> dict[str, Any]:
            error = {"field": ["webhookSubscription", "uri"], "message": message}
            return {"webhookSubscription": None, "userErrors": [error]}

        if not re.fullmatch(r"[A-Z][A-Z_]*", topic):
            return refused(f"Topic {topic!r} is not a valid WebhookSubscriptionTopic")
        if not uri.startswith(("https://", "pubsub://", "arn:")):
            return refused("Address protocol is not supported; use https")
        if any(s["topic"] == topic and s["uri"] == uri for s in state.subscriptions):
            return refused("Address for this topic has already been taken")
        subscription = {
            "id": f"gid://shopify/WebhookSubscription/{next(self._ids)}",
            "topic": topic,
            "uri": uri,
        }
        state.subscriptions.append(subscription)
        return {"webhookSubscription": dict(subscription), "userErrors": []}


class _Handler(BaseHTTPRequestHandler):
    standin: ShopifyStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output quiet; ``calls`` records what happened

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        call = Call(path=path, kind="other")
        if path == "/admin/oauth/access_token":
            status, body = self.standin.token_endpoint(self._form(raw), call)
        elif match := _GRAPHQL_PATH.match(path):
            call.kind, call.version = "graphql", match["version"]
            status, body = self.standin.graphql(
                self.headers.get("X-Shopify-Access-Token", ""), _json(raw), call
            )
        else:
            status, body = 404, {"errors": "Not Found"}
        call.status = status
        with self.standin._lock:
            self.standin.calls.append(call)
        self._answer(status, body)

    def do_GET(self) -> None:
        self._answer(404, {"errors": "Not Found"})

    def _form(self, raw: bytes) -> dict[str, str]:
        if (self.headers.get("Content-Type") or "").startswith("application/json"):
            body = _json(raw)
            return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None
